//! What a queue's declared arguments ask of it, read once at declare (or
//! recovery) into plain values the state machine consults.
//!
//! The arguments were validated by [`crate::arguments::validate_queue_args`]
//! when the queue was declared; reading here is lenient, so a definition
//! saved by an older broker still opens.

use warren_protocol::{FieldTable, FieldValue};

/// What a queue does with a publish that would take it past a length limit
/// (`x-overflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop (dead-letter, reason `maxlen`) the oldest ready messages.
    #[default]
    DropHead,
    /// Refuse the publish: nacked to a confirming publisher, dropped
    /// otherwise.
    RejectPublish,
    /// Refuse the publish as `RejectPublish` does, and dead-letter it.
    RejectPublishDlx,
}

/// `x-queue-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueKind {
    #[default]
    Classic,
    /// Quorum rules on one node: durable, not exclusive, delivery counts
    /// and an optional delivery limit.
    Quorum,
}

/// A queue's behaviour as its arguments configure it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueConfig {
    /// The queue's name, as dead-lettering writes it into `x-death`.
    pub name: String,
    /// `x-message-ttl`, milliseconds.
    pub message_ttl: Option<u64>,
    /// `x-expires`, milliseconds: the queue is deleted after being unused
    /// this long.
    pub expires: Option<u64>,
    /// `x-dead-letter-exchange` ("" is the default exchange).
    pub dead_letter_exchange: Option<String>,
    /// `x-dead-letter-routing-key`.
    pub dead_letter_routing_key: Option<String>,
    /// `x-max-length`, ready messages.
    pub max_length: Option<u64>,
    /// `x-max-length-bytes`, body bytes of ready messages.
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    /// `x-single-active-consumer`.
    pub single_active_consumer: bool,
    /// `x-max-priority`: the highest message priority told apart.
    pub max_priority: Option<u8>,
    pub kind: QueueKind,
    /// `x-delivery-limit` (quorum): a message returned more often than
    /// this is dead-lettered (reason `delivery_limit`).
    pub delivery_limit: Option<u64>,
}

fn integer(args: &FieldTable, key: &str) -> Option<u64> {
    match args.get(key)? {
        FieldValue::Timestamp(_) => None,
        v => v.as_i64().and_then(|n| u64::try_from(n).ok()),
    }
}

fn text(args: &FieldTable, key: &str) -> Option<String> {
    args.get(key)
        .and_then(FieldValue::as_bytes)
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

impl QueueConfig {
    /// Reads the arguments of queue `name`.
    pub fn from_arguments(name: &str, args: &FieldTable) -> Self {
        let overflow = match args.get("x-overflow").and_then(FieldValue::as_bytes) {
            Some(b"reject-publish") => Overflow::RejectPublish,
            Some(b"reject-publish-dlx") => Overflow::RejectPublishDlx,
            _ => Overflow::DropHead,
        };
        QueueConfig {
            name: name.to_string(),
            message_ttl: integer(args, "x-message-ttl"),
            expires: integer(args, "x-expires").filter(|&n| n > 0),
            dead_letter_exchange: text(args, "x-dead-letter-exchange"),
            dead_letter_routing_key: text(args, "x-dead-letter-routing-key"),
            max_length: integer(args, "x-max-length"),
            max_length_bytes: integer(args, "x-max-length-bytes"),
            overflow,
            max_priority: integer(args, "x-max-priority").map(|p| p.min(255) as u8),
            kind: match args.get("x-queue-type").and_then(FieldValue::as_bytes) {
                Some(b"quorum") => QueueKind::Quorum,
                _ => QueueKind::Classic,
            },
            delivery_limit: integer(args, "x-delivery-limit"),
            single_active_consumer: args
                .get("x-single-active-consumer")
                .and_then(FieldValue::as_bool)
                .unwrap_or(false),
        }
    }

    /// Whether the queue counts deliveries (quorum queues do).
    pub fn counts_deliveries(&self) -> bool {
        self.kind == QueueKind::Quorum
    }

    /// Whether either length limit is set.
    pub fn has_length_limit(&self) -> bool {
        self.max_length.is_some() || self.max_length_bytes.is_some()
    }

    /// Whether a queue holding `len` ready messages of `bytes` body bytes is
    /// over a limit.
    pub fn over_limit(&self, len: u64, bytes: u64) -> bool {
        self.max_length.is_some_and(|m| len > m) || self.max_length_bytes.is_some_and(|m| bytes > m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn reads_what_the_arguments_say() {
        let s = |v: &'static str| FieldValue::LongString(Bytes::from_static(v.as_bytes()));
        let args: FieldTable = [
            ("x-message-ttl".to_string(), FieldValue::I32(500)),
            ("x-expires".to_string(), FieldValue::I64(1000)),
            ("x-dead-letter-exchange".to_string(), s("dlx")),
            ("x-dead-letter-routing-key".to_string(), s("dead")),
            ("x-max-length".to_string(), FieldValue::U8(3)),
            ("x-overflow".to_string(), s("reject-publish-dlx")),
            (
                "x-single-active-consumer".to_string(),
                FieldValue::Bool(true),
            ),
        ]
        .into_iter()
        .collect();
        let c = QueueConfig::from_arguments("q", &args);
        assert_eq!(c.message_ttl, Some(500));
        assert_eq!(c.expires, Some(1000));
        assert_eq!(c.dead_letter_exchange.as_deref(), Some("dlx"));
        assert_eq!(c.dead_letter_routing_key.as_deref(), Some("dead"));
        assert_eq!(c.max_length, Some(3));
        assert_eq!(c.overflow, Overflow::RejectPublishDlx);
        assert!(c.single_active_consumer);
        assert!(c.over_limit(4, 0) && !c.over_limit(3, u64::MAX));
        assert_eq!(
            QueueConfig::from_arguments("q", &FieldTable::new()).overflow,
            Overflow::DropHead
        );
    }
}
