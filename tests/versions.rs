//! Version orderings checked against the tools that define them: Debian's against
//! `dpkg --compare-versions` on generated versions, Alpine's against cases taken from apk-tools'
//! own test table, PyPI's (pep440_rs) against PEP 440's examples. A wrong order misses a
//! vulnerability or invents one.

mod common;

use std::cmp::Ordering;
use std::process::Command;

use portcullis::scan::versions::{apk, dpkg, pep440};
use proptest::prelude::*;

fn dpkg_says(a: &str, op: &str, b: &str) -> bool {
    let out = Command::new("dpkg").args(["--compare-versions", a, op, b]).status().expect("dpkg runs");
    out.success()
}

/// Debian versions built from the pieces dpkg treats specially: epochs, `~`, `+`, `.`, letters,
/// digit runs with leading zeros, and revisions.
fn debian_version() -> impl Strategy<Value = String> {
    let upstream = proptest::collection::vec(
        prop_oneof![
            (0u32..30).prop_map(|n| n.to_string()),
            Just("0".to_owned()),
            Just("007".to_owned()),
            Just("~".to_owned()),
            Just("~rc".to_owned()),
            Just("+".to_owned()),
            Just(".".to_owned()),
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("dfsg".to_owned()),
        ],
        1..6,
    );
    (proptest::option::of(0u32..3), (0u32..20), upstream, proptest::option::of((0u32..5, "[a-z0-9.+~]{0,5}"))).prop_map(
        |(epoch, first, rest, revision)| {
            let mut v = String::new();
            if let Some(e) = epoch {
                v.push_str(&format!("{e}:"));
            }
            // Upstream must start with a digit.
            v.push_str(&first.to_string());
            for piece in rest {
                v.push_str(&piece);
            }
            if let Some((n, tail)) = revision {
                v.push_str(&format!("-{n}{tail}"));
            }
            v
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    #[ignore = "needs dpkg: scripts/test.sh runs it"]
    fn debian_order_is_dpkgs(a in debian_version(), b in debian_version()) {
        let ours = dpkg(&a, &b);
        let theirs = if dpkg_says(&a, "lt", &b) {
            Ordering::Less
        } else if dpkg_says(&a, "eq", &b) {
            Ordering::Equal
        } else {
            Ordering::Greater
        };
        prop_assert_eq!(ours, theirs, "{} vs {}", a, b);
    }
}

#[test]
#[ignore = "needs dpkg: scripts/test.sh runs it"]
fn dpkg_is_there_to_ask() {
    common::process::require_tool("dpkg");
    // The oracle itself answers (else every comparison above would agree with nothing).
    assert!(dpkg_says("1.0~rc1", "lt", "1.0") && !dpkg_says("1.0", "lt", "1.0~rc1"));
}

/// Cases from apk-tools' `test/version.data` (lines `a <op> b`; the invalid `1.0 < 1.0bc` left out).
#[test]
fn alpine_order_is_apk_tools() {
    let table = "\
2.34 > 0.1.0_alpha
0.1.0_alpha = 0.1.0_alpha
0.1.0_alpha2 > 0.1.0_alpha
1.1 > 1.1_alpha1
1.2.1 > 1.2
0.12.3 > 0.12
2.3.0b-r1 < 2.3.0b-r2
1.06-r6 < 006
006 > 1.0.0
1.2.2-r1 > 1.2.2
3.0.20060720 < 20060720
2.5.1-r8 < 2.5.1a-r1
2.0.0_rc3-r1 > 1.5
3.0.0-r2 < 021109-r3
6b-r7 > 1.12-r7
0.10.0 < 0.10.1_rc1
1.1a < 1.3a
0.15.1b < 1.0.1
22.7.3-r1 > 22.7
2.1_pre20 < 2.1_pre26
02.08.01b < 4.77
1.6d > 1.2.07.8
1.2.12.04 < 1.2.12.05
0.59s-r11 < 0.65
0.20070118 < 0.20070207_rc1
4.5_p1-r1 > 4.5_p1
0.9.8c-r1 < 0.9.8d
1.7 < 1.7b
1.8.5 < 1.8.5_p2
2.9.11_pre20051101-r3 > 2.9.11_pre20051101
1.6.8_p12-r1 > 1.6.8_p9-r2
0.9.28-r2 < 0.9.28.1
087-r1 < 103
2.12r-r4 < 2.12r-r5
7.0.17 < 7.0.174
0.3.4_pre20061029 < 0.4.0
1.3-r0 < 1.3.1-r0
1.3_pre1-r1 < 1.3.2
1.0_p10-r0 > 1.0_p9-r0
0.1.0_alpha_pre2 < 0.1.0_alpha
1.0.0_pre20191002222144-r0 < 1.0.0_pre20210530193627-r0";
    let mut wrong = Vec::new();
    for line in table.lines() {
        let [a, op, b] = line.split_whitespace().collect::<Vec<_>>()[..] else { panic!("{line}") };
        let want = match op {
            "<" => Ordering::Less,
            ">" => Ordering::Greater,
            _ => Ordering::Equal,
        };
        if apk(a, b) != want || apk(b, a) != want.reverse() {
            wrong.push(line);
        }
    }
    assert!(wrong.is_empty(), "apk-tools orders these otherwise: {wrong:#?}");
}

/// PEP 440's own ordering example (its "Summary of permitted suffixes and relative ordering").
#[test]
fn pypi_order_is_pep_440() {
    let ordered = [
        "1.dev0",
        "1.0.dev456",
        "1.0a1",
        "1.0a2.dev456",
        "1.0a12.dev456",
        "1.0a12",
        "1.0b1.dev456",
        "1.0b2",
        "1.0b2.post345.dev456",
        "1.0b2.post345",
        "1.0rc1.dev456",
        "1.0rc1",
        "1.0",
        "1.0+abc.5",
        "1.0+abc.7",
        "1.0+5",
        "1.0.post456.dev34",
        "1.0.post456",
        "1.0.15",
        "1.1.dev1",
    ];
    for (i, a) in ordered.iter().enumerate() {
        for (j, b) in ordered.iter().enumerate() {
            assert_eq!(pep440(a, b), i.cmp(&j), "{a} vs {b}");
        }
    }
}
