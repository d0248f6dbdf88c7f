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

impl BasicProperties {
    /// Decodes the property flags and property list of a content header.
    pub fn decode(raw: &[u8]) -> Result<Self, DecodeError> {
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
        let s = |r: &mut Reader<'_>, bit: u16| -> Result<Option<String>, DecodeError> {
            if flags & bit != 0 {
                r.short_str().map(Some)
            } else {
                Ok(None)
            }
        };
        let props = BasicProperties {
            content_type: s(&mut r, CONTENT_TYPE)?,
            content_encoding: s(&mut r, CONTENT_ENCODING)?,
            headers: if flags & HEADERS != 0 {
                Some(r.table()?)
            } else {
                None
            },
            delivery_mode: if flags & DELIVERY_MODE != 0 {
                Some(r.u8()?)
            } else {
                None
            },
            priority: if flags & PRIORITY != 0 {
                Some(r.u8()?)
            } else {
                None
            },
            correlation_id: s(&mut r, CORRELATION_ID)?,
            reply_to: s(&mut r, REPLY_TO)?,
            expiration: s(&mut r, EXPIRATION)?,
            message_id: s(&mut r, MESSAGE_ID)?,
            timestamp: if flags & TIMESTAMP != 0 {
                Some(r.u64()?)
            } else {
                None
            },
            kind: s(&mut r, TYPE)?,
            user_id: s(&mut r, USER_ID)?,
            app_id: s(&mut r, APP_ID)?,
            cluster_id: s(&mut r, CLUSTER_ID)?,
        };
        if !r.is_empty() {
            return Err(DecodeError::Trailing("content header"));
        }
        Ok(props)
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
