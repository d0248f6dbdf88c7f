//! Decode errors and the reply code each one maps to.

use crate::ReplyCode;

/// Why a byte sequence could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload ended before the value did.
    #[error("unexpected end of data while decoding {0}")]
    Truncated(&'static str),
    /// A field-table value had a type tag this codec does not know.
    #[error("unknown field table value type '{0}'")]
    UnknownFieldType(char),
    /// Field tables nested deeper than [`crate::MAX_TABLE_DEPTH`].
    #[error("field table nesting too deep")]
    TooDeep,
    /// A length prefix pointed past the end of its container.
    #[error("invalid length for {0}")]
    BadLength(&'static str),
    /// A class/method pair that AMQP 0-9-1 does not define.
    #[error("unknown method {class_id}/{method_id}")]
    UnknownMethod { class_id: u16, method_id: u16 },
    /// Bytes left over after the last field of a method or header.
    #[error("trailing bytes after {0}")]
    Trailing(&'static str),
}

impl DecodeError {
    /// The reply code for this error, as RabbitMQ sends it: unknown methods
    /// are `command-invalid` (503); a method or header that cannot be
    /// decoded is a `frame-error` (501). Both close the connection.
    pub fn reply_code(&self) -> ReplyCode {
        match self {
            DecodeError::UnknownMethod { .. } => ReplyCode::CommandInvalid,
            _ => ReplyCode::FrameError,
        }
    }
}
