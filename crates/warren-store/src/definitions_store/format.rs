//! The bytes of the definitions store's log files: names, the file header,
//! batch and end-of-compaction records (encoding and parsing), the
//! recovery scan, and the writer that appends them. The store itself
//! (`super`) keeps the index and decides what to write.

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use tracing::warn;
use warren_core::StoreError;

use crate::disk::{read_exact_at, Disk, DiskFile};
use crate::record::{le_u32, le_u64};

use super::{invalid_input, ChangeRef, Loc, READ_CHUNK, SNAPSHOT_RECORD_BYTES, WRITE_BATCH};

pub(super) const MAGIC: &[u8; 7] = b"WARRDEF";
pub(super) const FORMAT_VERSION: u8 = 1;
/// `magic(7) | version(1) | u64 generation | u32 crc32 of the 16 bytes
/// before it`.
pub(super) const HEADER_LEN: usize = 20;
/// `u32 payload_len | u32 crc32(payload)`.
pub(super) const RECORD_HEADER_LEN: usize = 8;
/// A batch of changes: `u8 kind | u32 count | count changes`.
pub(super) const KIND_CHANGES: u8 = 1;
/// The end of a file's compacted part: `u8 kind | u64 generation | u64
/// entries`.
pub(super) const KIND_SNAPSHOT_END: u8 = 2;
pub(super) const CHANGES_HEADER_LEN: usize = 5;
pub(super) const SNAPSHOT_END_LEN: usize = 17;
/// The smallest valid payload (an empty batch). A zero-filled tail reads
/// as a record of length 0, which this refuses.
pub(super) const MIN_PAYLOAD_LEN: usize = CHANGES_HEADER_LEN;
/// `u8 op | u32 key_len | key | u32 value_len | value`.
pub(super) const OP_PUT: u8 = 1;
/// `u8 op | u32 key_len | key`.
pub(super) const OP_DELETE: u8 = 2;
pub(super) const PUT_OVERHEAD: u64 = 9;
pub(super) const DELETE_OVERHEAD: u64 = 5;

pub(super) const NAME_PREFIX: &str = "defs.";
pub(super) const LOG_SUFFIX: &str = ".log";
pub(super) const TMP_SUFFIX: &str = ".tmp";

/// The encoded size of a live entry: what it takes in a batch.
pub(super) fn entry_size(key_len: usize, value_len: u32) -> u64 {
    PUT_OVERHEAD + key_len as u64 + u64::from(value_len)
}

