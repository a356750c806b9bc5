//! Local-disk specifics that `object_store` leaves out: fsync of committed blobs, large reads, and
//! removal of staging files a crash left in an upload's directory.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path as FsPath;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;

use super::{ByteStream, StorageError};
use crate::domain::digest::{Algorithm, DigestHasher};

fn fs_path(root: &FsPath, path: &Path) -> std::path::PathBuf {
    path.parts().fold(root.to_path_buf(), |p, part| p.join(part.as_ref()))
}

/// Makes a committed object durable: its bytes, then its directory entry.
pub async fn sync_object(root: &FsPath, path: &Path) -> std::io::Result<()> {
    let file = fs_path(root, path);
    tokio::task::spawn_blocking(move || {
        std::fs::File::open(&file)?.sync_all()?;
        if let Some(dir) = file.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Removes an upload directory with whatever staging files are in it.
pub async fn remove_dir(root: &FsPath, path: &Path) -> std::io::Result<()> {
    let dir = fs_path(root, path);
    match tokio::fs::remove_dir_all(&dir).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes one file; a missing one is not an error.
pub async fn remove_file(root: &FsPath, path: &Path) -> std::io::Result<()> {
    match tokio::fs::remove_file(fs_path(root, path)).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Streams `range` of a file in `chunk`-sized reads on the blocking pool.
pub fn stream_file(file: std::fs::File, range: Range<u64>, chunk: usize) -> ByteStream {
    let state = (file, range.start, range.end, true);
    futures::stream::try_unfold(state, move |(mut file, pos, end, first)| async move {
        if pos >= end {
            return Ok(None);
        }
        let want = chunk.min((end - pos) as usize);
        let (file, bytes) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            if first {
                file.seek(SeekFrom::Start(pos))?;
            }
            // Read into spare capacity: no zeroing of a buffer the read overwrites anyway (that
            // memset, and the page faults it caused, were a fifth of a pull's CPU).
            let mut buf = Vec::with_capacity(want);
            (&mut file).take(want as u64).read_to_end(&mut buf)?;
            if buf.len() < want {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "blob shorter than recorded"));
            }
            Ok((file, Bytes::from(buf)))
        })
        .await
        .map_err(std::io::Error::other)??;
        let next = pos + bytes.len() as u64;
        Ok(Some((bytes, (file, next, end, false))))
    })
    .boxed()
}

/// Writes `body` into the file at `offset` (creating it), feeding its bytes to `hasher`. Returns
/// its length. Writes go through a 1 MiB buffer so the blocking pool sees few, large writes.
pub async fn write_at(
    root: &FsPath,
    path: &Path,
    offset: u64,
    mut body: ByteStream,
    hasher: &mut DigestHasher,
) -> Result<u64, StorageError> {
    use tokio::io::{AsyncSeekExt, AsyncWriteExt};
    let file_path = fs_path(root, path);
    if let Some(dir) = file_path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let mut file = tokio::fs::OpenOptions::new().create(true).write(true).truncate(false).open(&file_path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(StorageError::Body)?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        out.write_all(&chunk).await?;
    }
    out.flush().await?;
    Ok(size)
}

/// A SHA-256 hasher fed with the first `len` bytes of the file (to resume a running digest).
pub async fn hash_prefix(root: &FsPath, path: &Path, len: u64) -> Result<DigestHasher, StorageError> {
    let file = std::fs::File::open(fs_path(root, path))?;
    let mut stream = stream_file(file, 0..len, 1 << 20);
    let mut hasher = DigestHasher::new(Algorithm::Sha256);
    while let Some(chunk) = stream.next().await {
        hasher.update(&chunk?);
    }
    Ok(hasher)
}

/// Sets the file's length to `len` (dropping bytes of refused chunks; creating an empty file).
pub async fn ensure_len(root: &FsPath, path: &Path, len: u64) -> std::io::Result<()> {
    let file_path = fs_path(root, path);
    if let Some(dir) = file_path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let file = tokio::fs::OpenOptions::new().create(true).write(true).truncate(false).open(&file_path).await?;
    file.set_len(len).await
}
