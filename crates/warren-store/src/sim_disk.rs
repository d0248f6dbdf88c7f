//! [`SimDisk`]: an in-memory [`Disk`] that can crash.
//!
//! Each file keeps its bytes and how many of them have been synced. A
//! [`crash`](SimDisk::crash) produces the disk a machine would find after
//! losing power: every file keeps its synced prefix plus a random part of
//! its unsynced tail, possibly ending in garbage (a torn write).
//!
//! Directory entries are modelled too: creations, renames and removals of
//! files are visible at once but only durable after
//! [`sync_dir`](Disk::sync_dir) on their directory; at a crash each entry
//! changed since then independently keeps either its new or its old state.
//! Simplifications: directories themselves (`create_dir_all`,
//! `remove_dir_all`) and truncations are durable as soon as they happen.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::disk::{Disk, DiskFile};

/// An in-memory file system for tests. Clones share the same files.
#[derive(Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<Namespace>>,
    faults: Arc<Faults>,
}

/// Failures injected into every file of a disk.
#[derive(Default)]
struct Faults {
    syncs: AtomicBool,
    writes: AtomicBool,
}

#[derive(Default)]
struct Namespace {
    dirs: BTreeSet<PathBuf>,
    /// Files as they are seen now.
    live: BTreeMap<PathBuf, Arc<SimFile>>,
    /// Files as of the last `sync_dir` of their directory.
    durable: BTreeMap<PathBuf, Arc<SimFile>>,
}

struct SimFile {
    data: Mutex<FileData>,
    faults: Arc<Faults>,
}

#[derive(Clone, Default)]
struct FileData {
    bytes: Vec<u8>,
    /// How many leading bytes a crash keeps for certain.
    synced: usize,
}

impl SimDisk {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later [`DiskFile::sync`] fail (`true`) or succeed again
    /// (`false`), to test the handling of sync errors.
    pub fn set_sync_failures(&self, fail: bool) {
        self.faults.syncs.store(fail, Ordering::SeqCst);
    }

    /// Makes every later [`DiskFile::append`] fail (`true`) after writing
    /// half of its data, as a full disk would, or succeed again (`false`).
    pub fn set_write_failures(&self, fail: bool) {
        self.faults.writes.store(fail, Ordering::SeqCst);
    }

    /// The disk as found after a power loss now. For each file: its synced
    /// prefix, plus a random part of its unsynced tail whose last bytes may
    /// be garbage. Directory entries changed since their directory's last
    /// sync each come back in their old or new state. The same seed gives
    /// the same result.
    pub fn crash(&self, rng_seed: u64) -> SimDisk {
        let mut rng = fastrand::Rng::with_seed(rng_seed);
        let state = self.state.lock();
        let faults = Arc::new(Faults::default());
        let mut names: BTreeSet<&PathBuf> = state.live.keys().collect();
        names.extend(state.durable.keys());
        let mut files = BTreeMap::new();
        for name in names {
            let live = state.live.get(name);
            let durable = state.durable.get(name);
            let survivor = match (live, durable) {
                (Some(a), Some(b)) if Arc::ptr_eq(a, b) => Some(a),
                _ => {
                    if rng.bool() {
                        live
                    } else {
                        durable
                    }
                }
            };
            let Some(file) = survivor else { continue };
            let bytes = file.crashed_bytes(&mut rng);
            let synced = bytes.len();
            let file = Arc::new(SimFile {
                data: Mutex::new(FileData { bytes, synced }),
                faults: Arc::clone(&faults),
            });
            files.insert(name.clone(), file);
        }
        SimDisk {
            state: Arc::new(Mutex::new(Namespace {
                dirs: state.dirs.clone(),
                live: files.clone(),
                durable: files,
            })),
            faults,
        }
    }

    fn not_found(path: &Path) -> io::Error {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} not found", path.display()),
        )
    }
}

impl Disk for SimDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        for d in dir.ancestors() {
            if !d.as_os_str().is_empty() {
                state.dirs.insert(d.to_path_buf());
            }
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state.lock();
        Ok(state
            .live
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        let mut state = self.state.lock();
        if let Some(file) = state.live.get(path) {
            return Ok(Arc::clone(file) as Arc<dyn DiskFile>);
        }
        match path.parent() {
            Some(dir) if state.dirs.contains(dir) => {}
            _ => return Err(Self::not_found(path)),
        }
        let file = Arc::new(SimFile {
            data: Mutex::new(FileData::default()),
            faults: Arc::clone(&self.faults),
        });
        state.live.insert(path.to_path_buf(), Arc::clone(&file));
        Ok(file)
    }

