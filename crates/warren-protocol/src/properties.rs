//! The properties of class `basic` carried in a content header.

use bytes::BytesMut;

use crate::{DecodeError, FieldTable, Reader, Writer};

/// Message properties (AMQP 0-9-1 class `basic`). Absent properties are `None`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicProperties {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub headers: Option<FieldTable>,
    pub delivery_mode: Option<u8>,
    pub priority: Option<u8>,
    pub correlation_id: Option<String>,
    pub reply_to: Option<String>,
    pub expiration: Option<String>,
    pub message_id: Option<String>,
    pub timestamp: Option<u64>,
    pub kind: Option<String>,
    pub user_id: Option<String>,
    pub app_id: Option<String>,
    pub cluster_id: Option<String>,
}

const CONTENT_TYPE: u16 = 1 << 15;
const CONTENT_ENCODING: u16 = 1 << 14;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const PRIORITY: u16 = 1 << 11;
const CORRELATION_ID: u16 = 1 << 10;
const REPLY_TO: u16 = 1 << 9;
const EXPIRATION: u16 = 1 << 8;
const MESSAGE_ID: u16 = 1 << 7;
const TIMESTAMP: u16 = 1 << 6;
const TYPE: u16 = 1 << 5;
const USER_ID: u16 = 1 << 4;
const APP_ID: u16 = 1 << 3;
const CLUSTER_ID: u16 = 1 << 2;
const CONTINUATION: u16 = 1;

/// The properties of a content header read in place: strings borrow from
/// the header, and nothing is allocated unless it carries a headers table.
/// The broker reads every published message's properties this way; it
/// needs few of them and forwards the header verbatim.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PropertiesRef<'a> {
    pub content_type: Option<&'a [u8]>,
    pub content_encoding: Option<&'a [u8]>,
    pub headers: Option<FieldTable>,
    pub delivery_mode: Option<u8>,
    pub priority: Option<u8>,
    pub correlation_id: Option<&'a [u8]>,
    pub reply_to: Option<&'a [u8]>,
    pub expiration: Option<&'a [u8]>,
    pub message_id: Option<&'a [u8]>,
    pub timestamp: Option<u64>,
    pub kind: Option<&'a [u8]>,
    pub user_id: Option<&'a [u8]>,
    pub app_id: Option<&'a [u8]>,
    pub cluster_id: Option<&'a [u8]>,
}

/// Reads a property if its flag is set.
fn opt<'a, T>(
    r: &mut Reader<'a>,
    present: bool,
    read: impl FnOnce(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    if present {
        read(r).map(Some)
    } else {
        Ok(None)
    }
}

impl<'a> PropertiesRef<'a> {
    /// Reads (and so validates) the property flags and property list of a
    /// content header.
    pub fn decode(raw: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(raw);
        let flags = r.u16()?;
        let mut more = flags & CONTINUATION != 0;
        while more {
            let extra = r.u16()?;
            if extra & !CONTINUATION != 0 {
                return Err(DecodeError::BadLength("property flags"));
            }
            more = extra & CONTINUATION != 0;
        }
        let has = |bit: u16| flags & bit != 0;
        let props = PropertiesRef {
            content_type: opt(&mut r, has(CONTENT_TYPE), Reader::short_bytes)?,
            content_encoding: opt(&mut r, has(CONTENT_ENCODING), Reader::short_bytes)?,
            headers: opt(&mut r, has(HEADERS), Reader::table)?,
            delivery_mode: opt(&mut r, has(DELIVERY_MODE), Reader::u8)?,
            priority: opt(&mut r, has(PRIORITY), Reader::u8)?,
            correlation_id: opt(&mut r, has(CORRELATION_ID), Reader::short_bytes)?,
            reply_to: opt(&mut r, has(REPLY_TO), Reader::short_bytes)?,
            expiration: opt(&mut r, has(EXPIRATION), Reader::short_bytes)?,
            message_id: opt(&mut r, has(MESSAGE_ID), Reader::short_bytes)?,
            timestamp: opt(&mut r, has(TIMESTAMP), Reader::u64)?,
            kind: opt(&mut r, has(TYPE), Reader::short_bytes)?,
            user_id: opt(&mut r, has(USER_ID), Reader::short_bytes)?,
            app_id: opt(&mut r, has(APP_ID), Reader::short_bytes)?,
            cluster_id: opt(&mut r, has(CLUSTER_ID), Reader::short_bytes)?,
        };
        if !r.is_empty() {
            return Err(DecodeError::Trailing("content header"));
        }
        Ok(props)
    }

