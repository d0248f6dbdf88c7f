//! The byte layout of everything the store writes: file headers, message
//! records (in segments) and ack records (in the ack log).
//!
//! All integers are little-endian. `docs/storage-format.md` describes the
//! same layout for readers of the files.

use std::ops::Range;

use warren_core::Message;

/// Length of the header at the start of every segment and ack log: a
/// 7-byte magic and a 1-byte format version.
pub(crate) const FILE_HEADER_LEN: usize = 8;
pub(crate) const SEGMENT_MAGIC: &[u8; 7] = b"WARRSEG";
pub(crate) const ACK_LOG_MAGIC: &[u8; 7] = b"WARRACK";
/// Version 2 added the message deadline (flag bit 1); version 1 files are
/// still read.
pub(crate) const FORMAT_VERSION: u8 = 2;
const FORMAT_VERSION_1: u8 = 1;

/// `u32 payload_len | u32 crc32(payload)` before each message payload.
pub(crate) const RECORD_HEADER_LEN: usize = 8;
/// The payload of a message with empty exchange, routing key, properties
/// and body.
pub(crate) const MIN_PAYLOAD_LEN: usize = 8 + 1 + 1 + 1 + 4 + 8;
const FLAG_PERSISTENT: u8 = 1;
/// A `u64` deadline (ms since the Unix epoch) follows the flags.
const FLAG_EXPIRES: u8 = 2;

/// `u8 kind | u64 seq | u64 seq2 | u32 crc32` in the ack log.
pub(crate) const ACK_RECORD_LEN: usize = 21;
const ACK_KIND_ACK: u8 = 1;
const ACK_KIND_DELIVERED: u8 = 2;
const ACK_KIND_RANGE: u8 = 3;
const ACK_KIND_RETURNED: u8 = 4;

/// A record that cannot be written or read back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("{0} too long for a record")]
    TooLong(&'static str),
    #[error("malformed record: {0}")]
    Malformed(&'static str),
    #[error("record checksum mismatch")]
    Checksum,
}

/// What a file header says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderCheck {
    Valid,
    /// Too short, or not our magic.
    BadMagic,
    /// Our magic, a version this code does not know.
    UnknownVersion(u8),
}

pub(crate) fn file_header(magic: &[u8; 7]) -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[..7].copy_from_slice(magic);
    h[7] = FORMAT_VERSION;
    h
}

pub(crate) fn check_file_header(bytes: &[u8], magic: &[u8; 7]) -> HeaderCheck {
    if bytes.len() < FILE_HEADER_LEN || &bytes[..7] != magic {
        return HeaderCheck::BadMagic;
    }
    match bytes[7] {
        FORMAT_VERSION | FORMAT_VERSION_1 => HeaderCheck::Valid,
        v => HeaderCheck::UnknownVersion(v),
    }
}

/// How a message is stored besides its content.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stored {
    /// Its deadline, if it has one.
    pub expires_at: Option<u64>,
    /// Kept across a restart: a persistent message, or any message of a
    /// store that keeps them all.
    pub persistent: bool,
}

/// Checks that `msg` fits the record format (with a deadline field if
/// `expires`), returning its payload length.
pub(crate) fn check_encodable(msg: &Message, expires: bool) -> Result<u32, RecordError> {
    u8::try_from(msg.exchange.len()).map_err(|_| RecordError::TooLong("exchange name"))?;
    u8::try_from(msg.routing_key.len()).map_err(|_| RecordError::TooLong("routing key"))?;
    u32::try_from(msg.properties.len()).map_err(|_| RecordError::TooLong("properties"))?;
    let payload_len = MIN_PAYLOAD_LEN
        + if expires { 8 } else { 0 }
        + msg.exchange.len()
        + msg.routing_key.len()
        + msg.properties.len()
        + msg.body.len();
    u32::try_from(payload_len).map_err(|_| RecordError::TooLong("message"))
}

