//! Protocol errors raised by the broker's domain logic.

use warren_protocol::ReplyCode;

/// An AMQP error: a reply code and the reply text RabbitMQ would send.
/// Whether it closes the channel or the connection follows from the code
/// ([`ReplyCode::is_connection_error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} - {text}", code.name())]
pub struct AmqpError {
    pub code: ReplyCode,
    pub text: String,
}

impl AmqpError {
    pub fn new(code: ReplyCode, text: impl Into<String>) -> Self {
        AmqpError {
            code,
            text: text.into(),
        }
    }

    /// The reply text as sent on the wire: `CODE_NAME - text`, as RabbitMQ
    /// formats it.
    pub fn reply_text(&self) -> String {
        let mut s = format!("{} - {}", self.code.name(), self.text);
        if s.len() > 255 {
            let mut cut = 255;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
        }
        s
    }

    pub fn not_found(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::NotFound, text)
    }
    pub fn access_refused(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::AccessRefused, text)
    }
    pub fn precondition_failed(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::PreconditionFailed, text)
    }
    pub fn resource_locked(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::ResourceLocked, text)
    }
    pub fn command_invalid(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::CommandInvalid, text)
    }
    pub fn not_allowed(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::NotAllowed, text)
    }
    pub fn not_implemented(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::NotImplemented, text)
    }
    pub fn channel_error(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::ChannelError, text)
    }
    pub fn unexpected_frame(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::UnexpectedFrame, text)
    }
    pub fn frame_error(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::FrameError, text)
    }
    pub fn syntax_error(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::SyntaxError, text)
    }
}
