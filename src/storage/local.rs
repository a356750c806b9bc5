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

/// Bytes gathered before they go to the writer thread as one vectored write.
const WRITE_BATCH: usize = 1 << 20;

/// Batches in flight to the writer thread: with the one being gathered, an upload holds at most
/// three batches (3 MiB) in memory.
const WRITES_IN_FLIGHT: usize = 2;

/// Writes `body` into the file at `offset` (creating it), feeding its bytes to `hasher`. Returns
/// its length.
///
/// Two stages that run at once: this task takes the body off the connection and hashes it, while
/// a blocking thread writes the previous batches (the body's own buffers, handed over without a
/// copy, one vectored write per batch). Filling new page-cache pages is most of an upload's cost
/// on local disk, and it no longer waits for the hashing, nor the hashing for it.
pub async fn write_at(
    root: &FsPath,
    path: &Path,
    offset: u64,
    mut body: ByteStream,
    hasher: &mut DigestHasher,
) -> Result<u64, StorageError> {
    let file_path = fs_path(root, path);
    // A later chunk continues a file that must hold the earlier ones: one that went missing is not
    // re-created with a hole where they were.
    let existing = match offset {
        0 => None,
        _ => Some(holding(root, path, offset).await?),
    };
    let (batches, mut received) = tokio::sync::mpsc::channel::<Vec<Bytes>>(WRITES_IN_FLIGHT);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut file = match existing {
            Some(file) => file,
            None => {
                // On the writer's thread: the first chunk costs no extra hop to the blocking pool.
                if let Some(dir) = file_path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(&file_path)?
            }
        };
        file.seek(SeekFrom::Start(offset))?;
        let mut flushing = Writeback::new(offset);
        while let Some(batch) = received.blocking_recv() {
            write_all_vectored(&mut file, &batch)?;
            flushing.wrote(&file, batch.iter().map(|b| b.len() as u64).sum());
        }
        Ok(())
    });
    let fed = async {
        let mut size = 0u64;
        let mut batch = Vec::new();
        let mut gathered = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StorageError::Body)?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            gathered += chunk.len();
            batch.push(chunk);
            if gathered >= WRITE_BATCH {
                gathered = 0;
                if batches.send(std::mem::take(&mut batch)).await.is_err() {
                    break; // The writer failed; its error is reported below.
                }
            }
        }
        if !batch.is_empty() {
            let _ = batches.send(batch).await;
        }
        Ok::<_, StorageError>(size)
    }
    .await;
    drop(batches);
    // The writer's error first: a failed disk explains a stalled body, not the other way round.
    writer.await.map_err(std::io::Error::other)??;
    fed
}

/// Starts the disk writes of a growing file while it is still being written, so that the fsync
/// at commit waits only for the last stretch instead of flushing the whole blob at once (that
/// flush was a quarter of a 1 GiB upload's time). A hint to the kernel, never relied on for
/// durability: commit still fsyncs.
struct Writeback {
    /// Where the stretch not yet handed to the disk starts.
    from: u64,
    /// How far the file has been written.
    to: u64,
}

/// How much written data gathers before its writeback is started.
const WRITEBACK_STRETCH: u64 = 8 << 20;

impl Writeback {
    fn new(offset: u64) -> Self {
        Writeback { from: offset, to: offset }
    }