/// Appends the record of message `seq` (header and payload) to `buf`.
pub(crate) fn encode_message(
    buf: &mut Vec<u8>,
    seq: u64,
    msg: &Message,
    stored: Stored,
) -> Result<(), RecordError> {
    let Stored {
        expires_at,
        persistent,
    } = stored;
    let exchange = msg.exchange.as_bytes();
    let routing_key = msg.routing_key.as_bytes();
    let payload_len = check_encodable(msg, expires_at.is_some())?;
    // Checked above.
    let (exchange_len, routing_key_len) = (exchange.len() as u8, routing_key.len() as u8);
    let properties_len = msg.properties.len() as u32;

    let start = buf.len();
    buf.reserve(RECORD_HEADER_LEN + payload_len as usize);
    buf.extend_from_slice(&payload_len.to_le_bytes());
    buf.extend_from_slice(&[0; 4]); // crc, filled in below
    buf.extend_from_slice(&seq.to_le_bytes());
    let mut flags = if persistent { FLAG_PERSISTENT } else { 0 };
    if expires_at.is_some() {
        flags |= FLAG_EXPIRES;
    }
    buf.push(flags);
    if let Some(at) = expires_at {
        buf.extend_from_slice(&at.to_le_bytes());
    }
    buf.push(exchange_len);
    buf.extend_from_slice(exchange);
    buf.push(routing_key_len);
    buf.extend_from_slice(routing_key);
    buf.extend_from_slice(&properties_len.to_le_bytes());
    buf.extend_from_slice(&msg.properties);
    buf.extend_from_slice(&(msg.body.len() as u64).to_le_bytes());
    buf.extend_from_slice(&msg.body);
    let crc = crc32fast::hash(&buf[start + RECORD_HEADER_LEN..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The `payload_len` and `crc32` of a record header.
pub(crate) fn decode_record_header(header: &[u8; RECORD_HEADER_LEN]) -> (u32, u32) {
    let [a, b, c, d, e, f, g, h] = *header;
    (
        u32::from_le_bytes([a, b, c, d]),
        u32::from_le_bytes([e, f, g, h]),
    )
}

/// Where the fields of a message payload are, as ranges of the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PayloadLayout {
    pub seq: u64,
    pub persistent: bool,
    pub expires_at: Option<u64>,
    pub exchange: Range<usize>,
    pub routing_key: Range<usize>,
    pub properties: Range<usize>,
    pub body: Range<usize>,
}

/// Checks a payload against its checksum and parses its layout. Every
/// length is checked against the payload, and the names must be UTF-8, so
/// a layout returned here can be sliced without panicking.
pub(crate) fn parse_payload(payload: &[u8], crc: u32) -> Result<PayloadLayout, RecordError> {
    if crc32fast::hash(payload) != crc {
        return Err(RecordError::Checksum);
    }
    let mut at = 0usize;
    let mut take = |n: usize, what: &'static str| -> Result<Range<usize>, RecordError> {
        let end = at
            .checked_add(n)
            .filter(|&end| end <= payload.len())
            .ok_or(RecordError::Malformed(what))?;
        let r = at..end;
        at = end;
        Ok(r)
    };
    let seq = le_u64(&payload[take(8, "seq")?]);
    let flags = payload[take(1, "flags")?.start];
    if flags & !(FLAG_PERSISTENT | FLAG_EXPIRES) != 0 {
        return Err(RecordError::Malformed("unknown flags"));
    }
    let expires_at = if flags & FLAG_EXPIRES != 0 {
        Some(le_u64(&payload[take(8, "deadline")?]))
    } else {
        None
    };
    let exchange_len = payload[take(1, "exchange length")?.start] as usize;
    let exchange = take(exchange_len, "exchange")?;
    let routing_key_len = payload[take(1, "routing key length")?.start] as usize;
    let routing_key = take(routing_key_len, "routing key")?;
    let properties_len = le_u32(&payload[take(4, "properties length")?.start..]) as usize;
    let properties = take(properties_len, "properties")?;
    let body_len = le_u64(&payload[take(8, "body length")?]);
    let body_len = usize::try_from(body_len).map_err(|_| RecordError::Malformed("body length"))?;
    let body = take(body_len, "body")?;
    if at != payload.len() {
        return Err(RecordError::Malformed("trailing bytes"));
    }
    if std::str::from_utf8(&payload[exchange.clone()]).is_err()
        || std::str::from_utf8(&payload[routing_key.clone()]).is_err()
    {
        return Err(RecordError::Malformed("name is not UTF-8"));
    }
    Ok(PayloadLayout {
        seq,
        persistent: flags & FLAG_PERSISTENT != 0,
        expires_at,
        exchange,
        routing_key,
        properties,
        body,
    })
}

pub(crate) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

pub(crate) fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// One entry of the ack log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckEntry {
    /// Message `seq` is settled.
    Ack(u64),
    /// Every message below this sequence number has been handed out.
    DeliveredUpTo(u64),
    /// Every message in `[from, to)` is settled (purge).
    Range(u64, u64),
    /// Message `seq` has been returned to the queue this many times after
    /// deliveries (a quorum queue's delivery count).
    Returned(u64, u64),
}

