//! [`AckLog`]: the per-queue file `acks`, recording which messages are
//! settled and how far delivery got.
//!
//! Fixed-size records (see [`crate::record::AckEntry`]) are appended
//! without syncing of their own; they become durable with the next sync
//! round that covers the file. When most of the log describes segments that
//! are gone, the store rewrites it from memory: to `acks.tmp`, synced, then
//! renamed over `acks` and the directory synced.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;
use warren_core::StoreError;

use crate::disk::{read_exact_at, Disk, DiskFile};
use crate::record::{
    check_file_header, file_header, AckEntry, HeaderCheck, ACK_LOG_MAGIC, ACK_RECORD_LEN,
    FILE_HEADER_LEN,
};
use crate::seq_set::SeqSet;

pub(crate) const ACK_LOG_NAME: &str = "acks";
pub(crate) const ACK_LOG_TMP_NAME: &str = "acks.tmp";

/// Records read per read call at recovery.
const RECOVERY_BATCH: usize = 4096;
/// Bytes written per append when rewriting.
const REWRITE_BATCH: usize = 1 << 20;

/// The open ack log of one queue.
pub(crate) struct AckLog {
    dir: PathBuf,
    file: Arc<dyn DiskFile>,
    /// End of the valid data.
    len: u64,
}

/// What the ack log says after a restart.
#[derive(Debug, Default)]
pub(crate) struct RecoveredAcks {
    /// Acked and purged sequence numbers.
    pub acked: SeqSet,
    /// Messages below this were handed out before the restart.
    pub delivered_up_to: u64,
    /// One past the largest sequence number the log mentions: new messages
    /// must start at or above it, or a stale ack could settle them.
    pub seq_floor: u64,
    /// Delivery counts of returned messages, by sequence number.
    pub returned: std::collections::BTreeMap<u64, u32>,
}

impl AckLog {
    /// Opens the ack log in `dir`, creating it if missing, and reads it
    /// back. A torn or corrupt tail is cut off.
    pub(crate) fn open(disk: &dyn Disk, dir: &Path) -> Result<(AckLog, RecoveredAcks), StoreError> {
        // A rewrite interrupted before its rename.
        match disk.remove_file(&dir.join(ACK_LOG_TMP_NAME)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let file = disk.open(&dir.join(ACK_LOG_NAME))?;
        let len = file.len();
        let mut header = [0u8; FILE_HEADER_LEN];
        let have = (len as usize).min(FILE_HEADER_LEN);
        read_exact_at(&*file, 0, &mut header[..have])?;
        match check_file_header(&header[..have], ACK_LOG_MAGIC) {
            HeaderCheck::Valid => {}
            // New, or created just before a crash: the header is synced
            // before any record is written, so nothing was in it.
            _ if len <= FILE_HEADER_LEN as u64 => {
                if len > 0 {
                    warn!("ack log header torn; starting an empty ack log");
                    file.truncate(0)?;
                }
                file.append(&file_header(ACK_LOG_MAGIC))?;
                file.sync()?;
                disk.sync_dir(dir)?;
                let log = AckLog {
                    dir: dir.to_path_buf(),
                    file,
                    len: FILE_HEADER_LEN as u64,
                };
                return Ok((log, RecoveredAcks::default()));
            }
            HeaderCheck::BadMagic => {
                return Err(StoreError::Corrupt(format!(
                    "{ACK_LOG_NAME}: not an ack log (bad header)"
                )));
            }
            HeaderCheck::UnknownVersion(v) => {
                return Err(StoreError::Corrupt(format!(
                    "{ACK_LOG_NAME}: unknown ack log format version {v}"
                )));
            }
        }

        let mut recovered = RecoveredAcks::default();
        let mut offset = FILE_HEADER_LEN as u64;
        let mut buf = vec![0u8; RECOVERY_BATCH * ACK_RECORD_LEN];
        'read: while offset < len {
            let n = ((len - offset) as usize).min(buf.len());
            read_exact_at(&*file, offset, &mut buf[..n])?;
            for chunk in buf[..n].chunks(ACK_RECORD_LEN) {
                let entry = <&[u8; ACK_RECORD_LEN]>::try_from(chunk)
                    .ok()
                    .and_then(|r| AckEntry::decode(r).ok());
                let Some(entry) = entry else {
                    warn!(
                        offset,
                        dropped_bytes = len - offset,
                        "torn or corrupt ack record; the ack log is cut there"
                    );
                    file.truncate(offset)?;
                    file.sync()?;
                    break 'read;
                };
                recovered.apply(entry);
                offset += ACK_RECORD_LEN as u64;
            }
        }
        let log = AckLog {
            dir: dir.to_path_buf(),
            file,
            len: offset,
        };
        Ok((log, recovered))
    }