    fn wrote(&mut self, file: &std::fs::File, len: u64) {
        self.to += len;
        if self.to - self.from < WRITEBACK_STRETCH {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain syscall on a file descriptor we own; it reads no memory of ours.
            // SYNC_FILE_RANGE_WRITE only queues the range's dirty pages for writing and does not
            // wait for them; an error (a filesystem without support) changes nothing for us.
            unsafe {
                libc::sync_file_range(
                    file.as_raw_fd(),
                    self.from as libc::off64_t,
                    (self.to - self.from) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        self.from = self.to;
    }
}

/// Writes every buffer of `batch` in order, with as few `writev` calls as the kernel allows.
fn write_all_vectored(file: &mut std::fs::File, batch: &[Bytes]) -> std::io::Result<()> {
    use std::io::{IoSlice, Write};
    let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A SHA-256 hasher fed with the first `len` bytes of the file (to resume a running digest).
pub async fn hash_prefix(root: &FsPath, path: &Path, len: u64) -> Result<DigestHasher, StorageError> {
    let file = holding(root, path, len).await?;
    let mut stream = stream_file(file, 0..len, 1 << 20);
    let mut hasher = DigestHasher::new(Algorithm::Sha256);
    while let Some(chunk) = stream.next().await {
        hasher.update(&chunk?);
    }
    Ok(hasher)
}

/// Cuts the upload's file to `len` bytes, dropping the tail of refused chunks. A file that is
/// missing or shorter is [`StorageError::UploadLost`], never padded: the digest recorded for its
/// chunks describes bytes that must be there. No chunk at all (an empty blob) may have no file.
pub async fn cut_to(root: &FsPath, path: &Path, len: u64) -> Result<(), StorageError> {
    if len == 0 {
        let file_path = fs_path(root, path);
        if let Some(dir) = file_path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::OpenOptions::new().create(true).write(true).truncate(true).open(&file_path).await?;
        return Ok(());
    }
    let file = holding(root, path, len).await?;
    Ok(tokio::fs::File::from_std(file).set_len(len).await?)
}

/// Opens the upload's file for writing if it holds at least `len` bytes.
async fn holding(root: &FsPath, path: &Path, len: u64) -> Result<std::fs::File, StorageError> {
    let file_path = fs_path(root, path);
    let opened = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&file_path)?;
        let size = file.metadata()?.len();
        Ok((file, size))
    })
    .await
    .map_err(std::io::Error::other)?;
    match opened {
        Ok((file, size)) if size >= len => Ok(file),
        Ok(_) => Err(StorageError::UploadLost),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::UploadLost),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(chunks: Vec<std::io::Result<Bytes>>) -> ByteStream {
        futures::stream::iter(chunks).boxed()
    }

    #[tokio::test]
    async fn writes_batches_in_order_at_the_offset_and_hashes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = Path::from("uploads/x.data");
        let big: Vec<u8> = (0..(WRITE_BATCH * 3 + 17) as u32).map(|i| (i % 251) as u8).collect();
        let chunks: Vec<_> = big.chunks(70_001).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let mut hasher = DigestHasher::new(Algorithm::Sha256);
        assert_eq!(write_at(dir.path(), &path, 0, body(chunks), &mut hasher).await.unwrap(), big.len() as u64);
        let mut tail = DigestHasher::new(Algorithm::Sha256);
        write_at(dir.path(), &path, big.len() as u64, body(vec![Ok(Bytes::from_static(b"end"))]), &mut tail)
            .await
            .unwrap();
        let mut want = big.clone();
        want.extend_from_slice(b"end");
        assert_eq!(std::fs::read(dir.path().join("uploads/x.data")).unwrap(), want);
        assert_eq!(hasher.finish(), crate::domain::Digest::of(Algorithm::Sha256, &big));
    }

    #[tokio::test]
    async fn a_failing_body_or_disk_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let mut hasher = DigestHasher::new(Algorithm::Sha256);
        let broken = body(vec![Ok(Bytes::from_static(b"abc")), Err(std::io::Error::other("client went away"))]);
        let err = write_at(dir.path(), &Path::from("uploads/y.data"), 0, broken, &mut hasher).await.unwrap_err();
        assert!(matches!(err, StorageError::Body(_)), "{err:?}");
        // A directory where the file should be: the writer thread fails, and that error comes back
        // even though the body keeps flowing.
        std::fs::create_dir_all(dir.path().join("uploads/z.data")).unwrap();
        let endless = futures::stream::repeat_with(|| Ok(Bytes::from(vec![0u8; 64 * 1024]))).take(400).boxed();
        let err = write_at(dir.path(), &Path::from("uploads/z.data"), 0, endless, &mut hasher).await.unwrap_err();
        assert!(matches!(err, StorageError::Io(_)), "{err:?}");
    }
}
