//! Dead-lettering: the message a queue republishes to its dead-letter
//! exchange, with the `x-death` history RabbitMQ writes, and the rule that
//! stops a message from cycling through queues for ever.
//!
//! Pure functions: the queue state machine says *which* message dies and
//! why; the server builds the dead letter here and routes it.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use warren_protocol::{BasicProperties, FieldTable, FieldValue};

use crate::Message;

/// Why a message was dead-lettered (the `reason` of its `x-death` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Rejected or nacked without requeue.
    Rejected,
    /// Its TTL ran out.
    Expired,
    /// Dropped by a length limit.
    Maxlen,
    /// Delivered more often than the queue's delivery limit allows.
    DeliveryLimit,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::Maxlen => "maxlen",
            Reason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// Where a queue sends its dead letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// The dead-letter exchange ("" for the default exchange).
    pub exchange: &'a str,
    /// Replaces the message's routing key when set.
    pub routing_key: Option<&'a str>,
}

fn longstr(s: &str) -> FieldValue {
    FieldValue::LongString(Bytes::copy_from_slice(s.as_bytes()))
}

fn text_of(v: Option<&FieldValue>) -> Option<&[u8]> {
    v.and_then(FieldValue::as_bytes)
}

/// Sorts a table by key, as RabbitMQ's `sort_field_table` does whenever it
/// sets a header.
fn sort(table: &mut FieldTable) {
    table.0.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
}

/// The message that `queue` dead-letters to `target`, at `now_ms`
/// (milliseconds since the Unix epoch): its headers gain (or update) the
/// `x-death` entry for this queue and reason, the first death is recorded
/// in `x-first-death-*`, and its `expiration` is removed so it does not
/// expire again on its own.
pub fn dead_letter(
    msg: &Message,
    reason: Reason,
    queue: &str,
    target: &Target<'_>,
    now_ms: u64,
) -> Arc<Message> {
    let mut props = BasicProperties::decode(&msg.properties).unwrap_or_default();
    let mut headers = props.headers.take().unwrap_or_default();
    let mut routing_keys = vec![longstr(&msg.routing_key)];
    if let Some(FieldValue::Array(cc)) = headers.get("CC") {
        routing_keys.extend(cc.iter().filter(|v| v.as_bytes().is_some()).cloned());
    }
    let mut info = vec![
        ("reason".to_string(), longstr(reason.as_str())),
        ("queue".to_string(), longstr(queue)),
        ("time".to_string(), FieldValue::Timestamp(now_ms / 1000)),
        ("exchange".to_string(), longstr(&msg.exchange)),
        ("routing-keys".to_string(), FieldValue::Array(routing_keys)),
    ];
    if let Some(exp) = &props.expiration {
        info.push(("original-expiration".to_string(), longstr(exp)));
    }
    let deaths = match headers.get("x-death") {
        Some(FieldValue::Array(deaths)) => Some(deaths.clone()),
        _ => None,
    };
    match deaths {
        None => {
            headers.insert("x-first-death-reason", longstr(reason.as_str()));
            headers.insert("x-first-death-queue", longstr(queue));
            headers.insert("x-first-death-exchange", longstr(&msg.exchange));
            // The very first entry keeps RabbitMQ's field order: count first.
            let mut first = vec![("count".to_string(), FieldValue::I64(1))];
            first.extend(info);
            headers.insert(
                "x-death",
                FieldValue::Array(vec![FieldValue::Table(FieldTable(first))]),
            );
        }
        Some(deaths) => {
            let deaths = regroup(deaths);
            let is_this = |d: &FieldValue| match d {
                FieldValue::Table(t) => {
                    text_of(t.get("queue")) == Some(queue.as_bytes())
                        && text_of(t.get("reason")) == Some(reason.as_str().as_bytes())
                }
                _ => false,
            };
            let (mut matched, others): (Vec<FieldValue>, Vec<FieldValue>) =
                deaths.into_iter().partition(is_this);
            let mut entry = match matched.pop() {
                Some(FieldValue::Table(mut t)) => {
                    let count = t.get("count").and_then(FieldValue::as_i64).unwrap_or(0);
                    t.insert("count", FieldValue::I64(count + 1));
                    t
                }
                _ => {
                    let mut t = FieldTable(vec![("count".to_string(), FieldValue::I64(1))]);
                    t.0.extend(info);
                    t
                }
            };
            sort(&mut entry);
            let mut all = vec![FieldValue::Table(entry)];
            all.extend(others);
            headers.insert("x-death", FieldValue::Array(all));
        }
    }
    if target.routing_key.is_some() {
        headers.0.retain(|(k, _)| k != "CC");
    }
    sort(&mut headers);
    props.headers = Some(headers);
    props.expiration = None;
    let mut raw = BytesMut::new();
    props.encode(&mut raw);
    Arc::new(Message {
        exchange: target.exchange.to_string(),
        routing_key: target
            .routing_key
            .map_or_else(|| msg.routing_key.clone(), str::to_string),
        properties: raw.freeze(),
        persistent: msg.persistent,
        headers: props.headers,
        expiration: None,
        priority: msg.priority,
        // The BCC keys route the copy unless a new routing key replaces
        // them all.
        bcc: if target.routing_key.is_some() {
            Vec::new()
        } else {
            msg.bcc.clone()
        },
        body: msg.body.clone(),
        confirm: None,
    })
}

