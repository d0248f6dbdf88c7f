//! Segment files: naming, what the store remembers about each one, reading
//! records back in large chunks, and checking a segment at recovery.
//!
//! A queue's messages live in numbered segment files `seg.<10-digit id>`,
//! each an 8-byte header followed by message records (see [`crate::record`]).
//! Only the newest segment is appended to; the others are read and, once
//! every record in them is settled, deleted.

use std::io;

use bytes::Bytes;
use tracing::warn;
use warren_core::StoreError;

use crate::disk::{read_exact_at, DiskFile};
use crate::record::{
    check_file_header, decode_record_header, parse_payload, HeaderCheck, PayloadLayout,
    FILE_HEADER_LEN, MIN_PAYLOAD_LEN, RECORD_HEADER_LEN, SEGMENT_MAGIC,
};
use crate::seq_set::SeqSet;

const NAME_PREFIX: &str = "seg.";

/// The file name of segment `id`.
pub(crate) fn segment_file_name(id: u64) -> String {
    format!("{NAME_PREFIX}{id:010}")
}

/// The id of a segment file name, `None` for any other name.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(NAME_PREFIX)?;
    if digits.len() < 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What the store keeps in memory about one segment: a few counters and
/// the set of its settled sequence numbers, never anything per message.
#[derive(Debug)]
pub(crate) struct Segment {
    pub id: u64,
    /// End of the valid data: header plus complete records.
    pub end: u64,
    /// No record in this segment has a smaller sequence number.
    pub first_seq: u64,
    /// The sequence number of the last record, if any.
    pub last_seq: Option<u64>,
    /// Records that are neither acked, purged nor dropped (transient
    /// records found at recovery).
    pub live: u64,
    /// Live records the read cursor has not reached yet.
    pub unread: u64,
    /// Acked and purged sequence numbers of records in this segment.
    pub acked: SeqSet,
    /// An append failed part-way: nothing more is written here.
    pub sealed: bool,
    /// Body bytes of the live records found at recovery (0 for a segment
    /// created since).
    pub recovered_bytes: u64,
}

impl Segment {
    /// A new, empty segment whose records will start at `first_seq`.
    pub(crate) fn new(id: u64, first_seq: u64) -> Self {
        Segment {
            id,
            end: FILE_HEADER_LEN as u64,
            first_seq,
            last_seq: None,
            live: 0,
            unread: 0,
            acked: SeqSet::default(),
            sealed: false,
            recovered_bytes: 0,
        }
    }

    /// Whether `seq` would be a record of this segment.
    pub(crate) fn holds(&self, seq: u64) -> bool {
        seq >= self.first_seq && self.last_seq.is_some_and(|last| seq <= last)
    }

    /// Checks segment `id` at recovery: validates every record, cuts the
    /// file at the first torn or corrupt one, and counts the records still
    /// live given the recovered `acked` set (transient records are not).
    /// `prev_seq` is the last sequence number of the previous segment; a
    /// record that does not come after it counts as corrupt.
    ///
    /// Returns `None` if the file's header itself is torn (the segment was
    /// being created at the crash and holds nothing). A damaged header on a
    /// file with records is an error: nothing is deleted that may hold
    /// data.
    pub(crate) fn recover(
        id: u64,
        file: &dyn DiskFile,
        reader: &mut ChunkReader,
        acked: &SeqSet,
        prev_seq: &mut Option<u64>,
    ) -> Result<Option<Segment>, StoreError> {
        let name = segment_file_name(id);
        let len = file.len();
        let mut header = [0u8; FILE_HEADER_LEN];
        let have = (len as usize).min(FILE_HEADER_LEN);
        read_exact_at(file, 0, &mut header[..have])?;
        match check_file_header(&header[..have], SEGMENT_MAGIC) {
            HeaderCheck::Valid => {}
            // The header is synced before anything else is written: a file
            // no longer than a header without a valid one was being created
            // at the crash and holds nothing.
            _ if len <= FILE_HEADER_LEN as u64 => {
                warn!(segment = %name, "segment header torn; the segment is dropped");
                return Ok(None);
            }
            HeaderCheck::BadMagic => {
                return Err(StoreError::Corrupt(format!(
                    "{name}: not a segment file (bad header)"
                )));
            }
            HeaderCheck::UnknownVersion(v) => {
                return Err(StoreError::Corrupt(format!(
                    "{name}: unknown segment format version {v}"
                )));
            }
        }
        let mut seg = Segment::new(id, prev_seq.map_or(0, |p| p.saturating_add(1)));
        let mut records = 0u64;
        let mut offset = FILE_HEADER_LEN as u64;
        loop {
            let problem = match reader.read(id, file, offset, len)? {
                ChunkRead::End => break,
                ChunkRead::Bad(why) => why,
                ChunkRead::Record(rec) => {
                    let seq = rec.layout.seq;
                    if prev_seq.is_some_and(|p| seq <= p) {
                        "sequence number out of order"
                    } else {
                        if records == 0 {
                            seg.first_seq = seq;
                        }
                        records += 1;
                        *prev_seq = Some(seq);
                        seg.last_seq = Some(seq);
                        if rec.layout.persistent && !acked.contains(seq) {
                            seg.live += 1;
                            seg.recovered_bytes += rec.layout.body.len() as u64;
                        }
                        offset = rec.next;
                        continue;
                    }
                }
            };
            warn!(
                segment = %name,
                offset,
                dropped_bytes = len - offset,
                problem,
                "torn or corrupt record; the segment is cut there"
            );
            file.truncate(offset)?;
            file.sync()?;
            break;
        }
        reader.release();
        seg.end = offset;
        seg.unread = seg.live;
        if let Some(last) = seg.last_seq {
            seg.acked = acked.restricted(seg.first_seq, last.saturating_add(1));
        }
        Ok(Some(seg))
    }
}