    pub(crate) fn file(&self) -> &Arc<dyn DiskFile> {
        &self.file
    }

    /// How many records the log holds.
    pub(crate) fn records(&self) -> u64 {
        (self.len - FILE_HEADER_LEN as u64) / ACK_RECORD_LEN as u64
    }

    /// Appends `entries` (not synced).
    pub(crate) fn append(&mut self, entries: &[AckEntry]) -> io::Result<()> {
        let result = match entries {
            [one] => self.file.append(&one.encode()),
            _ => {
                let buf: Vec<u8> = entries.iter().flat_map(|e| e.encode()).collect();
                self.file.append(&buf)
            }
        };
        match result {
            Ok(_) => {
                self.len += (entries.len() * ACK_RECORD_LEN) as u64;
                Ok(())
            }
            Err(e) => {
                // Do not leave half a record for later ones to follow.
                if let Err(t) = self.file.truncate(self.len) {
                    warn!(error = %t, "cannot cut a failed ack log append");
                }
                Err(e)
            }
        }
    }

    /// Replaces the log with one holding only `entries`, durably.
    pub(crate) fn rewrite(
        &mut self,
        disk: &dyn Disk,
        entries: impl Iterator<Item = AckEntry>,
    ) -> io::Result<()> {
        let tmp_path = self.dir.join(ACK_LOG_TMP_NAME);
        match disk.remove_file(&tmp_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let tmp = disk.open(&tmp_path)?;
        let written = Self::write_all(&*tmp, entries).and_then(|len| {
            tmp.sync()?;
            disk.rename(&tmp_path, &self.dir.join(ACK_LOG_NAME))?;
            Ok(len)
        });
        match written {
            Ok(len) => {
                self.file = tmp;
                self.len = len;
                disk.sync_dir(&self.dir)
            }
            Err(e) => {
                if let Err(r) = disk.remove_file(&tmp_path) {
                    warn!(error = %r, "cannot remove an unfinished ack log rewrite");
                }
                Err(e)
            }
        }
    }

    fn write_all(file: &dyn DiskFile, entries: impl Iterator<Item = AckEntry>) -> io::Result<u64> {
        if !file.is_empty() {
            file.truncate(0)?;
        }
        let mut buf = Vec::with_capacity(REWRITE_BATCH.min(64 * 1024));
        buf.extend_from_slice(&file_header(ACK_LOG_MAGIC));
        let mut len = 0u64;
        for entry in entries {
            buf.extend_from_slice(&entry.encode());
            if buf.len() >= REWRITE_BATCH {
                file.append(&buf)?;
                len += buf.len() as u64;
                buf.clear();
            }
        }
        file.append(&buf)?;
        Ok(len + buf.len() as u64)
    }
}

impl RecoveredAcks {
    fn apply(&mut self, entry: AckEntry) {
        match entry {
            AckEntry::Ack(seq) => {
                self.acked.insert(seq);
                self.seq_floor = self.seq_floor.max(seq.saturating_add(1));
            }
            AckEntry::DeliveredUpTo(seq) => {
                self.delivered_up_to = self.delivered_up_to.max(seq);
                self.seq_floor = self.seq_floor.max(seq);
            }
            AckEntry::Range(from, to) => {
                self.acked.insert_range(from, to);
                self.seq_floor = self.seq_floor.max(to);
            }
            AckEntry::Returned(seq, count) => {
                let count = u32::try_from(count).unwrap_or(u32::MAX);
                let slot = self.returned.entry(seq).or_default();
                *slot = (*slot).max(count);
                self.seq_floor = self.seq_floor.max(seq.saturating_add(1));
            }
        }
    }
}
