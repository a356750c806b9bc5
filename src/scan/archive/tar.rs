//! A strict, streaming tar reader that sees the entries Go's `archive/tar` sees (containerd,
//! podman, skopeo and docker all unpack layers with it), and refuses what Go refuses or what
//! unpackers could read in two ways.
//!
//! Rules (each one closes a way to show the scanner other entries than a client extracts):
//! - Headers are checked as Go checks them: the checksum (signed or unsigned sum), octal and
//!   base-256 numbers, the USTAR, PAX, GNU and STAR formats and their name prefixes. An invalid
//!   header is an error, never the end of the archive.
//! - PAX records and GNU long names apply to the next entry as in Go (the last extended header
//!   wins; a GNU long name wins over a PAX `path`, an empty one changes nothing); the PAX `size`
//!   decides where the data ends. A PAX global header is handed back as an entry of its own and
//!   forgets the extended headers before it, as Go does (unpackers then remove what stands at its
//!   path, so an image scan refuses it). A `security.capability` attribute is reported.
//! - End of archive: a zero block followed by a zero block (or by the end of the stream). A zero
//!   block followed by a header is an error; after the end marker only zero bytes may follow (a
//!   client stops there, so anything else would be bytes the scanner sees and nobody unpacks, or
//!   the start of a trick). The stream may also end at a header boundary without a marker, as Go allows.
//! - Refused although some reader accepts them: sparse files, entry types containerd does not
//!   extract, links or directories that claim a data size (Go skips no data for them, other readers
//!   do), GNU headers whose time fields do not parse (Go then guesses a name prefix).
//! - Every header counts against the scan's entry budget; PAX and long-name records are bounded
//!   by `max_header_bytes`, paths and link targets by `max_path_bytes`.

use std::io::Read;

use crate::scan::limits::{from_io, to_io, Allowance, ScanError, ScanLimits};

const BLOCK: usize = 512;

/// What an entry is, after the legacy forms are normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    HardLink,
    Symlink,
    CharDevice,
    BlockDevice,
    Dir,
    Fifo,
    /// A PAX global header (`g`). Go returns it as an entry, dropping any extended header before
    /// it, and unpackers remove whatever stands at its path before ignoring it.
    GlobalHeader,
}

impl EntryKind {
    /// Types that have no data section (Go reads none for them, whatever the size field says).
    fn header_only(self) -> bool {
        !matches!(self, EntryKind::File)
    }
}

/// One entry, with its path and link target as raw bytes (not necessarily UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits with setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    pub size: u64,
    pub link: Vec<u8>,
    /// A `security.capability` extended attribute (PAX `SCHILY.xattr.security.capability`), which
    /// unpackers set: file capabilities grant privileges as setuid does.
    pub capability: bool,
}

/// The bounds a reader enforces on one archive (the entry budget is shared by a scan).
#[derive(Debug, Clone)]
pub struct TarBounds {
    pub max_path_bytes: usize,
    pub max_header_bytes: u64,
    pub entries: Allowance,
}

impl TarBounds {
    pub fn from_limits(limits: &ScanLimits, entries: Allowance) -> Self {
        TarBounds { max_path_bytes: limits.max_path_bytes, max_header_bytes: limits.max_header_bytes, entries }
    }
}

/// Streams the entries of one tar archive.
pub struct TarReader<R: Read> {
    inner: R,
    bounds: TarBounds,
    /// Data bytes of the current entry not yet read, then its padding.
    remaining: u64,
    padding: u64,
    done: bool,
}

fn bad(message: impl Into<String>) -> ScanError {
    ScanError::unreadable(format!("tar: {}", message.into()))
}

