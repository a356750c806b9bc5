//! The built-in policy checks on images built here as real layer tarballs (gzip, zstd, plain):
//! root user, an AWS key in a lower layer deleted in an upper one, a private key in Env, a setuid
//! binary, world-writable paths, and a clean non-root image that passes.

use std::io::Write;

mod common;

use portcullis::scan::content::{ImageScan, ListedLayer};
use portcullis::scan::fs::Lookup;
use portcullis::scan::limits::ScanLimits;
use portcullis::scan::{image_config, Finding, Policy, Rule};
use serde_json::json;

enum Item<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str, u32),
}

fn tar(items: &[Item]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for item in items {
        let mut h = tar::Header::new_gnu();
        match item {
            Item::File(path, content, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(content.len() as u64);
                h.set_mode(*mode);
                b.append_data(&mut h, path, *content).unwrap();
            }
            Item::Dir(path, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(*mode);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
}

/// A config that runs as uid 10001 and raises nothing.
const CONFIG: &[u8] = br#"{"config": {"User": "10001"}}"#;

fn scan_with(layers: &[Vec<u8>], config: &[u8]) -> Vec<Finding> {
    let mut s = ImageScan::new(&ScanLimits::default());
    let names: Vec<String> = (0..layers.len()).map(|i| format!("layer{i}")).collect();
    for (name, layer) in names.iter().zip(layers) {
        s.scan_layer(name, layer.as_slice()).unwrap();
    }
    let listed: Vec<ListedLayer> = names.into_iter().map(|digest| ListedLayer { digest, containerd: true }).collect();
    let layers: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
    s.finish(&listed, &common::images::with_diff_ids(config, &layers), true).unwrap().findings
}

fn scan(layers: &[Vec<u8>]) -> Vec<(Rule, Option<String>, Option<String>)> {
    scan_with(layers, CONFIG).into_iter().map(|f| (f.rule, f.path, f.layer)).collect()
}

const AWS: &[u8] = b"[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n";

#[test]
fn aws_key_deleted_in_an_upper_layer_is_still_found() {
    let lower = gzip(&tar(&[Item::Dir("app/", 0o755), Item::File("app/.aws/credentials", AWS, 0o600)]));
    let upper = zstd(&tar(&[
        Item::File("app/.aws/.wh.credentials", b"", 0o600),
        Item::File("app/run.sh", b"#!/bin/sh\n", 0o755),
    ]));
    let found = scan(&[lower, upper]);
    assert_eq!(found, [(Rule::SecretInFile, Some("/app/.aws/credentials".into()), Some("layer0".into()))]);
}

#[test]
fn setuid_and_world_writable_respect_whiteouts() {
    let lower = tar(&[
        Item::File("usr/bin/su", b"\x7fELF", 0o4755),
        Item::File("usr/bin/gone", b"\x7fELF", 0o2755),
        Item::Dir("tmp/", 0o1777),
        Item::Dir("data/", 0o777),
        Item::File("data/open.txt", b"x", 0o666),
        Item::Dir("old/", 0o777),
        Item::File("old/x", b"x", 0o666),
    ]);
    let upper = gzip(&tar(&[Item::File("usr/bin/.wh.gone", b"", 0o644), Item::File("old/.wh..wh..opq", b"", 0o644)]));
    let found = scan(&[lower, upper]);
    let paths: Vec<_> = found.iter().map(|(r, p, _)| (*r, p.clone().unwrap_or_default())).collect();
    assert!(paths.contains(&(Rule::SetuidFile, "/usr/bin/su".into())), "{paths:?}");
    assert!(paths.contains(&(Rule::WorldWritable, "/data".into())), "{paths:?}");
    assert!(paths.contains(&(Rule::WorldWritable, "/data/open.txt".into())), "{paths:?}");
    assert!(!paths.iter().any(|(_, p)| p == "/usr/bin/gone"), "a whited-out file is not in the image");
    assert!(!paths.iter().any(|(_, p)| p == "/tmp"), "sticky /tmp is fine");
    assert!(!paths.iter().any(|(_, p)| p == "/old/x"), "an opaque whiteout hides lower children");
}

#[test]
fn config_rules_and_the_hardened_default_verdict() {
    let policy = Policy::default();
    let root = image_config::check(json!({"config": {"Cmd": ["/app"]}}).to_string().as_bytes(), Some(&Lookup::Missing))
        .unwrap();
    assert!(!policy.assess(root).passed(), "running as root blocks by default");
    let env = image_config::check(
        json!({"config": {"User": "1000", "Env": ["TLS_KEY=-----BEGIN EC PRIVATE KEY-----MHcCAQ"]}})
            .to_string()
            .as_bytes(),
        Some(&Lookup::Missing),
    )
    .unwrap();
    let a = policy.assess(env);
    assert_eq!(a.blocking.iter().map(|f| f.rule).collect::<Vec<_>>(), [Rule::SecretInEnv]);
    // Setuid warns, it does not block.
    let setuid = scan_with(&[tar(&[Item::File("bin/ping", b"x", 0o4755)])], CONFIG);
    let a = policy.assess(setuid);
    assert!(a.passed() && a.warnings.len() == 1, "{a:?}");
}

#[test]
fn a_clean_non_root_image_passes() {
    let layer = gzip(&tar(&[
        Item::Dir("app/", 0o755),
        Item::File("app/server", b"\x7fELF binary", 0o755),
        Item::Dir("tmp/", 0o1777),
    ]));
    let findings = scan_with(&[layer], br#"{"config": {"User": "10001:10001", "Env": ["PATH=/usr/bin"]}}"#);
    assert!(findings.is_empty(), "{findings:?}");
    assert!(Policy::default().assess(findings).passed());
}

#[test]
fn corrupt_layers_fail_closed() {
    let mut s = ImageScan::new(&ScanLimits::default());
    let mut broken = gzip(&tar(&[Item::File("a", b"x", 0o644)]));
    broken.truncate(broken.len() / 2);
    assert!(s.scan_layer("bad", broken.as_slice()).is_err());
}