impl AckEntry {
    pub(crate) fn encode(self) -> [u8; ACK_RECORD_LEN] {
        let (kind, a, b) = match self {
            AckEntry::Ack(seq) => (ACK_KIND_ACK, seq, 0),
            AckEntry::DeliveredUpTo(seq) => (ACK_KIND_DELIVERED, seq, 0),
            AckEntry::Range(from, to) => (ACK_KIND_RANGE, from, to),
            AckEntry::Returned(seq, count) => (ACK_KIND_RETURNED, seq, count),
        };
        let mut r = [0u8; ACK_RECORD_LEN];
        r[0] = kind;
        r[1..9].copy_from_slice(&a.to_le_bytes());
        r[9..17].copy_from_slice(&b.to_le_bytes());
        let crc = crc32fast::hash(&r[..17]);
        r[17..].copy_from_slice(&crc.to_le_bytes());
        r
    }

    pub(crate) fn decode(r: &[u8; ACK_RECORD_LEN]) -> Result<AckEntry, RecordError> {
        if crc32fast::hash(&r[..17]) != le_u32(&r[17..]) {
            return Err(RecordError::Checksum);
        }
        let a = le_u64(&r[1..9]);
        let b = le_u64(&r[9..17]);
        match r[0] {
            ACK_KIND_ACK => Ok(AckEntry::Ack(a)),
            ACK_KIND_DELIVERED => Ok(AckEntry::DeliveredUpTo(a)),
            ACK_KIND_RANGE if a <= b => Ok(AckEntry::Range(a, b)),
            ACK_KIND_RANGE => Err(RecordError::Malformed("empty ack range")),
            ACK_KIND_RETURNED => Ok(AckEntry::Returned(a, b)),
            _ => Err(RecordError::Malformed("unknown ack record kind")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn stored(persistent: bool, expires_at: Option<u64>) -> Stored {
        Stored {
            expires_at,
            persistent,
        }
    }

    fn message(persistent: bool) -> Message {
        Message {
            exchange: "amq.direct".into(),
            routing_key: "key".into(),
            properties: Bytes::from_static(&[0x10, 0x00, 2]),
            persistent,
            headers: None,
            expiration: None,
            priority: 0,
            bcc: Vec::new(),
            body: Bytes::from_static(b"hello"),
            confirm: None,
        }
    }

    #[test]
    fn a_deadline_round_trips_and_version_1_records_still_read() {
        let mut buf = Vec::new();
        encode_message(
            &mut buf,
            3,
            &message(true),
            stored(true, Some(1_800_000_000_123)),
        )
        .unwrap();
        let (_, crc) = decode_record_header(buf[..8].try_into().unwrap());
        let layout = parse_payload(&buf[8..], crc).unwrap();
        assert_eq!(layout.expires_at, Some(1_800_000_000_123));
        assert_eq!(&buf[8..][layout.body], b"hello");
        // A record without a deadline is byte for byte a version 1 record,
        // and version 1 files are accepted.
        let mut v1 = Vec::new();
        encode_message(&mut v1, 3, &message(true), stored(true, None)).unwrap();
        assert_eq!(v1.len(), buf.len() - 8);
        let mut header = file_header(SEGMENT_MAGIC);
        header[7] = FORMAT_VERSION_1;
        assert_eq!(
            check_file_header(&header, SEGMENT_MAGIC),
            HeaderCheck::Valid
        );
        header[7] = 3;
        assert_eq!(
            check_file_header(&header, SEGMENT_MAGIC),
            HeaderCheck::UnknownVersion(3)
        );
    }

    #[test]
    fn message_record_round_trip() {
        let mut buf = Vec::new();
        encode_message(&mut buf, 42, &message(true), stored(true, None)).unwrap();
        let (len, crc) = decode_record_header(buf[..8].try_into().unwrap());
        assert_eq!(len as usize, buf.len() - 8);
        let payload = &buf[8..];
        let layout = parse_payload(payload, crc).unwrap();
        assert_eq!(layout.seq, 42);
        assert!(layout.persistent);
        assert_eq!(&payload[layout.exchange], b"amq.direct");
        assert_eq!(&payload[layout.routing_key], b"key");
        assert_eq!(&payload[layout.properties], &[0x10, 0x00, 2]);
        assert_eq!(&payload[layout.body], b"hello");
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let mut buf = Vec::new();
        encode_message(
            &mut buf,
            7,
            &message(false),
            stored(false, Some(1_700_000_000_000)),
        )
        .unwrap();
        let (_, crc) = decode_record_header(buf[..8].try_into().unwrap());
        for i in 8..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(parse_payload(&bad[8..], crc).is_err(), "byte {i}");
        }
    }

    #[test]
    fn zeroed_payload_is_rejected() {
        // A zero-filled tail reads as a record of length 0 with crc 0,
        // which the checksum alone would accept.
        assert!(parse_payload(&[], 0).is_err());
    }

    #[test]
    fn ack_records_round_trip_and_detect_damage() {
        for e in [
            AckEntry::Ack(5),
            AckEntry::DeliveredUpTo(9),
            AckEntry::Range(3, 77),
            AckEntry::Returned(4, 2),
        ] {
            let r = e.encode();
            assert_eq!(AckEntry::decode(&r).unwrap(), e);
            for i in 0..ACK_RECORD_LEN {
                let mut bad = r;
                bad[i] ^= 1;
                assert!(AckEntry::decode(&bad).is_err());
            }
        }
        assert!(AckEntry::decode(&[0; ACK_RECORD_LEN]).is_err());
    }

    #[test]
    fn oversized_names_are_refused() {
        let mut m = message(true);
        m.exchange = "x".repeat(256);
        assert!(encode_message(&mut Vec::new(), 0, &m, Stored::default()).is_err());
    }

    #[test]
    fn headers() {
        let h = file_header(SEGMENT_MAGIC);
        assert_eq!(check_file_header(&h, SEGMENT_MAGIC), HeaderCheck::Valid);
        assert_eq!(check_file_header(&h, ACK_LOG_MAGIC), HeaderCheck::BadMagic);
        assert_eq!(
            check_file_header(&h[..5], SEGMENT_MAGIC),
            HeaderCheck::BadMagic
        );
        let mut v3 = h;
        v3[7] = 3;
        assert_eq!(
            check_file_header(&v3, SEGMENT_MAGIC),
            HeaderCheck::UnknownVersion(3)
        );
    }
}
