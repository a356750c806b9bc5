//! The write path of the local disk backend: a chunk of an upload written at its offset into the
//! upload's one file, whole aligned MiBs with `O_DIRECT` and the rest through the page cache (see
//! [`DiskWriter`]), while the request's task hashes what it hands over.
//!
//! Rule: every byte the hash callback saw is in the file at its offset when [`write_at`] returns
//! `Ok`; on an error nothing is promised about the file (the chunk is not recorded).

use std::io::{Seek, SeekFrom};
use std::path::Path as FsPath;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;

use super::files::{fs_path, holding};
use crate::storage::{ByteStream, StorageError};

/// Bytes gathered before they go to the writer thread as one batch.
const WRITE_BATCH: usize = 1 << 20;

/// Batches queued for the writer thread. With the one being gathered and the one being written, an
/// upload holds about three batches (3 MiB) plus the writer's staging buffer. One is enough: direct
/// writes wait for the device, so the queue is always full, and a second queued batch only added
/// 1 MiB per upload (8 concurrent 1 GiB uploads: peak RSS 84-90 -> 64-67 MiB, same throughput).
const WRITES_IN_FLIGHT: usize = 1;

/// Whether an upload's bulk may bypass the page cache (tests force the buffered path).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direct {
    /// Where the filesystem supports `O_DIRECT`.
    Try,
    Never,
}

/// Writes `body` into the file at `offset` (creating it), handing each of its buffers to `hash`
/// first. Returns its length, and how many of its bytes went to the disk with direct I/O. `hold`
/// is dropped when the writer thread stops, which may be after this future was dropped.
///
/// Two stages that run at once: this task takes the body off the connection and hashes it, while
/// a blocking thread writes the previous batches ([`DiskWriter`]).
pub async fn write_at(
    root: &FsPath,
    path: &Path,
    offset: u64,
    mut body: ByteStream,
    mut hash: impl FnMut(&[u8]) + Send,
    direct: Direct,
    hold: impl Send + 'static,
) -> Result<(u64, u64), StorageError> {
    let file_path = fs_path(root, path);
    // A later chunk continues a file that must hold the earlier ones: one that went missing is not
    // re-created with a hole where they were.
    let existing = match offset {
        0 => None,
        _ => Some(holding(root, path, offset).await?),
    };
    let (batches, mut received) = tokio::sync::mpsc::channel::<Batch>(WRITES_IN_FLIGHT);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
        // `hold` (the upload's lock) lives as long as this thread writes: a request that is
        // dropped mid-chunk releases the upload only once its writes have stopped.
        let _hold = hold;
        let file = match existing {
            Some(file) => file,
            None => {
                // On the writer's thread: the first chunk costs no extra hop to the blocking pool.
                if let Some(dir) = file_path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(&file_path)?
            }
        };
        let mut disk = DiskWriter::new(file, &file_path, offset, direct);
        while let Some(batch) = received.blocking_recv() {
            match batch {
                Batch::Bytes(bytes) => disk.write(bytes)?,
                Batch::Done => return disk.finish(),
            }
        }
        // The request went away mid-chunk: what is staged is not written, and the chunk is not
        // recorded, so its bytes are rewritten or cut off later.
        Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "the chunk's request went away"))
    });
    let fed = async {
        let mut size = 0u64;
        let mut batch = Vec::new();
        let mut gathered = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StorageError::Body)?;
            hash(&chunk);
            size += chunk.len() as u64;
            gathered += chunk.len();
            batch.push(chunk);
            if gathered >= WRITE_BATCH {
                gathered = 0;
                if batches.send(Batch::Bytes(std::mem::take(&mut batch))).await.is_err() {
                    break; // The writer failed; its error is reported below.
                }
            }
        }
        if !batch.is_empty() {
            let _ = batches.send(Batch::Bytes(batch)).await;
        }
        Ok::<_, StorageError>(size)
    }
    .await;
    if fed.is_ok() {
        let _ = batches.send(Batch::Done).await;
    }
    drop(batches);
    // The writer's error first: a failed disk explains a stalled body, not the other way round.
    match (writer.await.map_err(std::io::Error::other)?, fed) {
        (Ok(direct_bytes), Ok(size)) => Ok((size, direct_bytes)),
        (Err(e), _) if e.kind() != std::io::ErrorKind::Interrupted => Err(e.into()),
        (_, Err(e)) => Err(e),
        (Err(e), Ok(_)) => Err(e.into()),
    }
}