    fn open_existing(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        let state = self.state.lock();
        match state.live.get(path) {
            Some(file) => Ok(Arc::clone(file) as Arc<dyn DiskFile>),
            None => Err(Self::not_found(path)),
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        match state.live.remove(path) {
            Some(_) => Ok(()),
            None => Err(Self::not_found(path)),
        }
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.dirs.retain(|d| !d.starts_with(dir));
        state.live.retain(|p, _| !p.starts_with(dir));
        state.durable.retain(|p, _| !p.starts_with(dir));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        let file = state
            .live
            .remove(from)
            .ok_or_else(|| Self::not_found(from))?;
        state.live.insert(to.to_path_buf(), file);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        if !state.dirs.contains(dir) {
            return Err(Self::not_found(dir));
        }
        let Namespace { live, durable, .. } = &mut *state;
        durable.retain(|p, _| p.parent() != Some(dir));
        for (p, f) in live.iter() {
            if p.parent() == Some(dir) {
                durable.insert(p.clone(), Arc::clone(f));
            }
        }
        Ok(())
    }
}

impl SimFile {
    /// What a crash leaves of this file.
    fn crashed_bytes(&self, rng: &mut fastrand::Rng) -> Vec<u8> {
        let data = self.data.lock();
        let unsynced = data.bytes.len() - data.synced;
        // Favour the edges: nothing or all of the tail kept.
        let keep = match rng.u8(0..4) {
            0 => 0,
            1 => unsynced,
            _ => rng.usize(0..=unsynced),
        };
        let mut bytes = data.bytes[..data.synced + keep].to_vec();
        if keep > 0 && rng.bool() {
            // A torn write: the last bytes never made it, and the sectors
            // hold zeros or garbage instead.
            let torn = rng.usize(1..=keep.min(32));
            let zeros = rng.bool();
            let len = bytes.len();
            for b in &mut bytes[len - torn..] {
                *b = if zeros { 0 } else { rng.u8(..) };
            }
        }
        bytes
    }
}

impl DiskFile for SimFile {
    fn append(&self, data: &[u8]) -> io::Result<u64> {
        let mut file = self.data.lock();
        let offset = file.bytes.len() as u64;
        if self.faults.writes.load(Ordering::SeqCst) {
            file.bytes.extend_from_slice(&data[..data.len() / 2]);
            return Err(io::Error::other("no space left on device (simulated)"));
        }
        file.bytes.extend_from_slice(data);
        Ok(offset)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let file = self.data.lock();
        let len = file.bytes.len();
        let start = usize::try_from(offset).map_or(len, |o| o.min(len));
        let n = buf.len().min(len - start);
        buf[..n].copy_from_slice(&file.bytes[start..start + n]);
        Ok(n)
    }

    fn len(&self) -> u64 {
        self.data.lock().bytes.len() as u64
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        let mut file = self.data.lock();
        let len = usize::try_from(len).map_err(|_| io::Error::other("length too large"))?;
        file.bytes.resize(len, 0);
        file.synced = file.synced.min(len);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        if self.faults.syncs.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected sync failure"));
        }
        let mut file = self.data.lock();
        file.synced = file.bytes.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(disk: &SimDisk, path: &Path) -> Option<Vec<u8>> {
        if !disk
            .list(path.parent()?)
            .ok()?
            .iter()
            .any(|n| path.ends_with(n))
        {
            return None;
        }
        let file = disk.open(path).ok()?;
        let mut buf = vec![0u8; file.len() as usize];
        file.read_at(0, &mut buf).ok()?;
        Some(buf)
    }

    #[test]
    fn crash_keeps_the_synced_prefix_and_part_of_the_rest() {
        let disk = SimDisk::new();
        let dir = Path::new("/q");
        disk.create_dir_all(dir).unwrap();
        let f = disk.open(&dir.join("f")).unwrap();
        disk.sync_dir(dir).unwrap();
        f.append(b"synced-part|").unwrap();
        f.sync().unwrap();
        f.append(&[b'u'; 100]).unwrap();
        let (mut shorter, mut full, mut garbled) = (false, false, false);
        for seed in 0..200 {
            let bytes = read_all(&disk.crash(seed), &dir.join("f")).unwrap();
            assert!(bytes.starts_with(b"synced-part|"), "seed {seed}");
            assert!(bytes.len() <= 112);
            shorter |= bytes.len() < 112;
            full |= bytes.len() == 112;
            garbled |= bytes[12..].iter().any(|&b| b != b'u');
        }
        assert!(shorter && full && garbled);
        // The same seed gives the same disk.
        assert_eq!(
            read_all(&disk.crash(5), &dir.join("f")),
            read_all(&disk.crash(5), &dir.join("f"))
        );
    }

    #[test]
    fn directory_changes_need_a_directory_sync() {
        let disk = SimDisk::new();
        let dir = Path::new("/q");
        disk.create_dir_all(dir).unwrap();
        disk.open(&dir.join("old")).unwrap().sync().unwrap();
        disk.sync_dir(dir).unwrap();
        disk.remove_file(&dir.join("old")).unwrap();
        let new = disk.open(&dir.join("new")).unwrap();
        new.sync().unwrap();
        let outcomes: BTreeSet<(bool, bool)> = (0..64)
            .map(|seed| {
                let d = disk.crash(seed);
                (
                    read_all(&d, &dir.join("old")).is_some(),
                    read_all(&d, &dir.join("new")).is_some(),
                )
            })
            .collect();
        assert_eq!(outcomes.len(), 4, "each entry independently old or new");
        disk.sync_dir(dir).unwrap();
        for seed in 0..16 {
            let d = disk.crash(seed);
            assert!(read_all(&d, &dir.join("old")).is_none());
            assert!(read_all(&d, &dir.join("new")).is_some());
        }
    }

    #[test]
    fn rename_replaces_atomically() {
        let disk = SimDisk::new();
        let dir = Path::new("/q");
        disk.create_dir_all(dir).unwrap();
        let log = disk.open(&dir.join("log")).unwrap();
        log.append(b"old").unwrap();
        log.sync().unwrap();
        disk.sync_dir(dir).unwrap();
        let tmp = disk.open(&dir.join("log.tmp")).unwrap();
        tmp.append(b"new").unwrap();
        tmp.sync().unwrap();
        disk.rename(&dir.join("log.tmp"), &dir.join("log")).unwrap();
        for seed in 0..32 {
            let d = disk.crash(seed);
            let log = read_all(&d, &dir.join("log")).unwrap();
            assert!(log == b"old" || log == b"new", "seed {seed}");
        }
        disk.sync_dir(dir).unwrap();
        for seed in 0..8 {
            let d = disk.crash(seed);
            assert_eq!(read_all(&d, &dir.join("log")).unwrap(), b"new");
            assert!(read_all(&d, &dir.join("log.tmp")).is_none());
        }
    }
}
