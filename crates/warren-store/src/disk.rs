//! The file-system seam.
//!
//! Everything the store does to files goes through [`Disk`] and
//! [`DiskFile`], so that the same code runs on the real file system
//! ([`RealDisk`](crate::RealDisk)) and on an in-memory one whose crashes
//! tests control ([`SimDisk`](crate::SimDisk)). The traits are deliberately
//! small: append-only writes, positional reads, truncation, data sync, and
//! the few directory operations the store needs.

use std::io;
use std::path::Path;
use std::sync::Arc;

/// A file system holding the store's directories and files.
pub trait Disk: Send + Sync + 'static {
    /// Creates `dir` and any missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the files in `dir`; empty if `dir` does not exist.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens `path` for appending and positional reads, creating it empty
    /// if missing. A new file's directory entry is durable only once
    /// [`sync_dir`](Disk::sync_dir) has been called on its directory.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>>;
    /// Opens `path` as [`open`](Disk::open) does, but fails with
    /// `NotFound` instead of creating a missing file.
    fn open_existing(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>>;
    /// Removes a file (durable after `sync_dir` of its directory).
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it; succeeds if it is missing.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, atomically replacing `to` (durable after
    /// `sync_dir` of the directory).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file: appended to at its end, read at any offset.
pub trait DiskFile: Send + Sync {
    /// Appends `data` at the end of the file, returning the offset it was
    /// written at.
    fn append(&self, data: &[u8]) -> io::Result<u64>;
    /// Reads into `buf` from `offset`, returning how many bytes were read
    /// (fewer than asked only at the end of the file).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// The file's length, including appends not yet synced.
    fn len(&self) -> u64;
    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Cuts the file to `len` bytes.
    fn truncate(&self, len: u64) -> io::Result<()>;
    /// Makes everything appended so far durable (`fdatasync`).
    fn sync(&self) -> io::Result<()>;
}

/// Fills `buf` from `offset`, failing with `UnexpectedEof` if the file ends
/// first.
pub(crate) fn read_exact_at(
    file: &dyn DiskFile,
    mut offset: u64,
    mut buf: &mut [u8],
) -> io::Result<()> {
    while !buf.is_empty() {
        match file.read_at(offset, buf) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file ended before the expected data",
                ))
            }
            Ok(n) => {
                offset += n as u64;
                buf = &mut buf[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