/// What the request's task hands the writer thread.
enum Batch {
    Bytes(Vec<Bytes>),
    /// The chunk is complete: write what is staged and stop.
    Done,
}

/// File offsets, lengths and buffer addresses of direct I/O must be multiples of the device's
/// block size; 4 KiB covers both 512-byte and 4 KiB devices.
const DIRECT_ALIGN: usize = 4096;

/// The writer thread's side of an upload: puts batches into the file, in order, from `offset` on.
///
/// Its bulk goes straight to the disk (`O_DIRECT`) in 1 MiB writes from an aligned staging buffer.
/// Filling new page-cache pages was most of an upload's CPU (57% of a 1 GiB upload's samples, in
/// `copy_folio_from_iter_atomic`; on this VM every new page is a fault in the host too), and it
/// held buffered uploads to the speed of `dd` into a new file, where direct writes reach the
/// device's own speed. A blob is written once and read later, if ever, so it gains nothing from
/// staying in the cache on the way in. What is not a whole aligned 1 MiB (the bytes up to the
/// first 4 KiB boundary of a chunk that starts unaligned, and the last stretch of every chunk) goes
/// through the page cache, so small blobs never wait for a synchronous device write and direct and
/// buffered writes never share a page. A last batch that finds nothing staged (all of a blob under
/// a MiB) goes to the page cache as it came, without a copy, and the direct descriptor is opened
/// only when a first whole MiB is staged. A filesystem without `O_DIRECT` (tmpfs, some overlays), or
/// one that refuses a direct write, gets buffered writes from then on, with early writeback.
/// Durability is unchanged: commit fsyncs the file either way.
struct DiskWriter {
    file: std::fs::File,
    direct: DirectFd,
    /// The file offset of the first staged byte; everything before it is written.
    at: u64,
    staging: Staging,
    writeback: Writeback,
    direct_bytes: u64,
}

impl DiskWriter {
    fn new(file: std::fs::File, path: &FsPath, offset: u64, direct: Direct) -> Self {
        let direct = match direct {
            Direct::Try => DirectFd::Unopened(path.to_path_buf()),
            Direct::Never => DirectFd::Off,
        };
        DiskWriter {
            file,
            direct,
            at: offset,
            staging: Staging::default(),
            writeback: Writeback::new(offset),
            direct_bytes: 0,
        }
    }

    /// Each of the body's buffers is let go as soon as it is staged: with writes that wait for the
    /// device, holding the whole batch until it is written would add a batch per upload in memory.
    fn write(&mut self, batch: Vec<Bytes>) -> std::io::Result<()> {
        // Every batch but the last is at least WRITE_BATCH long: a shorter one with nothing staged
        // before it would only be staged to be written through the page cache at the end.
        let last_alone = self.staging.is_empty() && batch.iter().map(Bytes::len).sum::<usize>() < WRITE_BATCH;
        if matches!(self.direct, DirectFd::Off) || last_alone {
            self.buffered_vectored(&batch)?;
            self.writeback.wrote(&self.file, self.at);
            return Ok(());
        }
        for chunk in batch {
            let mut data = &chunk[..];
            let misaligned = (self.at % DIRECT_ALIGN as u64) as usize;
            if self.staging.is_empty() && misaligned != 0 {
                // Up to the first aligned offset through the page cache.
                let lead = (DIRECT_ALIGN - misaligned).min(data.len());
                self.buffered(&data[..lead])?;
                data = &data[lead..];
            }
            while !data.is_empty() {
                data = &data[self.staging.fill(data)..];
                if self.staging.is_full() {
                    self.flush_direct()?;
                }
            }
        }
        Ok(())
    }

    /// Writes what is staged, then returns how many bytes went to the disk directly.
    fn finish(mut self) -> std::io::Result<u64> {
        let rest = std::mem::take(&mut self.staging);
        self.buffered(rest.bytes())?;
        Ok(self.direct_bytes)
    }

