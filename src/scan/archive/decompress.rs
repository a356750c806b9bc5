//! Decompression as clients do it: the format is told by the stream's magic bytes, not by the
//! media type the pusher declared (containerd, podman and docker all sniff), and the whole stream
//! is decoded: every gzip member, every zstd frame, skippable zstd frames skipped.
//!
//! Rules:
//! - What a client would decode, the scanner decodes; what a client would refuse (trailing bytes
//!   after the last gzip member, a bad zstd checksum), the scanner refuses: it fails closed.
//! - Formats clients may accept but the scanner does not read (xz, bzip2, encrypted layers) are
//!   refused by name for image layers; an artifact's blob in such a format is searched as it is.
//! - Every decompressed byte counts against one budget shared by all blobs of a scan.

use std::io::{BufRead, BufReader, Read};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

use crate::scan::limits::{to_io, Allowance, ScanError};

/// How a blob's bytes are compressed, as its first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    /// Formats some clients decode but the scanner does not (xz, bzip2).
    Unsupported(&'static str),
}

/// How many leading bytes [`Compression::sniff`] needs to decide.
pub const MAGIC_LEN: usize = 8;

impl Compression {
    /// A zstd skippable frame (magic 0x184D2A50 to 0x184D2A5F, then a length): containerd and
    /// docker take a stream that starts with one for zstd, so the scanner must too.
    fn skippable_frame(magic: &[u8]) -> bool {
        magic.len() >= 8 && u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]) & 0xFFFF_FFF0 == 0x184D_2A50
    }

    /// Whether the bytes are compressed in a format a client would decode.
    pub fn is_compressed(self) -> bool {
        self != Compression::None
    }

    /// The format the first [`MAGIC_LEN`] bytes name (fewer only at the end of the stream).
    pub fn sniff(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) || Self::skippable_frame(magic) {
            Compression::Zstd
        } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Unsupported("xz")
        } else if magic.starts_with(b"BZh") {
            Compression::Unsupported("bzip2")
        } else {
            Compression::None
        }
    }
}

/// A reader that charges every byte it yields to an [`Allowance`].
struct Metered<R> {
    inner: R,
    budget: Allowance,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.budget.spend(n as u64).map_err(to_io)?;
        Ok(n)
    }
}

/// Every frame of a zstd stream, in order; skippable frames are skipped, and the content
/// checksum of each frame that has one is verified.
pub struct ZstdFrames<R: BufRead> {
    source: R,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdFrames<R> {
    pub fn new(source: R) -> Self {
        ZstdFrames { source, decoder: FrameDecoder::new(), in_frame: false }
    }

    /// Starts the next frame; false at the end of the stream.
    fn next_frame(&mut self) -> std::io::Result<bool> {
        loop {
            if self.source.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.decoder.reset(&mut self.source) {
                Ok(()) => return Ok(true),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame { length, .. })) => {
                    let skipped = std::io::copy(&mut (&mut self.source).take(u64::from(length)), &mut std::io::sink())?;
                    if skipped != u64::from(length) {
                        return Err(zstd_error("a skippable frame is cut short"));
                    }
                }
                Err(e) => return Err(zstd_error(&format!("invalid frame: {e}"))),
            }
        }
    }
}

fn zstd_error(message: &str) -> std::io::Error {
    to_io(ScanError::unreadable(format!("zstd: {message}")))
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if !self.next_frame()? {
                    return Ok(0);
                }
                self.in_frame = true;
            }
            while self.decoder.can_collect() < buf.len() && !self.decoder.is_finished() {
                let wanted = buf.len() - self.decoder.can_collect();
                self.decoder
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(wanted))
                    .map_err(|e| zstd_error(&e.to_string()))?;
            }
            let n = self.decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.decoder.is_finished() {
                if let (Some(stored), Some(computed)) =
                    (self.decoder.get_checksum_from_data(), self.decoder.get_calculated_checksum())
                {
                    if stored != computed {
                        return Err(zstd_error("a frame's content checksum does not match"));
                    }
                }
                self.in_frame = false;
            }
        }
    }
}

/// The decompressed bytes of a blob, as a client would unpack them.
pub struct Decompressed<'a> {
    pub compression: Compression,
    /// The stream starts with a zstd skippable frame: docker and containerd take it for zstd,
    /// containers/image (podman) does not, so the two read different bytes.
    pub skippable_start: bool,
    pub reader: Box<dyn Read + 'a>,
}

