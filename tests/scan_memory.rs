//! The scanner's memory is bounded: layers crafted to make a parser hold much, or decompress
//! without end, end in a verdict, and the registry process (a real one, its peak RSS read from
//! /proc) stays small and keeps serving. The scan itself runs in the sandbox process, whose own
//! memory limit is tested too.

mod common;

use common::layers::{config, gzip, tar, Entry};
use common::process::{push_blob_chunked, Server};
use common::{images, sha256};

/// A zstd frame built by hand: raw blocks for bytes, RLE blocks for runs. Crafting a layer of
/// gigabytes this way takes no time and a few kilobytes.
#[derive(Default)]
struct Zstd {
    blocks: Vec<u8>,
}

const BLOCK: usize = 128 * 1024;

impl Zstd {
    fn header(&mut self, kind: u32, size: usize) {
        let h = (kind << 1) | ((size as u32) << 3);
        self.blocks.extend_from_slice(&h.to_le_bytes()[..3]);
    }
    fn raw(mut self, bytes: &[u8]) -> Self {
        for chunk in bytes.chunks(BLOCK) {
            self.header(0, chunk.len());
            self.blocks.extend_from_slice(chunk);
        }
        self
    }
    fn rle(mut self, byte: u8, mut count: u64) -> Self {
        while count > 0 {
            let n = count.min(BLOCK as u64) as usize;
            self.header(1, n);
            self.blocks.push(byte);
            count -= n as u64;
        }
        self
    }
    fn finish(mut self) -> Vec<u8> {
        // An empty raw block marked last.
        self.blocks.extend_from_slice(&1u32.to_le_bytes()[..3]);
        // Magic, a descriptor without content size or checksum, a 128 KiB window.
        let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38];
        frame.extend(self.blocks);
        frame
    }
}

fn header(name: &str, kind: tar::EntryType, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    h.as_bytes().to_vec()
}

fn padding(size: u64) -> u64 {
    (512 - size % 512) % 512
}

/// Reads VmHWM and VmRSS of a process, in MiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |key: &str| -> u64 {
        status.lines().find(|l| l.starts_with(key)).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (kib("VmHWM:") / 1024, kib("VmRSS:") / 1024)
}

/// Pushes `layer` in an image; its config names the layer's diff_id as a client computes it when
/// `diff_id` (the crafted layers that are refused before their end leave it out: hashing an
/// 8 GiB stream here proves nothing).
async fn push(server: &Server, client: &reqwest::Client, repo: &str, tag: &str, layer: &[u8], diff_id: bool) -> String {
    let base = server.url("");
    let cfg = if diff_id { images::with_diff_ids(&config(Some("1000")), &[layer]) } else { config(Some("1000")) };
    let config_digest = push_blob_chunked(client, &base, repo, &cfg, 1 << 20).await.unwrap();
    let layer_digest = push_blob_chunked(client, &base, repo, layer, 8 << 20).await.unwrap();
    let manifest = images::oci_manifest(&config_digest, cfg.len(), &[(layer_digest, layer.len())], None);
    let reply = client
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", images::OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);
    sha256(&manifest).to_string()
}

async fn report(server: &Server, repo: &str, digest: &str) -> serde_json::Value {
    let url = server.url(&format!("/api/v1/scans?repository={repo}&digest={digest}&wait=120s"));
    let reply = server.client().get(url).basic_auth("admin", Some(common::ADMIN_PASSWORD)).send().await.unwrap();
    reply.json().await.unwrap()
}

