//! What a queue's declared arguments ask of it, read once at declare (or
//! recovery) into plain values the state machine consults.
//!
//! The arguments were validated by [`crate::arguments::validate_queue_args`]
//! when the queue was declared; reading here is lenient, so a definition
//! saved by an older broker still opens.

use warren_protocol::{FieldTable, FieldValue};

use crate::policy::Applied;

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

fn overflow(v: Option<&FieldValue>) -> Option<Overflow> {
    Some(match v.and_then(FieldValue::as_bytes)? {
        b"reject-publish" => Overflow::RejectPublish,
        b"reject-publish-dlx" => Overflow::RejectPublishDlx,
        b"drop-head" => Overflow::DropHead,
        _ => return None,
    })
}

/// The lower of two optional limits.
fn lower(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl QueueConfig {
    /// Reads the arguments of queue `name`.
    pub fn from_arguments(name: &str, args: &FieldTable) -> Self {
        let overflow = overflow(args.get("x-overflow")).unwrap_or_default();
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

    /// Reads the arguments of queue `name` combined with the policies it
    /// got, by RabbitMQ's rules: for limits (TTL, lengths, delivery limit)
    /// the lower value wins; the queue's own dead-letter exchange and
    /// routing key win over a policy's; for `overflow` and `expires` the
    /// argument wins on a classic queue, the policy on a quorum queue.
    pub fn resolve(name: &str, args: &FieldTable, applied: &Applied) -> Self {
        let mut c = Self::from_arguments(name, args);
        if applied.is_empty() {
            return c;
        }
        let number = |key: &str| {
            applied
                .get(key)
                .and_then(|v| v.as_i64())
                .and_then(|n| u64::try_from(n).ok())
        };
        let text = |key: &str| {
            applied.get(key).and_then(|v| {
                v.as_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            })
        };
        let quorum = c.kind == QueueKind::Quorum;
        c.message_ttl = lower(c.message_ttl, number("message-ttl"));
        c.max_length = lower(c.max_length, number("max-length"));
        c.max_length_bytes = lower(c.max_length_bytes, number("max-length-bytes"));
        c.delivery_limit = lower(c.delivery_limit, number("delivery-limit"));
        let expires = number("expires").filter(|&n| n > 0);
        c.expires = match (c.expires, expires) {
            (Some(_), Some(p)) if quorum => Some(p),
            (a, p) => lower(a, p),
        };
        if args.get("x-dead-letter-exchange").is_none() {
            c.dead_letter_exchange = text("dead-letter-exchange");
        }
        if args.get("x-dead-letter-routing-key").is_none() {
            c.dead_letter_routing_key = text("dead-letter-routing-key");
        }
        let policy_overflow = overflow(applied.get("overflow").as_ref());
        if let Some(p) = policy_overflow {
            if quorum || args.get("x-overflow").is_none() {
                c.overflow = p;
            }
        }
        c
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

    fn applied(pairs: &[(&str, FieldValue)], op: &[(&str, FieldValue)]) -> Applied {
        use crate::policy::{Policy, PolicyKind, PolicyRequest};
        let make = |kind, pairs: &[(&str, FieldValue)]| {
            (!pairs.is_empty()).then(|| {
                let t: FieldTable = pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect();
                std::sync::Arc::new(
                    Policy::validate(
                        kind,
                        "/",
                        "p",
                        PolicyRequest {
                            pattern: Some(FieldValue::LongString(Bytes::from_static(b".*"))),
                            definition: Some(FieldValue::Table(t)),
                            ..Default::default()
                        },
                    )
                    .unwrap(),
                )
            })
        };
        Applied {
            policy: make(PolicyKind::User, pairs),
            operator: make(PolicyKind::Operator, op),
        }
    }

    #[test]
    fn policies_combine_with_arguments_by_rabbitmqs_rules() {
        let s = |v: &'static str| FieldValue::LongString(Bytes::from_static(v.as_bytes()));
        let args: FieldTable = [
            ("x-max-length".to_string(), FieldValue::I32(5)),
            ("x-message-ttl".to_string(), FieldValue::I32(100)),
            ("x-dead-letter-exchange".to_string(), s("mine")),
            ("x-overflow".to_string(), s("reject-publish")),
            ("x-expires".to_string(), FieldValue::I32(9000)),
        ]
        .into_iter()
        .collect();
        let a = applied(
            &[
                ("max-length", FieldValue::I64(2)),
                ("message-ttl", FieldValue::I64(1000)),
                ("dead-letter-exchange", s("theirs")),
                ("dead-letter-routing-key", s("rk")),
                ("overflow", s("drop-head")),
                ("expires", FieldValue::I64(60000)),
                ("max-length-bytes", FieldValue::I64(64)),
            ],
            &[("max-length-bytes", FieldValue::I64(10))],
        );
        let c = QueueConfig::resolve("q", &args, &a);
        // limits: the lower wins, whoever sets it
        assert_eq!(c.max_length, Some(2));
        assert_eq!(c.message_ttl, Some(100));
        assert_eq!(c.max_length_bytes, Some(10));
        assert_eq!(c.expires, Some(9000));
        // the queue's own dead-letter exchange and overflow win; what it
        // leaves unset comes from the policy
        assert_eq!(c.dead_letter_exchange.as_deref(), Some("mine"));
        assert_eq!(c.dead_letter_routing_key.as_deref(), Some("rk"));
        assert_eq!(c.overflow, Overflow::RejectPublish);

        // on a quorum queue the policy's overflow and expiry win
        let mut quorum = args.clone();
        quorum.insert("x-queue-type".to_string(), s("quorum"));
        let c = QueueConfig::resolve("q", &quorum, &a);
        assert_eq!(c.overflow, Overflow::DropHead);
        assert_eq!(c.expires, Some(60000));

        // no policy: the arguments alone
        assert_eq!(
            QueueConfig::resolve("q", &args, &Applied::default()),
            QueueConfig::from_arguments("q", &args)
        );
    }
}