/// Opens `reader` by its magic bytes; the decompressed bytes count against `budget`.
/// `Compression::Unsupported` comes back undecoded, for the caller to refuse or search as is.
pub fn open<'a>(reader: impl Read + 'a, budget: &Allowance) -> Result<Decompressed<'a>, ScanError> {
    // The magic is read in full before sniffing: a pipe may hand over fewer bytes per read.
    let mut reader = reader;
    let mut magic = [0u8; MAGIC_LEN];
    let mut have = 0;
    while have < MAGIC_LEN {
        match reader.read(&mut magic[have..]) {
            Ok(0) => break,
            Ok(n) => have += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(crate::scan::limits::from_io(e)),
        }
    }
    let compression = Compression::sniff(&magic[..have]);
    let skippable_start = Compression::skippable_frame(&magic[..have]);
    let head: Box<dyn Read + 'a> = Box::new(std::io::Cursor::new(magic[..have].to_vec()).chain(reader));
    let buffered = BufReader::with_capacity(256 * 1024, head);
    let inner: Box<dyn Read + 'a> = match compression {
        // A multi-member decoder: a second gzip member is decoded, and bytes after the last
        // member that are not another member are an error (as Go's gzip reader has it).
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(ZstdFrames::new(buffered)),
        Compression::None | Compression::Unsupported(_) => Box::new(buffered),
    };
    Ok(Decompressed { compression, skippable_start, reader: Box::new(Metered { inner, budget: budget.clone() }) })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zstd(bytes: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn read_all(bytes: &[u8], limit: u64) -> Result<Vec<u8>, ScanError> {
        let budget = Allowance::decompressed(limit);
        let mut out = Vec::new();
        open(bytes, &budget)?.reader.read_to_end(&mut out).map_err(crate::scan::limits::from_io)?;
        Ok(out)
    }

    #[test]
    fn every_zstd_frame_and_gzip_member_is_read() {
        let mut two = zstd(b"first frame, ");
        // A skippable frame between the two: magic 0x184D2A5?, length, payload.
        two.extend_from_slice(&0x184D2A53u32.to_le_bytes());
        two.extend_from_slice(&5u32.to_le_bytes());
        two.extend_from_slice(b"junk!");
        two.extend(zstd(b"second frame"));
        assert_eq!(read_all(&two, 1 << 20).unwrap(), b"first frame, second frame");
        let mut members = gzip(b"one ");
        members.extend(gzip(b"two"));
        assert_eq!(read_all(&members, 1 << 20).unwrap(), b"one two");
        assert_eq!(read_all(b"plain bytes", 1 << 20).unwrap(), b"plain bytes");
    }

    #[test]
    fn what_a_client_refuses_is_refused() {
        let mut trailing = gzip(b"data");
        trailing.extend_from_slice(b"not another member");
        assert!(read_all(&trailing, 1 << 20).is_err());
        let mut cut = zstd(&[7u8; 10_000]);
        cut.truncate(cut.len() / 2);
        assert!(read_all(&cut, 1 << 20).is_err());
        let mut skippable_cut = zstd(b"x");
        skippable_cut.extend_from_slice(&0x184D2A50u32.to_le_bytes());
        skippable_cut.extend_from_slice(&100u32.to_le_bytes());
        skippable_cut.extend_from_slice(b"short");
        assert!(read_all(&skippable_cut, 1 << 20).is_err());
        let mut garbage_frame = zstd(b"x");
        garbage_frame.extend_from_slice(b"\x00\x01\x02\x03 not a frame");
        assert!(read_all(&garbage_frame, 1 << 20).is_err());
    }

    #[test]
    fn the_budget_stops_a_bomb() {
        let bomb = zstd(&vec![0u8; 4 << 20]);
        assert!(bomb.len() < 64 << 10, "a good bomb: {} bytes", bomb.len());
        let err = read_all(&bomb, 1 << 20).unwrap_err();
        assert!(err.limit_key() == Some("max_decompressed_bytes"), "{err:?}");
        assert!(err.to_string().contains("scan.limits.max_decompressed_bytes"), "{err}");
    }

    #[test]
    fn other_formats_are_named() {
        assert_eq!(Compression::sniff(b"\xfd7zXZ\x00rest"), Compression::Unsupported("xz"));
        assert_eq!(Compression::sniff(b"BZh91AY"), Compression::Unsupported("bzip2"));
        assert_eq!(Compression::sniff(b"ustar"), Compression::None);
    }

    #[test]
    fn a_stream_that_starts_with_a_skippable_frame_is_zstd() {
        let mut stream = 0x184D2A5Fu32.to_le_bytes().to_vec();
        stream.extend_from_slice(&3u32.to_le_bytes());
        stream.extend_from_slice(b"abc");
        stream.extend(zstd(b"the layer"));
        assert_eq!(Compression::sniff(&stream), Compression::Zstd);
        assert_eq!(read_all(&stream, 1 << 20).unwrap(), b"the layer");
        // Read one byte at a time, as a slow pipe might deliver it: the same answer.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(buf.len()).min(1);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let budget = Allowance::decompressed(1 << 20);
        let opened = open(Trickle(&stream), &budget).unwrap();
        assert_eq!(opened.compression, Compression::Zstd);
        let mut out = Vec::new();
        opened.reader.take(1 << 20).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"the layer");
        // Fewer than eight bytes are never a skippable frame.
        assert_eq!(Compression::sniff(&0x184D2A50u32.to_le_bytes()), Compression::None);
    }
}
