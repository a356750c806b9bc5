//! Layer tarballs built in the tests, crafted ones included: several zstd frames or gzip members,
//! skippable frames, archives without an end marker or with bytes after it.

use std::io::Write;

/// One entry of a layer.
pub enum Entry<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str, u32),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
    /// A hard link whose own header carries `mode` (unpackers may chmod the shared inode to it).
    HardLinkMode(&'a str, &'a str, u32),
    /// A file with PAX records before it (extended attributes, say).
    WithPax(&'a str, &'a [u8], u32, &'a [(&'a str, &'a [u8])]),
    /// A PAX global header named `path`.
    GlobalHeader(&'a str),
}

/// A tar archive of `entries`, with its end-of-archive marker.
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        match entry {
            Entry::File(path, content, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(content.len() as u64);
                h.set_mode(*mode);
                b.append_data(&mut h, path, *content).unwrap();
            }
            Entry::Dir(path, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(*mode);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
            Entry::Symlink(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_mode(0o777);
                b.append_link(&mut h, path, target).unwrap();
            }
            Entry::HardLink(path, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                h.set_mode(0o644);
                b.append_link(&mut h, path, target).unwrap();
            }
            Entry::HardLinkMode(path, target, mode) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                h.set_mode(*mode);
                b.append_link(&mut h, path, target).unwrap();
            }
            Entry::WithPax(path, content, mode, records) => {
                b.append_pax_extensions(records.iter().map(|(k, v)| (*k, *v))).unwrap();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(content.len() as u64);
                h.set_mode(*mode);
                b.append_data(&mut h, path, *content).unwrap();
            }
            Entry::GlobalHeader(path) => {
                let record = b"15 comment=hey\n";
                let mut h = tar::Header::new_ustar();
                h.set_path(path).unwrap();
                h.set_entry_type(tar::EntryType::XGlobalHeader);
                h.set_size(record.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                b.append(&h, &record[..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// The same archive without its end-of-archive marker (the two zero blocks).
pub fn tar_unterminated(entries: &[Entry]) -> Vec<u8> {
    let mut t = tar(entries);
    t.truncate(t.len() - 1024);
    t
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
}

/// A zstd skippable frame holding `payload`.
pub fn skippable(payload: &[u8]) -> Vec<u8> {
    let mut f = 0x184D2A5Au32.to_le_bytes().to_vec();
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// A private key that the secret patterns find.
pub const PRIVATE_KEY: &[u8] = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n";

/// An image config running as `user` (none: no `User` at all).
pub fn config(user: Option<&str>) -> Vec<u8> {
    let mut c = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": []}});
    if let Some(u) = user {
        c["config"]["User"] = u.into();
    }
    serde_json::to_vec(&c).unwrap()
}