/// Reads a whole block; `Ok(false)` at the end of the stream before its first byte.
fn read_block(r: &mut impl Read, block: &mut [u8; BLOCK]) -> Result<bool, ScanError> {
    let mut filled = 0;
    while filled < BLOCK {
        match r.read(&mut block[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(bad("the archive ends inside a header")),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(from_io(e)),
        }
    }
    Ok(true)
}

/// The bytes up to the first NUL (Go's `parseString`).
fn c_string(field: &[u8]) -> &[u8] {
    field.iter().position(|&b| b == 0).map_or(field, |n| &field[..n])
}

/// Go's `parseOctal`: NULs and spaces trimmed at both ends, then cut at a NUL, then base 8.
fn parse_octal(field: &[u8]) -> Result<u64, ScanError> {
    let start = field.iter().position(|&b| b != b' ' && b != 0).unwrap_or(field.len());
    let end = field.iter().rposition(|&b| b != b' ' && b != 0).map_or(start, |n| n + 1);
    let trimmed = c_string(&field[start..end.max(start)]);
    if trimmed.is_empty() {
        return Ok(0);
    }
    let text = std::str::from_utf8(trimmed).map_err(|_| bad("a numeric field is not octal"))?;
    // ParseUint accepts no sign and no underscores with an explicit base; neither does this.
    if !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad("a numeric field is not octal"));
    }
    u64::from_str_radix(text, 8).map_err(|_| bad("a numeric field overflows"))
}

/// Go's `parseNumeric`: base-256 when the first bit is set (two's complement), else octal.
fn parse_numeric(field: &[u8]) -> Result<i64, ScanError> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let inv: u8 = if field[0] & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, &c) in field.iter().enumerate() {
            let mut c = c ^ inv;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 > 0 {
                return Err(bad("a base-256 field overflows"));
            }
            x = (x << 8) | u64::from(c);
        }
        if x >> 63 > 0 {
            return Err(bad("a base-256 field overflows"));
        }
        return Ok(if inv == 0xff { !(x as i64) } else { x as i64 });
    }
    let v = parse_octal(field)?;
    i64::try_from(v).map_err(|_| bad("a numeric field overflows"))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    V7,
    Ustar,
    Gnu,
    Star,
}

/// Checks the checksum (Go accepts the unsigned or the signed sum) and tells the format.
fn format_of(block: &[u8; BLOCK]) -> Result<Format, ScanError> {
    let stored = parse_octal(&block[148..156]).map_err(|_| bad("invalid header checksum"))?;
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    if stored != unsigned && stored as i64 != signed {
        return Err(bad("invalid header checksum"));
    }
    let (magic, version, trailer) = (&block[257..263], &block[263..265], &block[508..512]);
    Ok(match (magic, version) {
        (b"ustar\0", _) if trailer == b"tar\0" => Format::Star,
        (b"ustar\0", _) => Format::Ustar,
        (b"ustar ", b" \0") => Format::Gnu,
        _ => Format::V7,
    })
}

/// Whether `block` is a tar header with a valid checksum (how an artifact's blob is told to be a
/// tar archive rather than other bytes).
pub fn is_header(block: &[u8]) -> bool {
    <&[u8; BLOCK]>::try_from(block).is_ok_and(|b| format_of(b).is_ok())
}

/// The PAX records that matter, with Go's validation of every record.
#[derive(Debug, Default, Clone)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    capability: bool,
}

