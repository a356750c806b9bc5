//! Fuzzing the parsers a pusher feeds: the layer reader (tar in gzip or zstd, as an image layer
//! and as an artifact blob), the image config and the manifest parser. Each input must end in a
//! result, never a panic, within bounded memory (counted by this binary's allocator) and time.
//!
//! Inputs are mutations of valid seeds (so that the fuzzer reaches deep states: PAX records, long
//! names, whiteouts, links, several frames) and raw random bytes. `PROPTEST_CASES` sets how many
//! per target (CI runs the default, a bounded few thousand).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::layers::{gzip, skippable, tar, zstd, Entry, PRIVATE_KEY};
use portcullis::scan::content::{ArtifactScan, ImageScan, ListedLayer};
use portcullis::scan::fs::Lookup;
use portcullis::scan::image_config;
use portcullis::scan::limits::ScanLimits;
use proptest::prelude::*;

/// Counts the bytes each thread holds, and the most it held since the last reset.
struct Counting;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    let _ = HELD.try_with(|h| {
        let now = h.get() + delta;
        h.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: every call is passed to the system allocator unchanged; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        account(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        account(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        account(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns the most memory it held beyond what was held before, in bytes.
fn peak_of(f: impl FnOnce()) -> isize {
    let base = HELD.with(Cell::get);
    PEAK.with(|p| p.set(base));
    f();
    PEAK.with(Cell::get) - base
}

/// Small budgets, so that a case can hit each of them quickly.
fn limits() -> ScanLimits {
    ScanLimits {
        max_decompressed_bytes: 4 << 20,
        max_entries: 2_000,
        max_path_bytes: 1024,
        max_header_bytes: 64 << 10,
        max_file_bytes: 256 << 10,
        max_packages: 1_000,
        ..ScanLimits::default()
    }
}

/// The memory a case may hold: the budgets above, the decoders' windows, and room to spare. A
/// parser that buffered what the input claimed (a 2 GiB header, say) would go far beyond it.
const MEMORY: isize = 160 << 20;

fn seeds() -> Vec<Vec<u8>> {
    let long = format!("{}/file", "d".repeat(300));
    let plain = tar(&[
        Entry::Dir("etc/", 0o755),
        Entry::File("etc/passwd", b"root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n", 0o644),
        Entry::File(&long, b"long name", 0o644),
        Entry::File("var/lib/dpkg/status", b"Package: a\nStatus: install ok installed\nVersion: 1\n", 0o644),
        Entry::File("usr/bin/su", b"\x7fELF", 0o4755),
        Entry::File("secret/key", PRIVATE_KEY, 0o600),
        Entry::Symlink("lib", "usr/lib"),
        Entry::HardLink("usr/bin/alias", "usr/bin/su"),
        Entry::File("etc/.wh.shadow", b"", 0o644),
        Entry::File("opt/.wh..wh..opq", b"", 0o644),
    ]);
    let mut pax = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(5);
    h.set_mode(0o644);
    pax.append_pax_extensions([("path", &b"pax/path/name"[..]), ("size", b"5")]).unwrap();
    pax.append_data(&mut h, "short", &b"hello"[..]).unwrap();
    let pax = pax.into_inner().unwrap();
    let mut frames = zstd(&plain[..plain.len() - 1024]);
    frames.extend(skippable(b"skip"));
    frames.extend(zstd(&pax));
    vec![plain.clone(), gzip(&plain), zstd(&plain), pax, frames, gzip(&[gzip(b"a"), gzip(b"b")].concat())]
}

/// A mutation of a seed: flipped bits, overwritten runs, cuts and copies.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds();
    (0..seeds.len(), proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..5), 1..12)).prop_map(
        move |(i, edits)| {
            let mut data = seeds[i].clone();
            for (at, byte, kind) in edits {
                if data.is_empty() {
                    break;
                }
                let at = at as usize % data.len();
                match kind {
                    0 => data[at] ^= 1 << (byte % 8),
                    1 => data[at] = byte,
                    2 => data.truncate(at),
                    3 => {
                        let end = (at + byte as usize).min(data.len());
                        let copy = data[at..end].to_vec();
                        data.splice(at..at, copy);
                    }
                    _ => {
                        let end = (at + 512).min(data.len());
                        data[at..end].fill(byte);
                    }
                }
            }
            data
        },
    )
}

fn scan_layer(data: &[u8]) {
    let limits = limits();
    let mut image = ImageScan::new(&limits);
    if image.scan_layer("sha256:layer", data).is_ok() {
        let listed = ListedLayer { digest: "sha256:layer".to_owned(), containerd: true };
        // Diff ids that match the layer (when it is an uncompressed tar) and ones that do not.
        let config = common::images::with_diff_ids(br#"{"config":{"User":"app"}}"#, &[data, data]);
        let _ = image.finish(&[listed.clone(), listed], &config, true);
    }
    let mut artifact = ArtifactScan::new(&limits);
    let _ = artifact.scan_blob("sha256:blob", data);
    let _ = artifact.finish();
}

fn bounded(what: &str, data: &[u8], run: impl FnOnce()) -> Result<(), TestCaseError> {
    let started = std::time::Instant::now();
    let peak = peak_of(run);
    prop_assert!(peak < MEMORY, "{what} of {} bytes held {peak} bytes", data.len());
    prop_assert!(started.elapsed() < std::time::Duration::from_secs(10), "{what} took {:?}", started.elapsed());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_layer_reader_survives_mutated_layers(data in mutated()) {
        bounded("a mutated layer", &data, || scan_layer(&data))?;
    }

    #[test]
    fn the_layer_reader_survives_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        bounded("random bytes", &data, || scan_layer(&data))?;
    }

    #[test]
    fn the_config_and_manifest_parsers_survive_mutations(
        data in (0usize..3, proptest::collection::vec((any::<u16>(), any::<u8>()), 0..8)).prop_map(|(i, edits)| {
            let seeds = [
                br#"{"config":{"User":"app","Env":["A=b"],"ExposedPorts":{"22/tcp":{}}},"config":{"user":"0"}}"#.to_vec(),
                serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", "a".repeat(64)), "size": 2},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{}", "b".repeat(64)), "size": 1, "urls": ["x"]}],
                    "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", "c".repeat(64)), "size": 3},
                    "annotations": {"k": "v"}})).unwrap(),
                serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", "d".repeat(64)), "size": 7}]})).unwrap(),
            ];
            let mut data = seeds[i].clone();
            for (at, byte) in edits {
                if !data.is_empty() {
                    let at = at as usize % data.len();
                    data[at] = byte;
                }
            }
            data
        })
    ) {
        bounded("a config or manifest", &data, || {
            let _ = image_config::check(&data, Some(&Lookup::Missing));
            let _ = image_config::manifest_secrets(&data);
            if let Ok(m) = portcullis::domain::manifest::parse(&data, None) {
                let _ = (m.classify(), m.references());
            }
        })?;
    }
}

/// The limits themselves hold on inputs built to exceed them (not left to chance).
#[test]
fn crafted_inputs_hit_their_budget_within_bounded_memory() {
    // The counter counts (else every bound above would hold trivially).
    assert!(peak_of(|| drop(std::hint::black_box(vec![1u8; 8 << 20]))) >= 8 << 20);
    // 64 MiB of zeros in a tiny zstd frame: stopped at the decompression budget.
    let bomb = zstd(&vec![0u8; 64 << 20]);
    let peak = peak_of(|| scan_layer(&bomb));
    assert!(peak < MEMORY, "held {peak} bytes");
    // Deep nesting in JSON: serde_json's recursion limit answers, no stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(image_config::check(deep.as_bytes(), Some(&Lookup::Missing)).is_err());
    assert!(portcullis::domain::manifest::parse(deep.as_bytes(), None).is_err());
}
