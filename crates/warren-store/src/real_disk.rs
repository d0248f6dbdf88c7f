//! [`RealDisk`]: the [`Disk`] seam over `std::fs`.
//!
//! Files are opened in append mode; reads are positional (`pread`), so
//! readers never contend with the appender. Only appends and truncation
//! take a per-file lock, which keeps the tracked length exact.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::disk::{Disk, DiskFile};

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealDisk;

impl RealDisk {
    pub fn new() -> Self {
        RealDisk
    }
}

impl Disk for RealDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        open_file(path, true)
    }

    fn open_existing(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        open_file(path, false)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        match fs::remove_dir_all(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    #[cfg(unix)]
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    #[cfg(not(unix))]
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        // Directories cannot be opened for syncing here; the file system
        // orders metadata updates itself.
        Ok(())
    }
}

fn open_file(path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(create)
        .open(path)?;
    let len = file.metadata()?.len();
    Ok(Arc::new(RealFile {
        file,
        append_lock: Mutex::new(()),
        len: AtomicU64::new(len),
    }))
}

/// An open file of [`RealDisk`].
struct RealFile {
    file: File,
    /// Held while appending or truncating, so `len` matches the file.
    append_lock: Mutex<()>,
    len: AtomicU64,
}

impl RealFile {
    fn refresh_len(&self) {
        if let Ok(meta) = self.file.metadata() {
            self.len.store(meta.len(), Ordering::Release);
        }
    }
}

impl DiskFile for RealFile {
    fn append(&self, data: &[u8]) -> io::Result<u64> {
        let _guard = self.append_lock.lock();
        let offset = self.len.load(Ordering::Acquire);
        if let Err(e) = (&self.file).write_all(data) {
            // Part of the data may have been written: learn the real length
            // so later appends report true offsets.
            self.refresh_len();
            return Err(e);
        }
        self.len
            .store(offset + data.len() as u64, Ordering::Release);
        Ok(offset)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_at(&self.file, buf, offset)
        }
        #[cfg(windows)]
        {
            std::os::windows::fs::FileExt::seek_read(&self.file, buf, offset)
        }
    }

    fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        let _guard = self.append_lock.lock();
        let result = self.file.set_len(len);
        self.refresh_len();
        result
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}