/// The payload length of the record of `changes`, if it fits one.
pub(super) fn changes_payload_len(changes: &[ChangeRef<'_>]) -> Result<u32, StoreError> {
    u32::try_from(changes.len()).map_err(|_| invalid_input("too many changes in one batch"))?;
    let mut len = CHANGES_HEADER_LEN as u64;
    for change in changes {
        len += match *change {
            ChangeRef::Put(key, value) => PUT_OVERHEAD + key.len() as u64 + value.len() as u64,
            ChangeRef::Delete(key) => DELETE_OVERHEAD + key.len() as u64,
        };
    }
    // Every length inside is at most the payload's, so they fit too.
    u32::try_from(len).map_err(|_| invalid_input("batch of definitions too large for a record"))
}

/// Appends the record of `changes` (payload length already checked) to
/// `buf`.
pub(super) fn encode_changes(buf: &mut Vec<u8>, changes: &[ChangeRef<'_>], payload_len: u32) {
    let start = buf.len();
    buf.reserve(RECORD_HEADER_LEN + payload_len as usize);
    buf.extend_from_slice(&payload_len.to_le_bytes());
    buf.extend_from_slice(&[0; 4]); // crc, filled in below
    buf.push(KIND_CHANGES);
    buf.extend_from_slice(&(changes.len() as u32).to_le_bytes());
    for change in changes {
        match *change {
            ChangeRef::Put(key, value) => {
                buf.push(OP_PUT);
                buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
                buf.extend_from_slice(key);
                buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
                buf.extend_from_slice(value);
            }
            ChangeRef::Delete(key) => {
                buf.push(OP_DELETE);
                buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
                buf.extend_from_slice(key);
            }
        }
    }
    seal_record(buf, start);
}

/// Fills in the length and checksum of the record that starts at `start`
/// and runs to the end of `buf`.
pub(super) fn seal_record(buf: &mut [u8], start: usize) {
    let payload = &buf[start + RECORD_HEADER_LEN..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

pub(super) fn log_name(generation: u64) -> String {
    format!("{NAME_PREFIX}{generation:010}{LOG_SUFFIX}")
}

pub(super) fn tmp_name(generation: u64) -> String {
    format!("{}{TMP_SUFFIX}", log_name(generation))
}

/// The generation of a log file name, `None` for any other name.
pub(super) fn parse_log_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(NAME_PREFIX)?.strip_suffix(LOG_SUFFIX)?;
    if digits.len() < 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(super) fn is_tmp_name(name: &str) -> bool {
    name.strip_suffix(TMP_SUFFIX)
        .and_then(parse_log_name)
        .is_some()
}

pub(super) fn file_header(generation: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..7].copy_from_slice(MAGIC);
    h[7] = FORMAT_VERSION;
    h[8..16].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&h[..16]);
    h[16..].copy_from_slice(&crc.to_le_bytes());
    h
}

pub(super) fn check_file_header(h: &[u8; HEADER_LEN], generation: u64) -> Result<(), String> {
    if &h[..7] != MAGIC {
        return Err("not a definitions log (bad magic)".into());
    }
    if h[7] != FORMAT_VERSION {
        return Err(format!("unknown definitions log format version {}", h[7]));
    }
    if crc32fast::hash(&h[..16]) != le_u32(&h[16..]) {
        return Err("header checksum mismatch".into());
    }
    let named = le_u64(&h[8..16]);
    if named != generation {
        return Err(format!("header names generation {named}"));
    }
    Ok(())
}

/// A record's payload, parsed. Ranges are into the payload.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Parsed {
    Changes(Vec<(Range<usize>, Option<Range<usize>>)>),
    SnapshotEnd { generation: u64, entries: u64 },
}

/// Parses a payload whose checksum matched. Every range returned fits in
/// the payload.
pub(super) fn parse_payload(p: &[u8]) -> Result<Parsed, &'static str> {
    let mut at = 0usize;
    let mut take = |n: usize, what: &'static str| -> Result<Range<usize>, &'static str> {
        let end = at
            .checked_add(n)
            .filter(|&end| end <= p.len())
            .ok_or(what)?;
        let r = at..end;
        at = end;
        Ok(r)
    };
    let kind = p[take(1, "empty payload")?.start];
    match kind {
        KIND_CHANGES => {
            let count = le_u32(&p[take(4, "change count")?]) as usize;
            let mut changes = Vec::with_capacity(count.min(p.len() / DELETE_OVERHEAD as usize));
            for _ in 0..count {
                let op = p[take(1, "change kind")?.start];
                let key_len = le_u32(&p[take(4, "key length")?]) as usize;
                let key = take(key_len, "key")?;
                match op {
                    OP_PUT => {
                        let value_len = le_u32(&p[take(4, "value length")?]) as usize;
                        changes.push((key, Some(take(value_len, "value")?)));
                    }
                    OP_DELETE => changes.push((key, None)),
                    _ => return Err("unknown change kind"),
                }
            }
            if at != p.len() {
                return Err("trailing bytes");
            }
            Ok(Parsed::Changes(changes))
        }
        KIND_SNAPSHOT_END => {
            if p.len() != SNAPSHOT_END_LEN {
                return Err("end-of-compaction record of the wrong length");
            }
            Ok(Parsed::SnapshotEnd {
                generation: le_u64(&p[1..9]),
                entries: le_u64(&p[9..17]),
            })
        }
        _ => Err("unknown record kind"),
    }
}

/// What recovery found in a log file.
pub(super) struct Recovered {
    /// The live entries: where each value is, and the value.
    pub(super) entries: BTreeMap<Box<[u8]>, (Loc, Vec<u8>)>,
    /// End of the valid records (the file is cut there).
    pub(super) end: u64,
}