fn parse_pax(mut data: &[u8]) -> Result<Pax, ScanError> {
    let mut pax = Pax::default();
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ').ok_or_else(|| bad("malformed PAX record"))?;
        let len_text = std::str::from_utf8(&data[..space]).map_err(|_| bad("malformed PAX record"))?;
        let len: i64 = len_text.parse().map_err(|_| bad("malformed PAX record"))?;
        if len < 5 || len as u64 > data.len() as u64 || len as usize <= space + 1 {
            return Err(bad("malformed PAX record"));
        }
        let record = &data[space + 1..len as usize];
        data = &data[len as usize..];
        let (body, newline) = record.split_at(record.len() - 1);
        if newline != b"\n" {
            return Err(bad("malformed PAX record"));
        }
        let eq = body.iter().position(|&b| b == b'=').ok_or_else(|| bad("malformed PAX record"))?;
        let (key, value) = (&body[..eq], &body[eq + 1..]);
        let nul_in_value = matches!(key, b"path" | b"linkpath" | b"uname" | b"gname") && value.contains(&0);
        if key.is_empty() || key.contains(&0) || nul_in_value {
            return Err(bad("malformed PAX record"));
        }
        if key.starts_with(b"GNU.sparse.") {
            return Err(bad("sparse files are not supported"));
        }
        // An empty value keeps the header's own field (Go's mergePAX).
        let value = (!value.is_empty()).then(|| value.to_vec());
        match key {
            b"path" => pax.path = value,
            b"SCHILY.xattr.security.capability" => pax.capability = value.is_some(),
            b"linkpath" => pax.linkpath = value,
            b"size" => {
                pax.size = match value {
                    None => None,
                    Some(v) => {
                        let text = std::str::from_utf8(&v).map_err(|_| bad("invalid PAX size"))?;
                        let n: i64 = text.parse().map_err(|_| bad("invalid PAX size"))?;
                        Some(u64::try_from(n).map_err(|_| bad("negative PAX size"))?)
                    }
                }
            }
            _ => {}
        }
    }
    Ok(pax)
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R, bounds: TarBounds) -> Self {
        TarReader { inner, bounds, remaining: 0, padding: 0, done: false }
    }

    /// The stream, for whatever follows the archive.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Reads up to `buf.len()` bytes of the current entry's data; 0 at its end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, ScanError> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(self.remaining.min(usize::MAX as u64) as usize);
        let n = loop {
            match self.inner.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(from_io(e)),
            }
        };
        if n == 0 {
            return Err(bad("the archive ends inside an entry's data"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }

    /// Reads exactly `n` bytes of the current entry into memory (`n` bounded by the caller).
    fn read_record(&mut self, n: u64) -> Result<Vec<u8>, ScanError> {
        let mut data = vec![0u8; n as usize];
        let mut filled = 0;
        while filled < data.len() {
            filled += self.read_data(&mut data[filled..])?;
        }
        Ok(data)
    }

    /// Skips what is left of the current entry and its padding.
    fn skip_rest(&mut self) -> Result<(), ScanError> {
        let mut sink = [0u8; 8192];
        while self.remaining > 0 {
            self.read_data(&mut sink)?;
        }
        let padding = std::mem::take(&mut self.padding);
        let skipped = std::io::copy(&mut (&mut self.inner).take(padding), &mut std::io::sink()).map_err(from_io)?;
        if skipped != padding {
            return Err(bad("the archive ends inside an entry's padding"));
        }
        Ok(())
    }

    fn begin_data(&mut self, size: u64) {
        self.remaining = size;
        self.padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
    }

    /// After the end-of-archive marker only zero bytes may follow.
    fn check_trailer(&mut self) -> Result<(), ScanError> {
        const ZEROS: [u8; 8192] = [0; 8192];
        let mut buf = [0u8; 8192];
        loop {
            let n = match self.inner.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(from_io(e)),
            };
            if n == 0 {
                return Ok(());
            }
            // A slice comparison (memcmp), not a byte loop: a bomb of zeros is read at memory speed.
            if buf[..n] != ZEROS[..n] {
                return Err(bad("data after the end-of-archive marker"));
            }
        }
    }

    fn check_path(&self, what: &str, path: &[u8]) -> Result<(), ScanError> {
        if path.len() > self.bounds.max_path_bytes {
            return Err(ScanError::limit(
                format!("a {what} of {} bytes", path.len()),
                self.bounds.max_path_bytes as u64,
                "max_path_bytes",
            ));
        }
        Ok(())
    }

    /// The next entry, or `None` at the end of the archive.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, ScanError> {
        if self.done {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut pax: Option<Pax> = None;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut block = [0u8; BLOCK];
        loop {
            let pending = pax.is_some() || long_name.is_some() || long_link.is_some();
            if !read_block(&mut self.inner, &mut block)? {
                if pending {
                    return Err(bad("the archive ends after an extended header"));
                }
                self.done = true;
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                let second = read_block(&mut self.inner, &mut block)?;
                if second && block.iter().any(|&b| b != 0) {
                    return Err(bad("a zero block followed by a header"));
                }
                if pending {
                    return Err(bad("the archive ends after an extended header"));
                }
                self.check_trailer()?;
                self.done = true;
                return Ok(None);
            }
            self.bounds.entries.spend(1)?;
            let format = format_of(&block)?;
            let typeflag = block[156];
            let header_size = parse_numeric(&block[124..136])?;
            let header_size = u64::try_from(header_size).map_err(|_| bad("negative size"))?;
            match typeflag {
                b'x' | b'g' | b'L' | b'K' => {
                    if header_size > self.bounds.max_header_bytes {
                        let what = if typeflag == b'L' || typeflag == b'K' { "GNU long name" } else { "PAX header" };
                        return Err(ScanError::limit(
                            format!("a {what} of {header_size} bytes"),
                            self.bounds.max_header_bytes,
                            "max_header_bytes",
                        ));
                    }
                    self.begin_data(header_size);
                    let data = self.read_record(header_size)?;
                    self.skip_rest()?;
                    match typeflag {
                        b'x' => pax = Some(parse_pax(&data)?),
                        b'g' => {
                            // Go hands the global header back as an entry, its own records merged
                            // and whatever extended headers came before it forgotten.
                            let records = parse_pax(&data)?;
                            let path = records.path.unwrap_or_else(|| c_string(&block[0..100]).to_vec());
                            self.check_path("path", &path)?;
                            return Ok(Some(Entry {
                                path,
                                kind: EntryKind::GlobalHeader,
                                mode: 0,
                                size: 0,
                                link: Vec::new(),
                                capability: false,
                            }));
                        }
                        // Go ignores an empty long name or link (`if gnuLongName != ""`).
                        b'L' => long_name = Some(c_string(&data).to_vec()).filter(|n| !n.is_empty()),
                        _ => long_link = Some(c_string(&data).to_vec()).filter(|n| !n.is_empty()),
                    }
                    continue;
                }
                b'S' => return Err(bad("sparse files are not supported")),
                _ => {}
            }
            // Numeric fields Go parses for every entry: an error in any is an invalid header.
            let mode = parse_numeric(&block[100..108])?;
            for field in [&block[108..116], &block[116..124], &block[136..148]] {
                parse_numeric(field)?;
            }
            let mut path = c_string(&block[0..100]).to_vec();
            let mut link = c_string(&block[157..257]).to_vec();
            if format != Format::V7 {
                parse_numeric(&block[329..337])?;
                parse_numeric(&block[337..345])?;
            }
            let prefix: &[u8] = match format {
                Format::Ustar => c_string(&block[345..500]),
                Format::Star => c_string(&block[345..476]),
                Format::Gnu => {
                    // Go falls back to a USTAR prefix when these do not parse; refuse instead.
                    for field in [&block[345..357], &block[357..369]] {
                        if field[0] != 0 && parse_numeric(field).is_err() {
                            return Err(bad("a GNU header with unreadable time fields"));
                        }
                    }
                    b""
                }
                Format::V7 => b"",
            };
            if !prefix.is_empty() {
                let mut full = prefix.to_vec();
                full.push(b'/');
                full.extend_from_slice(&path);
                path = full;
            }
            let mut size = header_size;
            let mut capability = false;
            if let Some(p) = pax.take() {
                capability = p.capability;
                if let Some(v) = p.path {
                    path = v;
                }
                if let Some(v) = p.linkpath {
                    link = v;
                }
                if let Some(v) = p.size {
                    size = v;
                }
            }
            if let Some(v) = long_name.take() {
                path = v;
            }
            if let Some(v) = long_link.take() {
                link = v;
            }
            let kind = match typeflag {
                b'0' => EntryKind::File,
                0 if path.ends_with(b"/") => EntryKind::Dir,
                0 => EntryKind::File,
                b'1' => EntryKind::HardLink,
                b'2' => EntryKind::Symlink,
                b'3' => EntryKind::CharDevice,
                b'4' => EntryKind::BlockDevice,
                b'5' => EntryKind::Dir,
                b'6' => EntryKind::Fifo,
                other => {
                    return Err(bad(format!("entry type {:?} is not one that containerd extracts", other as char)))
                }
            };
            if kind.header_only() && size != 0 {
                return Err(bad("a link, directory or device entry with a data size"));
            }
            self.check_path("path", &path)?;
            self.check_path("link target", &link)?;
            self.begin_data(size);
            let mode = (mode as u64 & 0o7777) as u32;
            return Ok(Some(Entry { path, kind, mode, size, link, capability }));
        }
    }
}