    /// Whether the message asks to be persisted (delivery mode 2).
    pub fn is_persistent(&self) -> bool {
        self.delivery_mode == Some(2)
    }

    /// The owned form; invalid UTF-8 in strings is replaced.
    pub fn into_owned(self) -> BasicProperties {
        let s = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
        BasicProperties {
            content_type: s(self.content_type),
            content_encoding: s(self.content_encoding),
            headers: self.headers,
            delivery_mode: self.delivery_mode,
            priority: self.priority,
            correlation_id: s(self.correlation_id),
            reply_to: s(self.reply_to),
            expiration: s(self.expiration),
            message_id: s(self.message_id),
            timestamp: self.timestamp,
            kind: s(self.kind),
            user_id: s(self.user_id),
            app_id: s(self.app_id),
            cluster_id: s(self.cluster_id),
        }
    }
}

impl BasicProperties {
    /// Decodes the property flags and property list of a content header.
    pub fn decode(raw: &[u8]) -> Result<Self, DecodeError> {
        PropertiesRef::decode(raw).map(PropertiesRef::into_owned)
    }

    /// Appends the property flags and property list.
    pub fn encode(&self, buf: &mut BytesMut) {
        let mut flags = 0u16;
        let mut set = |present: bool, bit: u16| {
            if present {
                flags |= bit
            }
        };
        set(self.content_type.is_some(), CONTENT_TYPE);
        set(self.content_encoding.is_some(), CONTENT_ENCODING);
        set(self.headers.is_some(), HEADERS);
        set(self.delivery_mode.is_some(), DELIVERY_MODE);
        set(self.priority.is_some(), PRIORITY);
        set(self.correlation_id.is_some(), CORRELATION_ID);
        set(self.reply_to.is_some(), REPLY_TO);
        set(self.expiration.is_some(), EXPIRATION);
        set(self.message_id.is_some(), MESSAGE_ID);
        set(self.timestamp.is_some(), TIMESTAMP);
        set(self.kind.is_some(), TYPE);
        set(self.user_id.is_some(), USER_ID);
        set(self.app_id.is_some(), APP_ID);
        set(self.cluster_id.is_some(), CLUSTER_ID);
        let mut w = Writer::new(buf);
        w.u16(flags);
        let strs = [&self.content_type, &self.content_encoding];
        for v in strs.into_iter().flatten() {
            w.short_str(v);
        }
        if let Some(h) = &self.headers {
            w.table(h);
        }
        if let Some(v) = self.delivery_mode {
            w.u8(v);
        }
        if let Some(v) = self.priority {
            w.u8(v);
        }
        let strs = [
            &self.correlation_id,
            &self.reply_to,
            &self.expiration,
            &self.message_id,
        ];
        for v in strs.into_iter().flatten() {
            w.short_str(v);
        }
        if let Some(v) = self.timestamp {
            w.u64(v);
        }
        let strs = [&self.kind, &self.user_id, &self.app_id, &self.cluster_id];
        for v in strs.into_iter().flatten() {
            w.short_str(v);
        }
    }

    /// Whether the message asks to be persisted (delivery mode 2).
    pub fn is_persistent(&self) -> bool {
        self.delivery_mode == Some(2)
    }
}