/// Reads log file `name` (of `generation`) back. The compacted part, up to
/// its end-of-compaction record, was synced before the file got its name:
/// any damage there is corruption. After it, a record that cannot be read
/// is a torn write if nothing valid follows it, and the file is cut there;
/// if a valid record follows, the damage is in the middle and is an error.
pub(super) fn recover(
    file: &dyn DiskFile,
    generation: u64,
    name: &str,
) -> Result<Recovered, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt(format!("{name}: {what}"));
    let len = file.len();
    if len < HEADER_LEN as u64 {
        return Err(corrupt(format!("{len} bytes, shorter than a header")));
    }
    let mut header = [0u8; HEADER_LEN];
    read_exact_at(file, 0, &mut header)?;
    check_file_header(&header, generation).map_err(corrupt)?;

    let mut scan = Scanner::new(file, len);
    let mut entries: BTreeMap<Box<[u8]>, (Loc, Vec<u8>)> = BTreeMap::new();
    let mut sealed = false;
    let mut offset = HEADER_LEN as u64;
    loop {
        let problem = match scan.frame(offset)? {
            Frame::End => break,
            Frame::Framed { next, crc_ok: true } => {
                let payload = scan.slice(offset + RECORD_HEADER_LEN as u64, next);
                let parsed = parse_payload(payload).map_err(|why| {
                    corrupt(format!("malformed record at offset {offset}: {why}"))
                })?;
                match parsed {
                    Parsed::Changes(changes) => {
                        let base = offset + RECORD_HEADER_LEN as u64;
                        for (key, value) in changes {
                            let key = &payload[key];
                            match value {
                                Some(range) => {
                                    let value = &payload[range.clone()];
                                    let loc = Loc {
                                        offset: base + range.start as u64,
                                        len: value.len() as u32,
                                        crc: crc32fast::hash(value),
                                    };
                                    match entries.get_mut(key) {
                                        Some(slot) => *slot = (loc, value.to_vec()),
                                        None => {
                                            entries.insert(key.into(), (loc, value.to_vec()));
                                        }
                                    }
                                }
                                None => {
                                    entries.remove(key);
                                }
                            }
                        }
                    }
                    Parsed::SnapshotEnd {
                        generation: g,
                        entries: n,
                    } => {
                        if sealed {
                            return Err(corrupt(format!(
                                "a second end-of-compaction record at offset {offset}"
                            )));
                        }
                        if g != generation || n != entries.len() as u64 {
                            return Err(corrupt(format!(
                                "end-of-compaction record at offset {offset} says generation {g} with {n} entries, found {} entries",
                                entries.len()
                            )));
                        }
                        sealed = true;
                    }
                }
                offset = next;
                continue;
            }
            Frame::Framed {
                next,
                crc_ok: false,
            } => {
                if sealed && scan.valid_record_at(next)? {
                    return Err(corrupt(format!(
                        "the record at offset {offset} fails its checksum but valid records follow it"
                    )));
                }
                "checksum mismatch"
            }
            Frame::Unframed(why) => why,
        };
        if !sealed {
            return Err(corrupt(format!(
                "damaged record at offset {offset}, inside the compacted part ({problem})"
            )));
        }
        warn!(
            file = name,
            offset,
            dropped_bytes = len - offset,
            problem,
            "torn record at the end of the definitions log; the log is cut there"
        );
        file.truncate(offset)?;
        file.sync()?;
        break;
    }
    if !sealed {
        return Err(corrupt("no end-of-compaction record".into()));
    }
    Ok(Recovered {
        entries,
        end: offset,
    })
}

/// What is at an offset of a log file.
pub(super) enum Frame {
    /// The end of the file.
    End,
    /// Not even a record's frame: too short, or running past the end.
    Unframed(&'static str),
    /// A complete record up to `next`, whose checksum matches or not.
    Framed { next: u64, crc_ok: bool },
}

/// Reads a log file front to back in large chunks.
pub(super) struct Scanner<'f> {
    pub(super) file: &'f dyn DiskFile,
    pub(super) len: u64,
    pub(super) start: u64,
    pub(super) chunk: Vec<u8>,
}

impl<'f> Scanner<'f> {
    pub(super) fn new(file: &'f dyn DiskFile, len: u64) -> Self {
        Scanner {
            file,
            len,
            start: 0,
            chunk: Vec::new(),
        }
    }

