//! Version ordering for each package ecosystem the vulnerability matcher knows: Debian (dpkg),
//! Alpine (apk) and PyPI (PEP 440). A wrong order is a missed or invented vulnerability, so each
//! follows its ecosystem's own rules (including `~` in Debian and `_rc`/`_p` in Alpine).

use std::cmp::Ordering;

/// dpkg's ordering of a single character: `~` before everything (even the end), letters before
/// other symbols.
fn dpkg_order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

/// dpkg's `verrevcmp` over one part (upstream version or revision).
fn dpkg_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let (ac, bc) = (dpkg_order(a.get(i).copied()), dpkg_order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// Debian: `[epoch:]upstream[-revision]`.
pub fn dpkg(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) => (e.parse().unwrap_or(0), r),
            None => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((u, r)) => (epoch, u, r),
            None => (epoch, rest, ""),
        }
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb).then_with(|| dpkg_part(ua, ub)).then_with(|| dpkg_part(ra, rb))
}

/// Alpine: `1.2.3[a][_suffix[N]...][-rN]`; suffixes `_alpha < _beta < _pre < _rc < (none) < _cvs <
/// _svn < _git < _hg < _p`.
pub fn apk(a: &str, b: &str) -> Ordering {
    /// Release numbers, a letter, suffixes (rank, number) and the package revision.
    type Parsed = (Vec<u64>, Option<u8>, Vec<(i32, u64)>, u64);
    fn parse(v: &str) -> Parsed {
        let (v, rev) = match v.rsplit_once("-r") {
            Some((v, r)) if r.chars().all(|c| c.is_ascii_digit()) && !r.is_empty() => (v, r.parse().unwrap_or(0)),
            _ => (v, 0),
        };
        let mut parts = v.split('_');
        let main = parts.next().unwrap_or("");
        let letter = main.chars().last().filter(|c| c.is_ascii_lowercase()).map(|c| c as u8);
        let numbers_text = if letter.is_some() { &main[..main.len() - 1] } else { main };
        let numbers = numbers_text.split('.').map(|n| n.parse().unwrap_or(0)).collect();
        let suffixes = parts
            .map(|s| {
                let name: String = s.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
                let number = s[name.len()..].parse().unwrap_or(0);
                let rank = match name.as_str() {
                    "alpha" => -4,
                    "beta" => -3,
                    "pre" => -2,
                    "rc" => -1,
                    "cvs" => 1,
                    "svn" => 2,
                    "git" => 3,
                    "hg" => 4,
                    "p" => 5,
                    _ => 0,
                };
                (rank, number)
            })
            .collect();
        (numbers, letter, suffixes, rev)
    }
    let (na, la, sa, ra) = parse(a);
    let (nb, lb, sb, rb) = parse(b);
    let numbers =
        (0..na.len().max(nb.len())).map(|i| na.get(i).unwrap_or(&0).cmp(nb.get(i).unwrap_or(&0))).find(|o| o.is_ne());
    numbers
        .unwrap_or(Ordering::Equal)
        .then_with(|| la.cmp(&lb))
        .then_with(|| {
            let n = sa.len().max(sb.len());
            (0..n)
                .map(|i| sa.get(i).unwrap_or(&(0, 0)).cmp(sb.get(i).unwrap_or(&(0, 0))))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
        .then_with(|| ra.cmp(&rb))
}

/// PyPI: PEP 440 as `pep440_rs` reads it (epochs, pre-, post- and dev-releases, local versions,
/// normalised spellings such as `1.0beta2` = `1.0b2`). A version PEP 440 cannot read (pip does
/// not install those) compares equal to everything, so it matches only a range that names it.
pub fn pep440(a: &str, b: &str) -> Ordering {
    use std::str::FromStr;
    match (pep440_rs::Version::from_str(a.trim()), pep440_rs::Version::from_str(b.trim())) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        _ => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn debian() {
        for (a, b, o) in [
            ("1.0", "1.0", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1:0.9", "1.0", Greater),
            ("3.0.11-1~deb12u2", "3.0.11-1", Less),
            ("3.0.11-1~deb12u2", "3.0.9-1", Greater),
            ("1.2.3-1", "1.2.3-1+b1", Less),
            ("2.36-9+deb12u4", "2.36-9+deb12u10", Less),
            ("1.0a", "1.0", Greater),
            ("1.0", "1.0.0", Less),
            ("007", "7", Equal),
        ] {
            assert_eq!(dpkg(a, b), o, "{a} vs {b}");
        }
    }

    #[test]
    fn alpine() {
        for (a, b, o) in [
            ("1.2.3-r0", "1.2.3-r1", Less),
            ("1.2.3_rc1-r0", "1.2.3-r0", Less),
            ("1.2.3_p1-r0", "1.2.3-r0", Greater),
            ("1.2.3a-r0", "1.2.3-r0", Greater),
            ("3.1.4-r5", "3.1.10-r0", Less),
            ("1.36.1-r15", "1.36.1-r15", Equal),
            ("1.2_alpha2", "1.2_beta1", Less),
        ] {
            assert_eq!(apk(a, b), o, "{a} vs {b}");
        }
    }

    #[test]
    fn pypi() {
        for (a, b, o) in [
            ("1.0", "1.0.0", Equal),
            ("1.0rc1", "1.0", Less),
            ("1.0a1", "1.0b1", Less),
            ("1.0.dev1", "1.0a1", Less),
            ("1.0.post1", "1.0", Greater),
            ("2.0", "10.0", Less),
            ("1!1.0", "2.0", Greater),
            ("2.31.0", "2.32.0", Less),
            // Spellings PEP 440 normalises, and orderings a hand-written parser got wrong.
            ("1.0beta2", "1.0b1", Greater),
            ("1.0beta2", "1.0beta10", Less),
            ("1.0-1", "1.0", Greater),
            ("1.0.preview1", "1.0rc2", Less),
            ("1.0-1", "1.0.post1", Equal),
            ("1.0.0+cu118", "1.0.0", Greater),
            ("1.0.0+cu118", "1.0.1", Less),
            ("1.0.dev1", "1.0a1.dev1", Less),
            ("1.0a1.post1.dev1", "1.0a1.post1", Less),
            ("v1.0", "1.0", Equal),
        ] {
            assert_eq!(pep440(a, b), o, "{a} vs {b}");
        }
    }
}