/// The (queue, reason) of an `x-death` entry.
fn death_key(d: &FieldValue) -> Option<(&[u8], &[u8])> {
    match d {
        FieldValue::Table(t) => Some((text_of(t.get("queue"))?, text_of(t.get("reason"))?)),
        _ => None,
    }
}

/// RabbitMQ's regrouping of an `x-death` history of two entries or more
/// before a new death is written: one entry per (queue, reason), the first
/// of each kept (given a count if it had none: how many there were), and,
/// as its fold builds the list by prepending, in reverse order. So three
/// different deaths do not read most recent first: q1, q2, then q3 gives
/// [q3, q1, q2], exactly as RabbitMQ 3.10 writes it.
fn regroup(deaths: Vec<FieldValue>) -> Vec<FieldValue> {
    if deaths.len() < 2 {
        return deaths;
    }
    let mut grouped: Vec<FieldValue> = Vec::with_capacity(deaths.len());
    let mut seen: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for d in &deaths {
        let Some((q, r)) = death_key(d) else {
            continue;
        };
        if seen.iter().any(|(sq, sr)| sq == q && sr == r) {
            continue;
        }
        seen.push((q.to_vec(), r.to_vec()));
        let same = deaths
            .iter()
            .filter(|x| death_key(x) == Some((q, r)))
            .count();
        let mut entry = d.clone();
        if let FieldValue::Table(t) = &mut entry {
            if t.get("count").is_none() {
                t.0.insert(0, ("count".to_string(), FieldValue::I64(same as i64)));
            }
        }
        grouped.insert(0, entry);
    }
    grouped
}

