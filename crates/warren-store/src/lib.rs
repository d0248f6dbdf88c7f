//! Warren's disk-first message store.
//!
//! Each durable queue keeps its messages in a directory of its own
//! ([`DiskQueueStore`], an implementation of [`warren_core::MessageStore`]):
//! append-only segment files holding every published message that was
//! still unsettled when a sync round needed it, and an ack log recording
//! which of them are settled. Once written, nothing of a ready message is
//! kept in memory, so a queue's backlog is bounded by the disk, not by RAM.
//!
//! Durability is group-committed across all queues by one
//! [`SyncCoordinator`]: a flush hands the store over and returns a
//! [`SyncTicket`]; a background thread has every store write out what it
//! holds (writes are behind: a message consumers settled first is never
//! written), syncs every file written since its last round, and publishes
//! the ticket the round covered. Confirms wait for that ticket, or for the
//! consumers' acks.
//!
//! Modules:
//! - [`disk`]: the file-system seam ([`Disk`], [`DiskFile`]), with
//!   [`RealDisk`] (`std::fs`) and [`SimDisk`] (in memory, crashable);
//! - `handle_cache`: [`HandleCache`], a `Disk` keeping the files it hands
//!   out open only while in use, within a budget of open files;
//! - `sync`: the group-commit coordinator;
//! - `record`, `segment`, `ack_log`: the on-disk format and its recovery;
//! - `seq_set`: range sets of settled sequence numbers;
//! - `queue_store`: the store itself (its operations in `ops`, the
//!   unwritten messages and their write-out in `write_behind`, opening in
//!   `recovery`);
//! - `spill_store`: transient queues, in memory until their backlog
//!   grows, then on disk;
//! - `definitions_store`: the broker's durable definitions, a key-value
//!   log compacted in the background ([`DefinitionsStore`]).
//!
//! `docs/storage-format.md` documents the files byte by byte.

mod ack_log;
mod definitions_store;
pub mod disk;
mod handle_cache;
mod queue_store;
mod real_disk;
mod record;
mod segment;
mod seq_set;
mod sim_disk;
mod spill_store;
mod sync;

pub use definitions_store::{Change, DefinitionsOptions, DefinitionsStore, COMPACT_MIN_DEAD_BYTES};
pub use disk::{Disk, DiskFile};
pub use handle_cache::{HandleCache, HandleStats};
pub use queue_store::{DiskQueueStore, StoreOptions};
pub use real_disk::RealDisk;
pub use sim_disk::SimDisk;
pub use spill_store::{SpillLimits, SpillOpener, SpillStore};
pub use sync::SyncCoordinator;
pub use warren_core::{StoreError, SyncTicket};
