//! Primitive readers and writers for AMQP's domain types, including the
//! packing of consecutive `bit` fields into octets.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{DecodeError, FieldTable};

/// Reads AMQP primitives from a byte slice. Never panics: every read checks
/// the remaining length first.
pub struct Reader<'a> {
    buf: &'a [u8],
    bits: u8,
    bit_pos: u8,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            bits: 0,
            bit_pos: 8,
        }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Takes `n` raw bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        self.bit_pos = 8;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>("octet")?[0])
    }
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array("short")?))
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array("long")?))
    }
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array("longlong")?))
    }
    pub fn i8(&mut self) -> Result<i8, DecodeError> {
        Ok(self.u8()? as i8)
    }
    pub fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(self.u16()? as i16)
    }
    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(self.u32()? as i32)
    }
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(self.u64()? as i64)
    }
    pub fn f32(&mut self) -> Result<f32, DecodeError> {
        Ok(f32::from_bits(self.u32()?))
    }
    pub fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// Reads one `bit` field; consecutive bits share an octet.
    pub fn bit(&mut self) -> Result<bool, DecodeError> {
        if self.bit_pos >= 8 {
            let [b] = self.array::<1>("bit")?;
            self.bits = b;
            self.bit_pos = 0;
        }
        let v = self.bits & (1 << self.bit_pos) != 0;
        self.bit_pos += 1;
        Ok(v)
    }

    /// A `shortstr`: one length octet, then that many bytes. Invalid UTF-8 is
    /// replaced rather than rejected, as RabbitMQ accepts arbitrary bytes.
    pub fn short_str(&mut self) -> Result<String, DecodeError> {
        let bytes = self.short_bytes()?;
        // Valid UTF-8 (nearly always ASCII) takes the fast check.
        Ok(match std::str::from_utf8(bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
        })
    }

    /// A `shortstr`'s bytes, borrowed from the input.
    pub fn short_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u8()? as usize;
        self.take(len, "shortstr")
    }

    /// A `longstr`: a 32-bit length, then that many bytes.
    pub fn long_str(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u32()? as usize;
        if len > self.buf.len() {
            return Err(DecodeError::BadLength("longstr"));
        }
        Ok(Bytes::copy_from_slice(self.take(len, "longstr")?))
    }

    pub fn table(&mut self) -> Result<FieldTable, DecodeError> {
        FieldTable::decode(self, 0)
    }
}

/// Appends AMQP primitives to a [`BytesMut`].
pub struct Writer<'a> {
    buf: &'a mut BytesMut,
    bit_index: Option<usize>,
    bit_pos: u8,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut BytesMut) -> Self {
        Writer {
            buf,
            bit_index: None,
            bit_pos: 0,
        }
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.bit_index = None;
        self.buf.put_slice(b);
    }
    pub fn u8(&mut self, v: u8) {
        self.bit_index = None;
        self.buf.put_u8(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.bit_index = None;
        self.buf.put_u16(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.bit_index = None;
        self.buf.put_u32(v);
    }
    pub fn u64(&mut self, v: u64) {
        self.bit_index = None;
        self.buf.put_u64(v);
    }

    /// Writes one `bit` field, packing it with the bits written just before.
    pub fn bit(&mut self, v: bool) {
        let idx = match self.bit_index {
            Some(idx) if self.bit_pos < 8 => idx,
            _ => {
                self.buf.put_u8(0);
                self.bit_pos = 0;
                let idx = self.buf.len() - 1;
                self.bit_index = Some(idx);
                idx
            }
        };
        if v {
            self.buf[idx] |= 1 << self.bit_pos;
        }
        self.bit_pos += 1;
    }

    /// Writes a `shortstr`, truncated to 255 bytes at a character boundary.
    pub fn short_str(&mut self, s: &str) {
        let mut len = s.len().min(255);
        while !s.is_char_boundary(len) {
            len -= 1;
        }
        self.u8(len as u8);
        self.bytes(&s.as_bytes()[..len]);
    }

    pub fn long_str(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.bytes(b);
    }

    pub fn table(&mut self, t: &FieldTable) {
        self.bit_index = None;
        t.encode(self.buf);
    }
}