/// The current entry's data as a reader (errors travel as [`ScanError`] inside `io::Error`).
pub struct EntryData<'a, R: Read>(pub &'a mut TarReader<R>);

impl<R: Read> Read for EntryData<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read_data(buf).map_err(to_io)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn bounds() -> TarBounds {
        TarBounds { max_path_bytes: 4096, max_header_bytes: 1 << 20, entries: Allowance::entries(1000) }
    }

    /// A raw header block with a correct checksum.
    pub fn header(name: &[u8], typeflag: u8, size: u64, mode: u32, magic: &[u8; 8]) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        b[100..107].copy_from_slice(format!("{mode:07o}").as_bytes());
        b[108..115].copy_from_slice(b"0000000");
        b[116..123].copy_from_slice(b"0000000");
        b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        b[136..147].copy_from_slice(b"00000000000");
        b[156] = typeflag;
        b[257..265].copy_from_slice(magic);
        seal(&mut b);
        b
    }

    pub fn seal(b: &mut [u8; BLOCK]) {
        b[148..156].copy_from_slice(b"        ");
        let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
        b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    }

    pub const USTAR: &[u8; 8] = b"ustar\x0000";
    pub const GNU: &[u8; 8] = b"ustar  \x00";

    pub fn file(name: &str, data: &[u8]) -> Vec<u8> {
        let mut out = header(name.as_bytes(), b'0', data.len() as u64, 0o644, USTAR).to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        out
    }

    pub fn end() -> Vec<u8> {
        vec![0u8; 2 * BLOCK]
    }

    fn entries(bytes: &[u8]) -> Result<Vec<(String, EntryKind, Vec<u8>)>, ScanError> {
        let mut r = TarReader::new(bytes, bounds());
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            let mut data = Vec::new();
            EntryData(&mut r).read_to_end(&mut data).map_err(from_io)?;
            out.push((String::from_utf8_lossy(&e.path).into_owned(), e.kind, data));
        }
        Ok(out)
    }

    #[test]
    fn reads_what_the_tar_crate_writes() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o4755);
        h.set_entry_type(tar::EntryType::Regular);
        let long = format!("{}/file", "d".repeat(150));
        b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "link", "target").unwrap();
        let bytes = b.into_inner().unwrap();
        let got = entries(&bytes).unwrap();
        assert_eq!(got[0], (long, EntryKind::File, b"abc".to_vec()));
        assert_eq!(got[1].1, EntryKind::Symlink);
        let mut r = TarReader::new(&bytes[..], bounds());
        assert_eq!(r.next_entry().unwrap().unwrap().mode, 0o4755);
    }

    #[test]
    fn pax_size_and_path_decide_as_in_go() {
        // A PAX header that says the next file has 512 bytes while its own header says 0: the
        // second file hides in "data" for a reader that ignores PAX sizes.
        let inner = file("hidden", b"secret");
        let pax = format!("{}{}", pax_record("size", &inner.len().to_string()), pax_record("path", "real/name"));
        let mut bytes = header(b"PaxHeaders/x", b'x', pax.len() as u64, 0o644, USTAR).to_vec();
        bytes.extend_from_slice(pax.as_bytes());
        bytes.resize(bytes.len().div_ceil(BLOCK) * BLOCK, 0);
        bytes.extend_from_slice(&header(b"decoy", b'0', 0, 0o644, USTAR));
        bytes.extend_from_slice(&inner);
        bytes.extend(file("after", b"x"));
        bytes.extend(end());
        let got = entries(&bytes).unwrap();
        assert_eq!(got.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), ["real/name", "after"]);
        assert_eq!(got[0].2, inner, "the PAX size decides how much data the entry has");
    }

    fn pax_record(k: &str, v: &str) -> String {
        let body = format!(" {k}={v}\n");
        let mut n = body.len() + 1;
        while format!("{n}{body}").len() != n {
            n += 1;
        }
        format!("{n}{body}")
    }

    fn extended(typeflag: u8, data: &[u8]) -> Vec<u8> {
        let mut out = header(b"././@Ext", typeflag, data.len() as u64, 0o644, USTAR).to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        out
    }

    #[test]
    fn global_headers_and_empty_long_names_behave_as_in_go() {
        // A PAX `path` pending when a global header comes is forgotten: Go returns the global
        // header as an entry and starts the next one afresh.
        let mut bytes = extended(b'x', pax_record("path", "etc/shadow").as_bytes());
        bytes.extend(extended(b'g', pax_record("comment", "hello").as_bytes()));
        bytes.extend(file("etc/motd", b"hi"));
        bytes.extend(end());
        let got = entries(&bytes).unwrap();
        assert_eq!(got[0].1, EntryKind::GlobalHeader);
        assert_eq!((got[1].0.as_str(), got[1].1), ("etc/motd", EntryKind::File));
        // An empty GNU long name does not replace the header's name.
        let mut bytes = extended(b'L', b"\0");
        bytes.extend(file("kept", b"x"));
        bytes.extend(end());
        assert_eq!(entries(&bytes).unwrap()[0].0, "kept");
    }

    #[test]
    fn file_capabilities_are_reported() {
        let mut bytes = extended(b'x', pax_record("SCHILY.xattr.security.capability", "\u{1}\0\0\u{2}").as_bytes());
        bytes.extend(file("usr/bin/ping", b"elf"));
        bytes.extend(file("usr/bin/plain", b"elf"));
        bytes.extend(end());
        let mut r = TarReader::new(&bytes[..], bounds());
        assert!(r.next_entry().unwrap().unwrap().capability);
        assert!(!r.next_entry().unwrap().unwrap().capability);
    }

    #[test]
    fn refuses_what_is_ambiguous_or_invalid() {
        let is_err = |bytes: Vec<u8>| entries(&bytes).is_err();
        // Bytes after the end marker.
        let mut after = file("a", b"a");
        after.extend(end());
        after.extend(file("b", b"b"));
        assert!(is_err(after));
        // A single zero block, then a header.
        let mut gap = file("a", b"a");
        gap.extend_from_slice(&[0u8; BLOCK]);
        gap.extend(file("b", b"b"));
        assert!(is_err(gap));
        // A directory that claims data.
        let mut dir = header(b"d/", b'5', 512, 0o755, USTAR).to_vec();
        dir.extend(file("x", b"x"));
        assert!(is_err(dir));
        // A bad checksum.
        let mut broken = file("a", b"a");
        broken[0] = b'b';
        assert!(is_err(broken));
        // Sparse, and types containerd does not extract.
        assert!(is_err(header(b"s", b'S', 0, 0o644, GNU).to_vec()));
        assert!(is_err(header(b"v", b'V', 0, 0o644, GNU).to_vec()));
        // Cut short inside data, and inside a header.
        let mut cut = file("a", &[1u8; 1000]);
        cut.truncate(700);
        assert!(is_err(cut));
        assert!(is_err(file("a", b"a")[..300].to_vec()));
        // Padding after the end marker is fine; so is no marker at all.
        let mut padded = file("a", b"a");
        padded.extend(vec![0u8; 10 * BLOCK]);
        assert_eq!(entries(&padded).unwrap().len(), 1);
        assert_eq!(entries(&file("a", b"a")).unwrap().len(), 1);
    }

    #[test]
    fn budgets_are_enforced() {
        let big = 2 << 20;
        let mut long = header(b"././@LongLink", b'L', big, 0o644, GNU).to_vec();
        long.extend(vec![b'a'; big as usize]);
        let err = entries(&long).unwrap_err();
        assert!(err.limit_key() == Some("max_header_bytes"), "{err:?}");
        let mut name = header(b"././@LongLink", b'L', 5000, 0o644, GNU).to_vec();
        name.extend(vec![b'a'; 5000]);
        name.resize(name.len().div_ceil(BLOCK) * BLOCK, 0);
        name.extend(file("x", b""));
        let err = entries(&name).unwrap_err();
        assert!(err.limit_key() == Some("max_path_bytes"), "{err:?}");
        let many: Vec<u8> = (0..1001).flat_map(|i| file(&format!("f{i}"), b"")).collect();
        let err = entries(&many).unwrap_err();
        assert!(err.limit_key() == Some("max_entries"), "{err:?}");
    }

    #[test]
    fn numbers_parse_as_in_go() {
        assert_eq!(parse_numeric(b"0000644\0").unwrap(), 0o644);
        assert_eq!(parse_numeric(b"  644  \0").unwrap(), 0o644);
        assert_eq!(parse_numeric(b"\0\0\0\0").unwrap(), 0);
        assert!(parse_numeric(b"0000648\0").is_err());
        assert!(parse_numeric(b"+000644\0").is_err());
        let mut b256 = [0u8; 12];
        b256[0] = 0x80;
        b256[11] = 5;
        assert_eq!(parse_numeric(&b256).unwrap(), 5);
        let neg = [0xffu8; 8];
        assert_eq!(parse_numeric(&neg).unwrap(), -1);
    }
}