/// Whether a dead letter routed to `queue` would close a fully automatic
/// cycle: `queue` already appears in the message's `x-death`, and no
/// death since (including that one) was a rejection. Such a message is not
/// delivered to `queue`, as RabbitMQ drops it; a cycle through a client's
/// rejection goes on, since the client chose it.
pub fn is_cycle(msg: &Message, queue: &str) -> bool {
    let Some(FieldValue::Array(deaths)) = msg.headers.as_ref().and_then(|h| h.get("x-death"))
    else {
        return false;
    };
    let Some(at) = deaths.iter().position(|d| match d {
        FieldValue::Table(t) => text_of(t.get("queue")) == Some(queue.as_bytes()),
        _ => false,
    }) else {
        return false;
    };
    deaths[..=at].iter().all(|d| match d {
        FieldValue::Table(t) => text_of(t.get("reason")) != Some(b"rejected"),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(props: BasicProperties) -> Message {
        let mut raw = BytesMut::new();
        props.encode(&mut raw);
        Message::new(
            "work-x".into(),
            "job".into(),
            raw.freeze(),
            Bytes::from_static(b"body"),
        )
        .expect("valid properties")
    }

    fn deaths(m: &Message) -> Vec<FieldTable> {
        match m.headers.as_ref().and_then(|h| h.get("x-death")) {
            Some(FieldValue::Array(a)) => a
                .iter()
                .map(|d| match d {
                    FieldValue::Table(t) => t.clone(),
                    _ => panic!("x-death entry is not a table"),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    const DLX: Target<'static> = Target {
        exchange: "dlx",
        routing_key: None,
    };

    #[test]
    fn first_death_writes_the_entry_and_the_first_death_headers() {
        let m = message(BasicProperties {
            expiration: Some("5000".into()),
            delivery_mode: Some(2),
            headers: Some([("app".to_string(), longstr("kept"))].into_iter().collect()),
            ..Default::default()
        });
        let d = dead_letter(&m, Reason::Expired, "work", &DLX, 1_700_000_000_123);
        assert_eq!(
            (d.exchange.as_str(), d.routing_key.as_str()),
            ("dlx", "job")
        );
        assert!(d.persistent);
        let props = BasicProperties::decode(&d.properties).unwrap();
        assert_eq!(props.expiration, None);
        let h = props.headers.unwrap();
        let keys: Vec<&str> = h.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "app",
                "x-death",
                "x-first-death-exchange",
                "x-first-death-queue",
                "x-first-death-reason"
            ]
        );
        let entry = &deaths(&d)[0];
        let keys: Vec<&str> = entry.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "count",
                "reason",
                "queue",
                "time",
                "exchange",
                "routing-keys",
                "original-expiration"
            ]
        );
        assert_eq!(entry.get("count"), Some(&FieldValue::I64(1)));
        assert_eq!(
            entry.get("time"),
            Some(&FieldValue::Timestamp(1_700_000_000))
        );
        assert_eq!(
            entry.get("routing-keys"),
            Some(&FieldValue::Array(vec![longstr("job")]))
        );
    }

    #[test]
    fn a_retry_loop_counts_each_queue_and_reason_once() {
        let m = message(BasicProperties::default());
        let retry = Target {
            exchange: "",
            routing_key: Some("retry"),
        };
        let mut d = dead_letter(&m, Reason::Rejected, "work", &retry, 1000);
        for round in 1..=3 {
            d = dead_letter(&d, Reason::Expired, "retry", &DLX, 2000);
            assert!(
                !is_cycle(&d, "work"),
                "a rejection in the loop makes it a chosen one"
            );
            if round < 3 {
                d = dead_letter(&d, Reason::Rejected, "work", &retry, 3000);
            }
        }
        let all = deaths(&d);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].get("queue"), Some(&longstr("retry")));
        assert_eq!(all[0].get("count"), Some(&FieldValue::I64(3)));
        assert_eq!(all[1].get("count"), Some(&FieldValue::I64(3)));
        // Later entries are sorted by key, as RabbitMQ rewrites them.
        let keys: Vec<&str> = all[0].iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "count",
                "exchange",
                "queue",
                "reason",
                "routing-keys",
                "time"
            ]
        );
        let h = d.headers.as_ref().unwrap();
        assert_eq!(h.get("x-first-death-reason"), Some(&longstr("rejected")));
        assert_eq!(h.get("x-first-death-queue"), Some(&longstr("work")));
    }

    #[test]
    fn three_different_deaths_are_ordered_as_rabbitmq_orders_them() {
        let m = message(BasicProperties::default());
        let to = |q: &'static str| Target {
            exchange: "",
            routing_key: Some(q),
        };
        let d = dead_letter(&m, Reason::Rejected, "q1", &to("q2"), 0);
        let d = dead_letter(&d, Reason::Expired, "q2", &to("q3"), 0);
        let d = dead_letter(&d, Reason::Rejected, "q3", &to("q4"), 0);
        let order: Vec<_> = deaths(&d)
            .iter()
            .map(|t| (t.get("queue").cloned(), t.get("reason").cloned()))
            .collect();
        let e = |q: &str, r: &str| (Some(longstr(q)), Some(longstr(r)));
        assert_eq!(
            order,
            vec![e("q3", "rejected"), e("q1", "rejected"), e("q2", "expired")]
        );
    }

    #[test]
    fn an_automatic_cycle_is_detected() {
        let m = message(BasicProperties::default());
        let d = dead_letter(&m, Reason::Expired, "q", &DLX, 0);
        assert!(is_cycle(&d, "q"));
        assert!(!is_cycle(&d, "other"));
        let r = dead_letter(&m, Reason::Rejected, "q", &DLX, 0);
        assert!(!is_cycle(&r, "q"));
    }

    #[test]
    fn a_dead_letter_routing_key_drops_cc() {
        let m = message(BasicProperties {
            headers: Some(
                [("CC".to_string(), FieldValue::Array(vec![longstr("other")]))]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        });
        let keep = dead_letter(&m, Reason::Rejected, "q", &DLX, 0);
        assert_eq!(
            deaths(&keep)[0].get("routing-keys"),
            Some(&FieldValue::Array(vec![longstr("job"), longstr("other")]))
        );
        assert!(keep.headers.as_ref().unwrap().get("CC").is_some());
        let rk = Target {
            exchange: "dlx",
            routing_key: Some("dead"),
        };
        let moved = dead_letter(&m, Reason::Rejected, "q", &rk, 0);
        assert_eq!(moved.routing_key, "dead");
        assert!(moved.headers.as_ref().unwrap().get("CC").is_none());
    }
}