    /// Makes sure the chunk holds `[offset, offset + n)`, which must lie
    /// inside the file.
    pub(super) fn fill(&mut self, offset: u64, n: u64) -> io::Result<()> {
        let have = offset >= self.start && offset + n <= self.start + self.chunk.len() as u64;
        if have {
            return Ok(());
        }
        let want = n.max(READ_CHUNK as u64).min(self.len - offset);
        let want = usize::try_from(want).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, "record too large for memory")
        })?;
        self.chunk.clear();
        self.chunk.resize(want, 0);
        read_exact_at(self.file, offset, &mut self.chunk)?;
        self.start = offset;
        Ok(())
    }

    /// `[from, to)` of the file, which the chunk holds.
    pub(super) fn slice(&self, from: u64, to: u64) -> &[u8] {
        &self.chunk[(from - self.start) as usize..(to - self.start) as usize]
    }

    pub(super) fn frame(&mut self, offset: u64) -> io::Result<Frame> {
        if offset >= self.len {
            return Ok(Frame::End);
        }
        let available = self.len - offset;
        if available < RECORD_HEADER_LEN as u64 {
            return Ok(Frame::Unframed("truncated record header"));
        }
        self.fill(offset, RECORD_HEADER_LEN as u64)?;
        let header = self.slice(offset, offset + RECORD_HEADER_LEN as u64);
        let payload_len = le_u32(header);
        let crc = le_u32(&header[4..]);
        if (payload_len as usize) < MIN_PAYLOAD_LEN {
            return Ok(Frame::Unframed("record too short"));
        }
        let total = RECORD_HEADER_LEN as u64 + u64::from(payload_len);
        if total > available {
            return Ok(Frame::Unframed("record runs past the end of the file"));
        }
        self.fill(offset, total)?;
        let next = offset + total;
        let crc_ok = crc32fast::hash(self.slice(offset + RECORD_HEADER_LEN as u64, next)) == crc;
        Ok(Frame::Framed { next, crc_ok })
    }

    /// Whether a complete, valid record starts at `offset`.
    pub(super) fn valid_record_at(&mut self, offset: u64) -> io::Result<bool> {
        Ok(match self.frame(offset)? {
            Frame::Framed { next, crc_ok: true } => {
                parse_payload(self.slice(offset + RECORD_HEADER_LEN as u64, next)).is_ok()
            }
            _ => false,
        })
    }
}

/// Writes a new log file through a buffer.
pub(super) struct LogWriter {
    pub(super) file: Arc<dyn DiskFile>,
    /// Bytes appended to the file so far.
    pub(super) written: u64,
    pub(super) buf: Vec<u8>,
}

impl LogWriter {
    /// Starts `path` afresh (removing any leftover) with the header of
    /// `generation`, still in the buffer.
    pub(super) fn create(
        disk: &dyn Disk,
        path: &Path,
        generation: u64,
    ) -> Result<Self, StoreError> {
        match disk.remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let file = disk.open(path)?;
        if !file.is_empty() {
            file.truncate(0)?;
        }
        let mut buf = Vec::with_capacity(64 << 10);
        buf.extend_from_slice(&file_header(generation));
        Ok(LogWriter {
            file,
            written: 0,
            buf,
        })
    }