    fn flush_direct(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let staged = std::mem::take(&mut self.staging);
        if let DirectFd::Unopened(path) = &self.direct {
            self.direct = open_direct(path).map_or(DirectFd::Off, DirectFd::Open);
        }
        let written = match &self.direct {
            DirectFd::Open(direct) => direct.write_all_at(staged.bytes(), self.at),
            _ => Err(std::io::ErrorKind::Unsupported.into()),
        };
        match written {
            Ok(()) => {
                self.at += staged.bytes().len() as u64;
                self.direct_bytes += staged.bytes().len() as u64;
                self.writeback = Writeback::new(self.at);
                self.staging = staged.emptied();
                Ok(())
            }
            // The filesystem took the file but not the write (alignment it wants larger, a mode
            // that cannot do it): this write and every later one go through the page cache.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) || e.kind() == std::io::ErrorKind::Unsupported => {
                self.direct = DirectFd::Off;
                self.writeback = Writeback::new(self.at);
                self.buffered(staged.bytes())
            }
            Err(e) => Err(e),
        }
    }

    fn buffered(&mut self, data: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(data, self.at)?;
        self.at += data.len() as u64;
        Ok(())
    }

    /// The body's own buffers in as few `writev` calls as the kernel allows, without a copy.
    fn buffered_vectored(&mut self, batch: &[Bytes]) -> std::io::Result<()> {
        use std::io::{IoSlice, Write};
        self.file.seek(SeekFrom::Start(self.at))?;
        let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match self.file.write_vectored(rest) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.at += n as u64;
                    IoSlice::advance_slices(&mut rest, n)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The upload file's second descriptor, the one that bypasses the page cache.
enum DirectFd {
    /// Not needed yet.
    Unopened(std::path::PathBuf),
    Open(std::fs::File),
    /// Not wanted, or the filesystem has none.
    Off,
}

/// A second descriptor of the upload's file that bypasses the page cache, where there is one.
fn open_direct(path: &FsPath) -> Option<std::fs::File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// One batch's worth of bytes at an aligned address, allocated on first use.
#[derive(Default)]
struct Staging {
    buf: Vec<u8>,
    /// Index of the first aligned byte of `buf`.
    start: usize,
    len: usize,
}

impl Staging {
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn is_full(&self) -> bool {
        !self.buf.is_empty() && self.len == WRITE_BATCH
    }

    /// Copies as much of `data` as fits; returns how much that was.
    fn fill(&mut self, data: &[u8]) -> usize {
        if self.buf.is_empty() {
            self.buf = vec![0; WRITE_BATCH + DIRECT_ALIGN];
            self.start = self.buf.as_ptr().align_offset(DIRECT_ALIGN);
        }
        let n = data.len().min(WRITE_BATCH - self.len);
        let at = self.start + self.len;
        self.buf[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    /// The same buffer, holding nothing.
    fn emptied(mut self) -> Self {
        self.len = 0;
        self
    }
}

/// Starts the disk writes of a growing file while it is still being written, so that the fsync
/// at commit waits only for the last stretch instead of flushing the whole blob at once (that
/// flush was a quarter of a 1 GiB buffered upload's time). A hint to the kernel, never relied on
/// for durability: commit still fsyncs.
struct Writeback {
    /// Where the stretch not yet handed to the disk starts.
    from: u64,
}

/// How much written data gathers before its writeback is started.
const WRITEBACK_STRETCH: u64 = 8 << 20;

impl Writeback {
    fn new(offset: u64) -> Self {
        Writeback { from: offset }
    }

    /// The file is written up to `to`.
    fn wrote(&mut self, file: &std::fs::File, to: u64) {
        if to < self.from + WRITEBACK_STRETCH {
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
                    (to - self.from) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        self.from = to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::digest::{Algorithm, DigestHasher};

    fn body(chunks: Vec<std::io::Result<Bytes>>) -> ByteStream {
        futures::stream::iter(chunks).boxed()
    }

    fn pattern(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32).map(|i| (i.wrapping_mul(31).wrapping_add(seed) % 251) as u8).collect()
    }

    fn chunked(data: &[u8], size: usize) -> ByteStream {
        body(data.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect())
    }

    /// Whole batches that start aligned go to the disk directly; a chunk that starts unaligned
    /// buffers up to the next 4 KiB boundary; every chunk's last partial batch is buffered. Either
    /// way, and with direct writes off, the file holds exactly the bytes that were hashed.
    #[tokio::test]
    async fn writes_chunks_in_order_at_their_offsets_directly_or_not() {
        for direct in [Direct::Try, Direct::Never] {
            let dir = tempfile::tempdir().unwrap();
            let path = Path::from("uploads/x.data");
            let first = pattern(WRITE_BATCH * 3 + 17, 1);
            let second = pattern(WRITE_BATCH * 2 + 5, 2);
            let mut hasher = DigestHasher::new(Algorithm::Sha256);
            let (n, first_direct) =
                write_at(dir.path(), &path, 0, chunked(&first, 70_001), |b: &[u8]| hasher.update(b), direct, ())
                    .await
                    .unwrap();
            assert_eq!(n, first.len() as u64);
            let at = first.len() as u64;
            let (n, second_direct) =
                write_at(dir.path(), &path, at, chunked(&second, 65_536), |b: &[u8]| hasher.update(b), direct, ())
                    .await
                    .unwrap();
            assert_eq!(n, second.len() as u64);
            let end = (first.len() + second.len()) as u64;
            let mut tail = hasher.clone();
            let (_, tail_direct) = write_at(
                dir.path(),
                &path,
                end,
                body(vec![Ok(Bytes::from_static(b"end"))]),
                |b: &[u8]| tail.update(b),
                direct,
                (),
            )
            .await
            .unwrap();
            assert_eq!(tail_direct, 0, "a chunk under a MiB is written as it came");
            let mut want = [first, second].concat();
            assert_eq!(hasher.finish(), crate::model::Digest::of(Algorithm::Sha256, &want));
            want.extend_from_slice(b"end");
            assert!(std::fs::read(dir.path().join("uploads/x.data")).unwrap() == want, "{direct:?}: bytes differ");
            assert_eq!(tail.finish(), crate::model::Digest::of(Algorithm::Sha256, &want));

            let supported = open_direct(&dir.path().join("uploads/x.data")).is_some();
            match direct {
                Direct::Try if supported => {
                    assert_eq!(first_direct, 3 * WRITE_BATCH as u64);
                    // 4096 - 17 buffered up to the boundary, one whole batch direct, the rest buffered.
                    assert_eq!(second_direct, WRITE_BATCH as u64);
                }
                _ => assert_eq!((first_direct, second_direct), (0, 0), "{direct:?}"),
            }
        }
    }

    /// Rewriting a stretch (a chunk refused, then sent again) replaces its bytes in the file,
    /// whichever path wrote them first.
    #[tokio::test]
    async fn a_rewritten_stretch_holds_the_new_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = Path::from("uploads/r.data");
        let mut hasher = DigestHasher::new(Algorithm::Sha256);
        let old = pattern(WRITE_BATCH * 2, 3);
        write_at(dir.path(), &path, 0, chunked(&old, 100_000), |b: &[u8]| hasher.update(b), Direct::Try, ())
            .await
            .unwrap();
        let new = pattern(WRITE_BATCH + 4096 * 3 + 1, 4);
        write_at(dir.path(), &path, 4096, chunked(&new, 33_333), |b: &[u8]| hasher.update(b), Direct::Try, ())
            .await
            .unwrap();
        let file = std::fs::read(dir.path().join("uploads/r.data")).unwrap();
        assert!(file[..4096] == old[..4096]);
        assert!(file[4096..4096 + new.len()] == new[..]);
        assert!(file[4096 + new.len()..] == old[4096 + new.len()..]);
    }

    #[tokio::test]
    async fn a_failing_body_or_disk_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let mut hasher = DigestHasher::new(Algorithm::Sha256);
        let broken = body(vec![Ok(Bytes::from_static(b"abc")), Err(std::io::Error::other("client went away"))]);
        let err = write_at(
            dir.path(),
            &Path::from("uploads/y.data"),
            0,
            broken,
            |b: &[u8]| hasher.update(b),
            Direct::Try,
            (),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StorageError::Body(_)), "{err:?}");
        // A directory where the file should be: the writer thread fails, and that error comes back
        // even though the body keeps flowing.
        std::fs::create_dir_all(dir.path().join("uploads/z.data")).unwrap();
        let endless = futures::stream::repeat_with(|| Ok(Bytes::from(vec![0u8; 64 * 1024]))).take(400).boxed();
        let err = write_at(
            dir.path(),
            &Path::from("uploads/z.data"),
            0,
            endless,
            |b: &[u8]| hasher.update(b),
            Direct::Try,
            (),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StorageError::Io(_)), "{err:?}");
    }
}