/// One record read back.
pub(crate) struct RawRecord {
    /// Offset just past the record.
    pub next: u64,
    /// The payload, a slice of the chunk it was read with.
    pub payload: Bytes,
    pub layout: PayloadLayout,
}

pub(crate) enum ChunkRead {
    Record(RawRecord),
    /// No record starts before the end.
    End,
    /// The bytes at the offset are not a valid record.
    Bad(&'static str),
}

/// Reads records in large chunks and hands out slices of them, so reading
/// many small messages costs few reads and no copies.
pub(crate) struct ChunkReader {
    chunk_size: usize,
    segment: u64,
    start: u64,
    data: Bytes,
}

impl ChunkReader {
    pub(crate) fn new(chunk_size: usize) -> Self {
        ChunkReader {
            chunk_size: chunk_size.max(RECORD_HEADER_LEN + MIN_PAYLOAD_LEN),
            segment: 0,
            start: 0,
            data: Bytes::new(),
        }
    }

    /// Lets go of the current chunk (slices handed out keep it alive).
    pub(crate) fn release(&mut self) {
        self.data = Bytes::new();
    }

    /// Lets go of the chunk if it holds nothing at or after `offset` of
    /// `segment`.
    pub(crate) fn release_if_before(&mut self, segment: u64, offset: u64) {
        if self.segment != segment || self.start + self.data.len() as u64 <= offset {
            self.release();
        }
    }

    /// The record at `offset` of segment `segment`, whose valid data ends
    /// at `end`.
    pub(crate) fn read(
        &mut self,
        segment: u64,
        file: &dyn DiskFile,
        offset: u64,
        end: u64,
    ) -> io::Result<ChunkRead> {
        if offset >= end {
            return Ok(ChunkRead::End);
        }
        let available = end - offset;
        if available < RECORD_HEADER_LEN as u64 {
            return Ok(ChunkRead::Bad("truncated record header"));
        }
        let at = self.fetch(segment, file, offset, RECORD_HEADER_LEN as u64, available)?;
        let mut header = [0u8; RECORD_HEADER_LEN];
        header.copy_from_slice(&self.data[at..at + RECORD_HEADER_LEN]);
        let (payload_len, crc) = decode_record_header(&header);
        let total = RECORD_HEADER_LEN as u64 + u64::from(payload_len);
        if (payload_len as usize) < MIN_PAYLOAD_LEN {
            return Ok(ChunkRead::Bad("record too short"));
        }
        if total > available {
            return Ok(ChunkRead::Bad("record runs past the end of the segment"));
        }
        let at = self.fetch(segment, file, offset, total, available)?;
        let payload = self.data.slice(at + RECORD_HEADER_LEN..at + total as usize);
        match parse_payload(&payload, crc) {
            Ok(layout) => Ok(ChunkRead::Record(RawRecord {
                next: offset + total,
                payload,
                layout,
            })),
            Err(_) => Ok(ChunkRead::Bad("checksum or layout mismatch")),
        }
    }

    /// Makes sure the chunk holds `[offset, offset + len)`, reading a new
    /// chunk of up to `available` bytes if not; returns the index of
    /// `offset` in the chunk.
    fn fetch(
        &mut self,
        segment: u64,
        file: &dyn DiskFile,
        offset: u64,
        len: u64,
        available: u64,
    ) -> io::Result<usize> {
        if self.segment == segment && offset >= self.start {
            let at = offset - self.start;
            if at + len <= self.data.len() as u64 {
                return Ok(at as usize);
            }
        }
        let want = len.max(self.chunk_size as u64).min(available);
        let want = usize::try_from(want).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, "record too large for memory")
        })?;
        let mut buf = vec![0u8; want];
        read_exact_at(file, offset, &mut buf)?;
        self.segment = segment;
        self.start = offset;
        self.data = Bytes::from(buf);
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(segment_file_name(42), "seg.0000000042");
        assert_eq!(parse_segment_file_name("seg.0000000042"), Some(42));
        assert_eq!(parse_segment_file_name("seg.42"), None);
        assert_eq!(parse_segment_file_name("seg.00000000x2"), None);
        assert_eq!(parse_segment_file_name("acks"), None);
    }
}