    /// The file's length once the buffer is written.
    pub(super) fn len(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    pub(super) fn flush(&mut self) -> Result<(), StoreError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let at = self.file.append(&self.buf)?;
        if at != self.written {
            return Err(StoreError::Corrupt(format!(
                "a new definitions log grew outside the store (append at {at}, expected {})",
                self.written
            )));
        }
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Writes `entries` (in key order), their values read from `old` and
    /// checked, packed into records of about [`SNAPSHOT_RECORD_BYTES`].
    /// Returns where each value now is.
    pub(super) fn snapshot(
        &mut self,
        old: &dyn DiskFile,
        entries: &[(Box<[u8]>, Loc)],
    ) -> Result<Vec<Loc>, StoreError> {
        let mut locs = Vec::with_capacity(entries.len());
        // The record being filled: its start in the buffer, and its count.
        let mut open: Option<(usize, u32)> = None;
        for (key, loc) in entries {
            let size = entry_size(key.len(), loc.len);
            if let Some((start, count)) = open {
                let filled = (self.buf.len() - start - RECORD_HEADER_LEN) as u64;
                if filled + size > SNAPSHOT_RECORD_BYTES {
                    self.close_batch(start, count);
                    open = None;
                    if self.buf.len() >= WRITE_BATCH {
                        self.flush()?;
                    }
                }
            }
            let (_, count) = open.get_or_insert_with(|| {
                let start = self.buf.len();
                self.buf.extend_from_slice(&[0; RECORD_HEADER_LEN]);
                self.buf.push(KIND_CHANGES);
                self.buf.extend_from_slice(&[0; 4]);
                (start, 0)
            });
            *count += 1;
            self.buf.push(OP_PUT);
            self.buf
                .extend_from_slice(&(key.len() as u32).to_le_bytes());
            self.buf.extend_from_slice(key);
            self.buf.extend_from_slice(&loc.len.to_le_bytes());
            let at = self.buf.len();
            let offset = self.len();
            self.buf.resize(at + loc.len as usize, 0);
            read_exact_at(old, loc.offset, &mut self.buf[at..])?;
            if crc32fast::hash(&self.buf[at..]) != loc.crc {
                return Err(StoreError::Corrupt(format!(
                    "the value at offset {} of the definitions log changed on disk",
                    loc.offset
                )));
            }
            locs.push(Loc { offset, ..*loc });
        }
        if let Some((start, count)) = open {
            self.close_batch(start, count);
        }
        Ok(locs)
    }

    /// Fills in the count, length and checksum of the batch at `start`.
    pub(super) fn close_batch(&mut self, start: usize, count: u32) {
        let at = start + RECORD_HEADER_LEN + 1;
        self.buf[at..at + 4].copy_from_slice(&count.to_le_bytes());
        seal_record(&mut self.buf, start);
    }

    /// Appends the end-of-compaction record.
    pub(super) fn snapshot_end(&mut self, generation: u64, entries: u64) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; RECORD_HEADER_LEN]);
        self.buf.push(KIND_SNAPSHOT_END);
        self.buf.extend_from_slice(&generation.to_le_bytes());
        self.buf.extend_from_slice(&entries.to_le_bytes());
        seal_record(&mut self.buf, start);
    }

    /// Copies `[from, to)` of `src` to the end of the file, written.
    pub(super) fn copy_from(
        &mut self,
        src: &dyn DiskFile,
        from: u64,
        to: u64,
    ) -> Result<(), StoreError> {
        self.flush()?;
        let mut at = from;
        while at < to {
            let n = (to - at).min(WRITE_BATCH as u64) as usize;
            self.buf.resize(n, 0);
            read_exact_at(src, at, &mut self.buf)?;
            self.flush()?;
            at += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(log_name(7), "defs.0000000007.log");
        assert_eq!(tmp_name(7), "defs.0000000007.log.tmp");
        assert_eq!(parse_log_name("defs.0000000007.log"), Some(7));
        assert_eq!(parse_log_name("defs.12345678901.log"), Some(12_345_678_901));
        assert_eq!(parse_log_name("defs.7.log"), None);
        assert_eq!(parse_log_name("defs.0000000007.log.tmp"), None);
        assert_eq!(parse_log_name("defs.000000000x.log"), None);
        assert!(is_tmp_name("defs.0000000007.log.tmp"));
        assert!(!is_tmp_name("defs.0000000007.log"));
        assert!(!is_tmp_name("other.tmp"));
    }

    #[test]
    fn header_checks() {
        let h = file_header(3);
        assert_eq!(check_file_header(&h, 3), Ok(()));
        assert!(check_file_header(&h, 4).is_err());
        let mut bad = h;
        bad[0] = b'X';
        assert!(check_file_header(&bad, 3).unwrap_err().contains("magic"));
        let mut v2 = h;
        v2[7] = 2;
        assert!(check_file_header(&v2, 3).unwrap_err().contains("version 2"));
        let mut flipped = h;
        flipped[9] ^= 1;
        assert!(check_file_header(&flipped, 3)
            .unwrap_err()
            .contains("checksum"));
    }

    #[test]
    fn batch_record_round_trip() {
        let changes = [
            ChangeRef::Put(b"k1", b"value one"),
            ChangeRef::Delete(b"k0"),
            ChangeRef::Put(b"", b""),
        ];
        let len = changes_payload_len(&changes).unwrap();
        let mut buf = Vec::new();
        encode_changes(&mut buf, &changes, len);
        assert_eq!(buf.len(), RECORD_HEADER_LEN + len as usize);
        assert_eq!(le_u32(&buf), len);
        assert_eq!(le_u32(&buf[4..]), crc32fast::hash(&buf[8..]));
        let p = &buf[8..];
        let Parsed::Changes(parsed) = parse_payload(p).unwrap() else {
            panic!("not a batch");
        };
        let got: Vec<(&[u8], Option<&[u8]>)> = parsed
            .into_iter()
            .map(|(k, v)| (&p[k], v.map(|v| &p[v])))
            .collect();
        assert_eq!(
            got,
            vec![
                (&b"k1"[..], Some(&b"value one"[..])),
                (&b"k0"[..], None),
                (&b""[..], Some(&b""[..])),
            ]
        );
        // Any cut is refused by the layout checks.
        for cut in 0..p.len() {
            assert!(parse_payload(&p[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = p.to_vec();
        longer.push(0);
        assert_eq!(parse_payload(&longer), Err("trailing bytes"));
    }

    #[test]
    fn snapshot_end_round_trip() {
        let disk = crate::SimDisk::new();
        disk.create_dir_all(Path::new("/d")).unwrap();
        let mut w = LogWriter::create(&disk, Path::new("/d/f"), 9).unwrap();
        w.buf.clear();
        w.snapshot_end(9, 1234);
        assert_eq!(
            parse_payload(&w.buf[8..]),
            Ok(Parsed::SnapshotEnd {
                generation: 9,
                entries: 1234
            })
        );
        assert_eq!(parse_payload(&[9]), Err("unknown record kind"));
    }
}
