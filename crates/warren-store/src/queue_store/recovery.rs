//! Opening a [`StoreCore`]: recovery of its directory (the ack log,
//! then every segment in order), or a new store that creates nothing until
//! its first message. `docs/storage-format.md` lists the steps.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use warren_core::StoreError;

use super::{create_segment_file, Cursor, DiskQueueStore, StoreCore, StoreOptions};
use crate::ack_log::{AckLog, RecoveredAcks};
use crate::disk::Disk;
use crate::segment::{parse_segment_file_name, segment_file_name, ChunkReader, Segment};
use crate::sync::SyncCoordinator;

impl DiskQueueStore {
    /// Opens the store in `dir`, creating it if missing and recovering it
    /// otherwise.
    pub fn open(
        disk: Arc<dyn Disk>,
        dir: PathBuf,
        sync: Arc<SyncCoordinator>,
    ) -> Result<DiskQueueStore, StoreError> {
        Self::open_with_options(disk, dir, sync, StoreOptions::default())
    }

    /// [`open`](Self::open) with explicit tunables.
    pub fn open_with_options(
        disk: Arc<dyn Disk>,
        dir: PathBuf,
        sync: Arc<SyncCoordinator>,
        options: StoreOptions,
    ) -> Result<DiskQueueStore, StoreError> {
        // Missing or empty: a new store (or one created just before a
        // crash, before any file), made on its first write.
        let names = disk.list(&dir)?;
        let (ack_log, acks) = if names.is_empty() {
            (None, RecoveredAcks::default())
        } else {
            let (log, acks) = AckLog::open(&*disk, &dir)?;
            (Some(log), acks)
        };

        let mut ids: Vec<u64> = names
            .iter()
            .filter_map(|name| parse_segment_file_name(name))
            .collect();
        ids.sort_unstable();
        let mut reader = ChunkReader::new(options.read_chunk_size);
        let mut segments = VecDeque::new();
        let mut last_file = None;
        let mut prev_seq = None;
        let mut dir_changed = false;
        for &id in &ids {
            let path = dir.join(segment_file_name(id));
            let file = disk.open(&path)?;
            match Segment::recover(id, &*file, &mut reader, &acks.acked, &mut prev_seq)? {
                Some(seg) => {
                    segments.push_back(seg);
                    last_file = Some(file);
                }
                None => {
                    disk.remove_file(&path)?;
                    dir_changed = true;
                }
            }
        }
        let next_seq = prev_seq
            .map_or(0, |p| p.saturating_add(1))
            .max(acks.seq_floor);
        let mut next_segment_id = ids.last().map_or(1, |id| id + 1);
        let write_file = match last_file {
            Some(file) => Some(file),
            None if ack_log.is_some() => {
                let file = create_segment_file(&*disk, &dir, next_segment_id)?;
                segments.push_back(Segment::new(next_segment_id, next_seq));
                next_segment_id += 1;
                Some(file)
            }
            None => None,
        };
        let unread = segments.iter().map(|s| s.unread).sum();
        let cursor = Cursor::at_start_of(segments.front().map_or(0, |s| s.id));

        let mut store = StoreCore {
            write_file,
            disk,
            dir,
            sync,
            compact_at: options.ack_log_compact_records,
            options,
            segments,
            next_segment_id,
            ack_log,
            requeued: BTreeMap::new(),
            unread,
            cursor,
            reader,
            read_floor: 0,
            next_seq,
            recovered_below: next_seq,
            redelivered_below: acks.delivered_up_to,
            delivery_counts: acks
                .returned
                .iter()
                .filter(|(seq, _)| !acks.acked.contains(**seq))
                .map(|(&seq, &n)| (seq, n))
                .collect(),
            delivered_up_to: acks.delivered_up_to,
            unwritten: VecDeque::new(),
            unwritten_ready: 0,
            unwritten_ready_count: 0,
            unwritten_bytes: 0,
            reported_bytes: 0,
            batches: VecDeque::new(),
            pushed_persistent: false,
            consumed: false,
            ready_changed: false,
            batch_from: None,
            staged: Vec::new(),
            staged_from: None,
            staged_persistent: false,
            acks_staged: Vec::new(),
            mark_staged: false,
            destroyed: false,
        };
        let mut i = 0;
        while i < store.segments.len() {
            if store.delete_if_settled(i) {
                dir_changed = true;
            } else {
                i += 1;
            }
        }
        if dir_changed {
            store.disk.sync_dir(&store.dir)?;
        }
        store.maybe_compact();
        Ok(DiskQueueStore::new(store))
    }
}
