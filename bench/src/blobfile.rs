//! The large random blob the throughput measurements send. One file on disk is reused; each
//! upload replaces its first 16 bytes with a fresh prefix, so every upload is a new blob.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use rand::{RngCore, SeedableRng};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

pub const PREFIX: usize = 16;

pub struct BlobFile {
    pub path: PathBuf,
    pub len: u64,
}

impl BlobFile {
    /// Creates (or reuses) `len` bytes of random data at `path`.
    pub fn ensure(path: &Path, len: u64) -> std::io::Result<BlobFile> {
        if std::fs::metadata(path).map(|m| m.len() == len).unwrap_or(false) {
            return Ok(BlobFile { path: path.to_path_buf(), len });
        }
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut rng = rand::rngs::SmallRng::from_entropy();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            rng.fill_bytes(&mut buf[..n]);
            std::io::Write::write_all(&mut file, &buf[..n])?;
            left -= n as u64;
        }
        std::io::Write::flush(&mut file)?;
        Ok(BlobFile { path: path.to_path_buf(), len })
    }

    /// The digest of the blob with `prefix` in front (hashed before timing starts).
    pub async fn digest(&self, prefix: [u8; PREFIX]) -> std::io::Result<String> {
        let mut hasher = Sha256::new();
        hasher.update(prefix);
        let mut stream = self.stream(PREFIX as u64, self.len).await?;
        while let Some(chunk) = stream.next().await {
            hasher.update(&chunk?);
        }
        Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    /// The bytes `from..to` of the file.
    pub async fn stream(
        &self,
        from: u64,
        to: u64,
    ) -> std::io::Result<impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static> {
        let mut file = tokio::fs::File::open(&self.path).await?;
        file.seek(std::io::SeekFrom::Start(from)).await?;
        Ok(tokio_util::io::ReaderStream::with_capacity(file.take(to - from), 1 << 20))
    }

    /// The whole blob with `prefix` in front.
    pub async fn body(&self, prefix: [u8; PREFIX]) -> std::io::Result<reqwest::Body> {
        let head = futures::stream::once(async move { Ok(bytes::Bytes::copy_from_slice(&prefix)) });
        Ok(reqwest::Body::wrap_stream(head.chain(self.stream(PREFIX as u64, self.len).await?)))
    }
}

/// A prefix no other upload of this run uses.
pub fn fresh_prefix() -> [u8; PREFIX] {
    let mut p = [0u8; PREFIX];
    rand::thread_rng().fill_bytes(&mut p);
    p
}
