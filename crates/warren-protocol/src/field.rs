//! Field tables and field values, with RabbitMQ's type tags (which differ from
//! the AMQP 0-9-1 errata for a few integer types; every client follows
//! RabbitMQ).

use bytes::{BufMut, Bytes, BytesMut};

use crate::{DecodeError, Reader};

/// Deepest nesting of tables and arrays accepted from the wire. Decoding
/// recurses once per level, so this bounds the stack that input can consume.
pub const MAX_TABLE_DEPTH: usize = 32;

/// One value of a field table or field array.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Bool(bool),
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    /// Tag 'L', which RabbitMQ reads and writes as an unsigned 64-bit value.
    U64(u64),
    F32(f32),
    F64(f64),
    Decimal {
        scale: u8,
        value: u32,
    },
    LongString(Bytes),
    Array(Vec<FieldValue>),
    Timestamp(u64),
    Table(FieldTable),
    Void,
    ByteArray(Bytes),
}

/// An ordered list of named field values (AMQP `table`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldTable(pub Vec<(String, FieldValue)>);

impl FieldTable {
    pub fn new() -> Self {
        FieldTable(Vec::new())
    }

    /// The value stored under `key`, if any (the first one if repeated).
    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key`, replacing an existing entry.
    pub fn insert(&mut self, key: impl Into<String>, value: FieldValue) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &FieldValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub(crate) fn decode(r: &mut Reader<'_>, depth: usize) -> Result<Self, DecodeError> {
        if depth > MAX_TABLE_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let len = r.u32()? as usize;
        if len > r.remaining() {
            return Err(DecodeError::BadLength("field table"));
        }
        let mut inner = Reader::new(r.take(len, "field table")?);
        let mut entries = Vec::new();
        while !inner.is_empty() {
            let key = inner.short_str()?;
            let value = FieldValue::decode(&mut inner, depth)?;
            entries.push((key, value));
        }
        Ok(FieldTable(entries))
    }

    /// Appends the table, with its 32-bit length prefix.
    pub fn encode(&self, buf: &mut BytesMut) {
        let start = buf.len();
        buf.put_u32(0);
        for (k, v) in &self.0 {
            crate::Writer::new(buf).short_str(k);
            v.encode(buf);
        }
        let len = (buf.len() - start - 4) as u32;
        buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

impl FromIterator<(String, FieldValue)> for FieldTable {
    fn from_iter<T: IntoIterator<Item = (String, FieldValue)>>(iter: T) -> Self {
        FieldTable(iter.into_iter().collect())
    }
}

impl FieldValue {
    fn decode(r: &mut Reader<'_>, depth: usize) -> Result<Self, DecodeError> {
        let tag = r.u8()?;
        Ok(match tag {
            b't' => FieldValue::Bool(r.u8()? != 0),
            b'b' => FieldValue::I8(r.i8()?),
            b'B' => FieldValue::U8(r.u8()?),
            b's' => FieldValue::I16(r.i16()?),
            b'u' => FieldValue::U16(r.u16()?),
            b'I' => FieldValue::I32(r.i32()?),
            b'i' => FieldValue::U32(r.u32()?),
            b'l' => FieldValue::I64(r.i64()?),
            b'L' => FieldValue::U64(r.u64()?),
            b'f' => FieldValue::F32(r.f32()?),
            b'd' => FieldValue::F64(r.f64()?),
            b'D' => FieldValue::Decimal {
                scale: r.u8()?,
                value: r.u32()?,
            },
            b'S' => FieldValue::LongString(r.long_str()?),
            b'x' => FieldValue::ByteArray(r.long_str()?),
            b'T' => FieldValue::Timestamp(r.u64()?),
            b'V' => FieldValue::Void,
            b'F' => FieldValue::Table(FieldTable::decode(r, depth + 1)?),
            b'A' => {
                if depth + 1 > MAX_TABLE_DEPTH {
                    return Err(DecodeError::TooDeep);
                }
                let len = r.u32()? as usize;
                if len > r.remaining() {
                    return Err(DecodeError::BadLength("field array"));
                }
                let mut inner = Reader::new(r.take(len, "field array")?);
                let mut values = Vec::new();
                while !inner.is_empty() {
                    values.push(FieldValue::decode(&mut inner, depth + 1)?);
                }
                FieldValue::Array(values)
            }
            other => return Err(DecodeError::UnknownFieldType(other as char)),
        })
    }

    /// Appends the type tag and the value.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            FieldValue::Bool(v) => {
                buf.put_u8(b't');
                buf.put_u8(*v as u8)
            }
            FieldValue::I8(v) => {
                buf.put_u8(b'b');
                buf.put_i8(*v)
            }
            FieldValue::U8(v) => {
                buf.put_u8(b'B');
                buf.put_u8(*v)
            }
            FieldValue::I16(v) => {
                buf.put_u8(b's');
                buf.put_i16(*v)
            }
            FieldValue::U16(v) => {
                buf.put_u8(b'u');
                buf.put_u16(*v)
            }
            FieldValue::I32(v) => {
                buf.put_u8(b'I');
                buf.put_i32(*v)
            }
            FieldValue::U32(v) => {
                buf.put_u8(b'i');
                buf.put_u32(*v)
            }
            FieldValue::I64(v) => {
                buf.put_u8(b'l');
                buf.put_i64(*v)
            }
            FieldValue::U64(v) => {
                buf.put_u8(b'L');
                buf.put_u64(*v)
            }
            FieldValue::F32(v) => {
                buf.put_u8(b'f');
                buf.put_f32(*v)
            }
            FieldValue::F64(v) => {
                buf.put_u8(b'd');
                buf.put_f64(*v)
            }
            FieldValue::Decimal { scale, value } => {
                buf.put_u8(b'D');
                buf.put_u8(*scale);
                buf.put_u32(*value)
            }
            FieldValue::LongString(b) => {
                buf.put_u8(b'S');
                buf.put_u32(b.len() as u32);
                buf.put_slice(b)
            }
            FieldValue::ByteArray(b) => {
                buf.put_u8(b'x');
                buf.put_u32(b.len() as u32);
                buf.put_slice(b)
            }
            FieldValue::Timestamp(v) => {
                buf.put_u8(b'T');
                buf.put_u64(*v)
            }
            FieldValue::Void => buf.put_u8(b'V'),
            FieldValue::Table(t) => {
                buf.put_u8(b'F');
                t.encode(buf)
            }
            FieldValue::Array(values) => {
                buf.put_u8(b'A');
                let start = buf.len();
                buf.put_u32(0);
                for v in values {
                    v.encode(buf);
                }
                let len = (buf.len() - start - 4) as u32;
                buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
            }
        }
    }

    /// The value as a signed integer, whatever its integer width.
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            FieldValue::I8(v) => v as i64,
            FieldValue::U8(v) => v as i64,
            FieldValue::I16(v) => v as i64,
            FieldValue::U16(v) => v as i64,
            FieldValue::I32(v) => v as i64,
            FieldValue::U32(v) => v as i64,
            FieldValue::I64(v) => v,
            FieldValue::U64(v) => i64::try_from(v).ok()?,
            FieldValue::Timestamp(v) => i64::try_from(v).ok()?,
            _ => return None,
        })
    }

    /// The value as bytes, for string-like values.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            FieldValue::LongString(b) | FieldValue::ByteArray(b) => Some(b),
            _ => None,
        }
    }

    /// The value as a boolean, accepting RabbitMQ's loose forms.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            FieldValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Equality as RabbitMQ's headers exchange sees it: integers compare by
    /// value whatever their width, everything else by type and value.
    pub fn loosely_equals(&self, other: &FieldValue) -> bool {
        match (self.as_i64(), other.as_i64()) {
            (Some(a), Some(b)) => a == b,
            _ => match (self.as_bytes(), other.as_bytes()) {
                (Some(a), Some(b)) => a == b,
                _ => self == other,
            },
        }
    }

    /// A human-readable rendering used in reply texts (`'true'`, `'42'`).
    pub fn display(&self) -> String {
        match self {
            FieldValue::Bool(b) => b.to_string(),
            FieldValue::LongString(b) | FieldValue::ByteArray(b) => {
                String::from_utf8_lossy(b).into_owned()
            }
            FieldValue::F32(v) => v.to_string(),
            FieldValue::F64(v) => v.to_string(),
            FieldValue::Void => "none".to_string(),
            other => match other.as_i64() {
                Some(i) => i.to_string(),
                None => format!("{other:?}"),
            },
        }
    }
}
