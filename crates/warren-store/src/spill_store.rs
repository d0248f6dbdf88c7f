//! [`SpillStore`]: a transient queue's messages, in memory while the
//! backlog is small and spilled to a disk store once it grows, so a large
//! transient backlog fills the disk rather than the broker's memory.
//!
//! The memory part always holds the oldest messages: once spilling starts,
//! new messages go to disk, and requeued ones (older than anything still
//! unread on disk) go back to memory, so popping memory first keeps
//! publication order. When the disk part is empty and nothing it delivered
//! is outstanding, it is removed and the queue is memory-only again.
//! Nothing here survives a restart: spill files are not synced, and the
//! broker clears their directory when it starts.

use warren_core::{MemoryStore, MessageStore, QueuedMessage, StoreError, SyncTicket};

use crate::DiskQueueStore;

/// Opens a fresh, empty disk store for spilling.
pub type SpillOpener = Box<dyn FnMut() -> Result<DiskQueueStore, StoreError> + Send>;

/// When the memory part is too big to grow further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpillLimits {
    /// Body bytes held in memory.
    pub bytes: u64,
    /// Messages held in memory.
    pub messages: usize,
}

impl Default for SpillLimits {
    fn default() -> Self {
        SpillLimits {
            bytes: 32 << 20,
            messages: 128 << 10,
        }
    }
}

pub struct SpillStore {
    memory: MemoryStore,
    memory_bytes: u64,
    limits: SpillLimits,
    open: SpillOpener,
    disk: Option<DiskQueueStore>,
    /// Messages with this sequence number or higher were written to disk.
    disk_from: u64,
    /// Delivered from disk and not yet acked or requeued.
    disk_outstanding: u64,
    /// The queue has consumers (passed on to the disk store).
    consumed: bool,
}

impl SpillStore {
    pub fn new(limits: SpillLimits, open: SpillOpener) -> Self {
        SpillStore {
            memory: MemoryStore::default(),
            memory_bytes: 0,
            limits,
            open,
            disk: None,
            disk_from: u64::MAX,
            disk_outstanding: 0,
            consumed: false,
        }
    }

    /// Whether messages are currently being written to disk.
    pub fn is_spilling(&self) -> bool {
        self.disk.is_some()
    }

    fn came_from_disk(&self, msg: &QueuedMessage) -> bool {
        msg.seq >= self.disk_from
    }

    /// Back to memory-only once the disk part has nothing left to give.
    fn maybe_unspill(&mut self) -> Result<(), StoreError> {
        if self.disk_outstanding == 0 && self.disk.as_ref().is_some_and(|d| d.is_empty()) {
            if let Some(mut disk) = self.disk.take() {
                disk.destroy()?;
            }
            self.disk_from = u64::MAX;
        }
        Ok(())
    }
}

impl MessageStore for SpillStore {
    /// Memory holds the oldest messages while it holds any.
    fn oldest_ready_seq(&self) -> Option<u64> {
        match self.memory.oldest_ready_seq() {
            Some(seq) => Some(seq),
            None => self.disk.as_ref()?.oldest_ready_seq(),
        }
    }

    fn push(&mut self, msg: QueuedMessage) -> Result<(), StoreError> {
        if let Some(disk) = self.disk.as_mut() {
            return disk.push(msg);
        }
        let size = msg.message.body_size();
        let seq = msg.seq;
        self.memory.push(msg)?;
        self.memory_bytes += size;
        if self.memory_bytes > self.limits.bytes || self.memory.len() > self.limits.messages {
            let mut disk = (self.open)()?;
            disk.set_consumed(self.consumed);
            self.disk = Some(disk);
            self.disk_from = seq + 1;
        }
        Ok(())
    }

    fn set_consumed(&mut self, consumed: bool) {
        self.consumed = consumed;
        if let Some(disk) = self.disk.as_mut() {
            disk.set_consumed(consumed);
        }
    }

    fn flush(&mut self) -> Result<Option<SyncTicket>, StoreError> {
        // Spill files promise nothing across a restart: no ticket.
        match self.disk.as_mut() {
            Some(disk) => disk.flush().map(|_| None),
            None => Ok(None),
        }
    }

    fn pop(&mut self) -> Result<Option<QueuedMessage>, StoreError> {
        if let Some(msg) = self.memory.pop()? {
            self.memory_bytes = self.memory_bytes.saturating_sub(msg.message.body_size());
            return Ok(Some(msg));
        }
        let Some(disk) = self.disk.as_mut() else {
            return Ok(None);
        };
        let msg = disk.pop()?;
        if msg.is_some() {
            self.disk_outstanding += 1;
        }
        Ok(msg)
    }

    fn requeue(&mut self, msg: QueuedMessage) {
        if self.came_from_disk(&msg) {
            self.disk_outstanding = self.disk_outstanding.saturating_sub(1);
        }
        self.memory_bytes += msg.message.body_size();
        self.memory.requeue(msg);
    }

    fn ack(&mut self, msg: &QueuedMessage) -> Result<(), StoreError> {
        if !self.came_from_disk(msg) {
            return Ok(());
        }
        if let Some(disk) = self.disk.as_mut() {
            disk.ack(msg)?;
        }
        self.disk_outstanding = self.disk_outstanding.saturating_sub(1);
        self.maybe_unspill()
    }

    fn len(&self) -> usize {
        self.memory.len() + self.disk.as_ref().map_or(0, |d| d.len())
    }

    fn purge(&mut self) -> Result<usize, StoreError> {
        let mut n = self.memory.purge()?;
        self.memory_bytes = 0;
        if let Some(disk) = self.disk.as_mut() {
            n += disk.purge()?;
        }
        self.maybe_unspill()?;
        Ok(n)
    }

    fn destroy(&mut self) -> Result<(), StoreError> {
        if let Some(mut disk) = self.disk.take() {
            disk.destroy()?;
        }
        Ok(())
    }
}