#[tokio::test]
async fn crafted_layers_end_in_a_verdict_and_the_registry_stays_small() {
    let dir = tempfile::tempdir().unwrap();
    let env = common::backends::for_data_dir(dir.path()).map(|n| common::backends::env(&n)).unwrap_or_default();
    let mut env = env;
    env.push(("PORTCULLIS_SCAN_LIMITS_MAX_DECOMPRESSED_BYTES".into(), (2u64 << 30).to_string()));
    let server = Server::start_with_env(dir.path(), common::process::free_port(), None, &env);
    let pid = server.child.as_ref().unwrap().id();
    let client = server.admin_client(&["repository:mem/app:pull,push"]).await;

    // 64 package metadata files of 16 MiB each (the most a parsed file may have), 1 GiB in all,
    // in a layer of a few hundred KiB: each is parsed and let go; the image passes.
    let mut z = Zstd::default();
    for i in 0..64 {
        let size = 16u64 << 20;
        let head = format!("Metadata-Version: 2.1\nName: pkg{i}\nVersion: 1.0\n\n");
        z = z
            .raw(&header(
                &format!("usr/lib/python3/site-packages/pkg{i}-1.0.dist-info/METADATA"),
                tar::EntryType::Regular,
                size,
            ))
            .raw(head.as_bytes())
            .rle(b' ', size - head.len() as u64)
            .rle(0, padding(size));
    }
    let metadata = z.rle(0, 1024).finish();
    // A GNU long name of 256 MiB, and a PAX header as long: refused at the header, not read.
    let big = 256u64 << 20;
    let long_name =
        Zstd::default().raw(&header("././@LongLink", tar::EntryType::GNULongName, big)).rle(b'a', big).finish();
    let long_pax = Zstd::default().raw(&header("PaxHeaders/x", tar::EntryType::XHeader, big)).rle(b'a', big).finish();
    // 8 GiB of zeros (an end-of-archive marker followed by padding): over the 2 GiB budget.
    let bomb = Zstd::default().rle(0, 8 << 30).finish();
    let cases = [
        ("metadata", metadata, "passed", None),
        ("long-name", long_name, "error", Some("scan.limits.max_header_bytes")),
        ("long-pax", long_pax, "error", Some("scan.limits.max_header_bytes")),
        ("bomb", bomb, "error", Some("scan.limits.max_decompressed_bytes")),
    ];
    for (tag, layer, state, reason) in cases {
        assert!(layer.len() < 4 << 20, "{tag}: {} bytes", layer.len());
        let started = std::time::Instant::now();
        let digest = push(&server, &client, "mem/app", tag, &layer, state == "passed").await;
        let v = report(&server, "mem/app", &digest).await;
        println!("{tag}: verdict in {:?}", started.elapsed());
        assert_eq!(v["state"], state, "{tag}: {v}");
        if let Some(reason) = reason {
            assert!(v["summary"].as_str().unwrap().contains(reason), "{tag}: {v}");
        }
        let (peak, now) = memory(pid);
        println!("after {tag}: registry RSS {now} MiB, peak {peak} MiB");
    }
    let (peak, _) = memory(pid);
    assert!(peak < 256, "the registry's peak RSS was {peak} MiB");

    // It keeps serving: a clean image pushes, passes and pulls.
    let layer = gzip(&tar(&[Entry::File("app/hello", b"hello", 0o644)]));
    let digest = push(&server, &client, "mem/app", "clean", &layer, true).await;
    assert_eq!(report(&server, "mem/app", &digest).await["state"], "passed");
    let pulled = client.get(server.url("/v2/mem/app/manifests/clean")).send().await.unwrap();
    assert_eq!(pulled.status(), 200);
}

/// A scan that needs more memory than the sandbox may have fails closed, naming the limit, and is
/// not retried (it would fail again); the registry is untouched.
#[tokio::test]
async fn the_sandbox_memory_limit_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let r = common::TestRegistry::with_config(dir, |c| {
        c.scan.limits.memory = 128 << 20;
        c.scan.limits.max_file_bytes = 1 << 30;
    })
    .await;
    // A 400 MiB /etc/passwd, which the scanner reads whole to parse.
    let size = 400u64 << 20;
    let layer =
        Zstd::default().raw(&header("etc/passwd", tar::EntryType::Regular, size)).rle(b'x', size).rle(0, 1024).finish();
    let (d, ..) = r.push_layers("team/big", "v1", &config(Some("app")), &[&layer]).await;
    let v = r.verdict("team/big", &d).await;
    assert_eq!(v["state"], "error", "{v}");
    assert!(v["summary"].as_str().unwrap().contains("scan.limits.memory"), "{v}");
}

/// The sandbox child puts its limits on itself before it reads any input: the kernel's view of a
/// waiting child (`/proc/<pid>/limits`, `status`, `oom_score_adj`) shows every one of them.
#[test]
fn the_sandbox_child_is_limited_before_it_reads() {
    use std::process::{Command, Stdio};
    let memory = 300u64 << 20;
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["scan-sandbox", "--memory", &memory.to_string(), "--cpu", "7"])
        .args(["--parent", &std::process::id().to_string()])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let proc = format!("/proc/{}", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(format!("{proc}/oom_score_adj")).unwrap_or_default().trim() != "1000" {
        assert!(std::time::Instant::now() < deadline, "the child never set its oom_score_adj");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let limits = std::fs::read_to_string(format!("{proc}/limits")).unwrap();
    let row = |name: &str| -> Vec<String> {
        let line = limits.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}: {limits}"));
        line[name.len()..].split_whitespace().take(2).map(str::to_owned).collect()
    };
    assert_eq!(row("Max address space"), [memory.to_string(), memory.to_string()]);
    assert_eq!(row("Max cpu time"), ["7", "12"]);
    assert_eq!(row("Max file size"), ["0", "0"]);
    assert_eq!(row("Max core file size"), ["0", "0"]);
    let status = std::fs::read_to_string(format!("{proc}/status")).unwrap();
    assert!(status.lines().any(|l| l.split_whitespace().eq(["NoNewPrivs:", "1"])), "{status}");
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no plan"), "{out:?}");

    // Started for a registry that is not its parent (one that died before the child armed its
    // death signal): it refuses to run at all.
    let orphan = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["scan-sandbox", "--memory", &memory.to_string(), "--cpu", "7", "--parent", "1"])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!orphan.status.success());
    assert!(String::from_utf8_lossy(&orphan.stderr).contains("is gone"), "{orphan:?}");
    assert!(orphan.stdout.is_empty());
}
