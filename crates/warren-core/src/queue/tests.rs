//! The queue state machine driven by commands, asserting on its effects;
//! and a model-based property test against a small reference queue.

use super::*;
use bytes::Bytes;
use proptest::prelude::*;
use warren_protocol::{FieldTable, FieldValue};

fn msg(body: &str) -> Arc<Message> {
    msg_with(body, None)
}

fn msg_with(body: &str, expiration: Option<u64>) -> Arc<Message> {
    Arc::new(Message {
        exchange: String::new(),
        routing_key: "q".into(),
        properties: Bytes::from_static(&[0, 0]),
        persistent: false,
        headers: None,
        expiration,
        priority: 0,
        bcc: Vec::new(),
        body: Bytes::copy_from_slice(body.as_bytes()),
        confirm: None,
    })
}

fn body(m: &QueuedMessage) -> &[u8] {
    &m.message.body
}

fn queue(args: &[(&str, FieldValue)]) -> QueueState<u32> {
    let table: FieldTable = args
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    QueueState::new(
        QueueConfig::from_arguments("q", &table),
        Box::<MemoryStore>::default(),
        0,
    )
}

fn s(v: &str) -> FieldValue {
    FieldValue::LongString(Bytes::copy_from_slice(v.as_bytes()))
}

fn spec(prefetch: u32) -> ConsumerSpec {
    ConsumerSpec {
        prefetch,
        ..Default::default()
    }
}

fn publish(q: &mut QueueState<u32>, now: u64, bodies: &[&str]) -> (Published, Effects<u32>) {
    let mut fx = Effects::default();
    let msgs: Vec<_> = bodies.iter().map(|b| msg(b)).collect();
    let p = q.publish_batch(&msgs, now, |_| true, &mut fx);
    (p, fx)
}

fn delivered(fx: &Effects<u32>) -> Vec<(u32, &[u8])> {
    fx.deliveries.iter().map(|(c, m)| (*c, body(m))).collect()
}

fn dead(fx: &Effects<u32>) -> Vec<(&[u8], Reason)> {
    fx.dead_letters
        .iter()
        .map(|(m, r)| (&m.body[..], *r))
        .collect()
}

#[test]
fn round_robin_respects_prefetch_and_acks_free_the_window() {
    let mut q = queue(&[]);
    q.consume(1, 1, spec(1), 0);
    q.consume(2, 2, spec(0), 0);
    let (_, fx) = publish(&mut q, 0, &["a", "b", "c", "d"]);
    assert_eq!(
        delivered(&fx),
        vec![(1, b"a".as_slice()), (2, b"b"), (2, b"c"), (2, b"d")]
    );
    assert_eq!((q.ready_count(), q.unacked_count()), (0, 4));
    let a = fx.deliveries[0].1.seq;
    q.ack(a, &mut Effects::default()).unwrap();
    let (_, fx) = publish(&mut q, 0, &["e"]);
    assert_eq!(delivered(&fx), vec![(1, b"e".as_slice())]);
}

#[test]
fn requeue_restores_order_and_marks_redelivered() {
    let mut q = queue(&[]);
    publish(&mut q, 0, &["a", "b", "c", "d"]);
    let mut fx = Effects::default();
    let got: Vec<_> = (0..3)
        .map(|_| q.get(0, true, &mut fx).unwrap().unwrap().0)
        .collect();
    for m in [&got[2], &got[0], &got[1]] {
        q.reject(m.seq, true, &mut fx).unwrap();
    }
    let all: Vec<_> =
        std::iter::from_fn(|| q.get(0, false, &mut fx).unwrap().map(|g| g.0)).collect();
    let bodies: Vec<&[u8]> = all.iter().map(body).collect();
    assert_eq!(bodies, vec![b"a".as_slice(), b"b", b"c", b"d"]);
    assert!(all[..3].iter().all(|m| m.redelivered) && !all[3].redelivered);
}

#[test]
fn queue_ttl_and_message_expiration_the_smaller_wins() {
    let dlx = [
        ("x-message-ttl", FieldValue::I32(100)),
        ("x-dead-letter-exchange", s("dlx")),
    ];
    let mut q = queue(&dlx);
    let mut fx = Effects::default();
    let msgs = [
        msg_with("short", Some(10)),
        msg_with("long", Some(1000)),
        msg("plain"),
    ];
    q.publish_batch(&msgs, 0, |_| true, &mut fx);
    assert_eq!(fx.wake_at, Some(10), "the head's deadline is armed");
    let mut fx = Effects::default();
    q.tick(9, |_| true, &mut fx);
    assert!(fx.dead_letters.is_empty(), "not before its deadline");
    q.tick(10, |_| true, &mut fx);
    assert_eq!(dead(&fx), vec![(b"short".as_slice(), Reason::Expired)]);
    assert_eq!(fx.wake_at, Some(100));
    let mut fx = Effects::default();
    q.tick(100, |_| true, &mut fx);
    assert_eq!(
        dead(&fx),
        vec![
            (b"long".as_slice(), Reason::Expired),
            (b"plain", Reason::Expired)
        ]
    );
    assert_eq!((q.ready_count(), fx.wake_at), (0, None));
}

#[test]
fn an_expired_message_behind_a_live_one_waits_for_the_head_and_is_never_delivered() {
    let mut q = queue(&[]);
    let mut fx = Effects::default();
    let msgs = [msg_with("live", Some(1000)), msg_with("brief", Some(5))];
    q.publish_batch(&msgs, 0, |_| true, &mut fx);
    let mut fx = Effects::default();
    q.tick(50, |_| true, &mut fx);
    assert_eq!(q.ready_count(), 2, "only the head expires, as in RabbitMQ");
    let (live, left) = q.get(50, false, &mut fx).unwrap().unwrap();
    // The expired one reached the head and went before get-ok counted.
    assert_eq!((body(&live), left), (b"live".as_slice(), 0));
    assert!(q.get(50, false, &mut fx).unwrap().is_none());
    assert!(
        fx.dead_letters.is_empty(),
        "no dead-letter exchange: dropped"
    );
}

#[test]
fn ttl_zero_reaches_a_waiting_consumer_and_is_dropped_otherwise() {
    let args = [
        ("x-message-ttl", FieldValue::I32(0)),
        ("x-dead-letter-exchange", s("")),
    ];
    let mut q = queue(&args);
    let (_, fx) = publish(&mut q, 7, &["nobody"]);
    assert_eq!(dead(&fx), vec![(b"nobody".as_slice(), Reason::Expired)]);
    q.consume(1, 1, spec(0), 7);
    let (_, fx) = publish(&mut q, 7, &["someone"]);
    assert_eq!(delivered(&fx), vec![(1, b"someone".as_slice())]);
    assert!(fx.dead_letters.is_empty());
}

#[test]
fn requeued_messages_keep_their_deadline() {
    let mut q = queue(&[
        ("x-message-ttl", FieldValue::I32(100)),
        ("x-dead-letter-exchange", s("d")),
    ]);
    q.consume(1, 1, spec(0), 0);
    let (_, fx) = publish(&mut q, 0, &["a"]);
    let seq = fx.deliveries[0].1.seq;
    q.cancel(1, 50, &mut Effects::default());
    let mut fx = Effects::default();
    q.reject(seq, true, &mut fx).unwrap();
    q.tick(101, |_| true, &mut fx);
    assert_eq!(dead(&fx), vec![(b"a".as_slice(), Reason::Expired)]);
}

#[test]
fn rejection_dead_letters_only_with_a_dead_letter_exchange() {
    for (args, want) in [(vec![("x-dead-letter-exchange", s("dlx"))], 1), (vec![], 0)] {
        let mut q = queue(&args);
        publish(&mut q, 0, &["a"]);
        let mut fx = Effects::default();
        let (m, _) = q.get(0, true, &mut fx).unwrap().unwrap();
        q.reject(m.seq, false, &mut fx).unwrap();
        assert_eq!(fx.dead_letters.len(), want);
        assert_eq!((q.ready_count(), q.unacked_count()), (0, 0));
    }
}

#[test]
fn drop_head_dead_letters_the_oldest_after_offering_to_consumers() {
    let args = [
        ("x-max-length", FieldValue::I32(2)),
        ("x-dead-letter-exchange", s("dlx")),
    ];
    let mut q = queue(&args);
    let (p, fx) = publish(&mut q, 0, &["1", "2", "3", "4"]);
    assert!(p.rejected.is_empty());
    assert_eq!(
        dead(&fx),
        vec![(b"1".as_slice(), Reason::Maxlen), (b"2", Reason::Maxlen)]
    );
    assert_eq!(q.ready_count(), 2);
    // A consumer takes messages before the limit is applied.
    q.consume(1, 1, spec(0), 0);
    let mut fx = Effects::default();
    q.deliver(0, |_| true, &mut fx);
    let (_, fx) = publish(&mut q, 0, &["5", "6", "7"]);
    assert_eq!(fx.deliveries.len(), 3);
    assert!(fx.dead_letters.is_empty());
}

#[test]
fn max_length_bytes_counts_ready_bodies_only() {
    let mut q = queue(&[("x-max-length-bytes", FieldValue::I32(6))]);
    publish(&mut q, 0, &["aaa", "bbb"]);
    let mut fx = Effects::default();
    let (m, _) = q.get(0, true, &mut fx).unwrap().unwrap();
    publish(&mut q, 0, &["ccc", "ddd"]);
    assert_eq!((q.ready_count(), q.ready_bytes()), (2, 6));
    q.reject(m.seq, true, &mut fx).unwrap();
    // Requeued to the head, it takes the queue past the limit and is
    // dropped from there, as RabbitMQ does.
    assert_eq!((q.ready_count(), q.ready_bytes()), (2, 6));
    let (head, _) = q.get(0, false, &mut fx).unwrap().unwrap();
    assert_eq!(body(&head), b"ccc");
}

#[test]
fn reject_publish_refuses_while_full_and_the_dlx_variant_dead_letters() {
    for (overflow, dead_letters) in [("reject-publish", 0), ("reject-publish-dlx", 1)] {
        let args = [
            ("x-max-length", FieldValue::I32(1)),
            ("x-overflow", s(overflow)),
            ("x-dead-letter-exchange", s("dlx")),
        ];
        let mut q = queue(&args);
        let (p, fx) = publish(&mut q, 0, &["kept", "refused"]);
        assert_eq!(p.rejected, vec![1]);
        assert_eq!(fx.dead_letters.len(), dead_letters);
        assert_eq!(q.ready_count(), 1);
    }
}

#[test]
fn a_quorum_queue_counts_returns_and_dead_letters_past_its_delivery_limit() {
    let mut q = queue(&[
        ("x-queue-type", s("quorum")),
        ("x-delivery-limit", FieldValue::I32(2)),
        ("x-dead-letter-exchange", s("")),
    ]);
    publish(&mut q, 0, &["poison"]);
    let mut fx = Effects::default();
    let mut counts = Vec::new();
    for _ in 0..4 {
        let Some((m, _)) = q.get(0, true, &mut fx).unwrap() else {
            break;
        };
        let h = m.message.headers.as_ref().unwrap();
        counts.push(h.get("x-delivery-count").and_then(FieldValue::as_i64));
        q.reject(m.seq, true, &mut fx).unwrap();
    }
    assert_eq!(counts, vec![Some(0), Some(1), Some(2)]);
    assert_eq!(
        dead(&fx),
        vec![(b"poison".as_slice(), Reason::DeliveryLimit)]
    );
    let dead_headers = fx.dead_letters[0].0.headers.as_ref();
    assert!(dead_headers.is_none_or(|h| h.get("x-delivery-count").is_none()));
}

#[test]
fn idle_queue_asks_to_be_deleted_after_x_expires() {
    let mut q = queue(&[("x-expires", FieldValue::I32(1000))]);
    let mut fx = Effects::default();
    q.touch(500, &mut fx);
    assert_eq!(fx.wake_at, Some(1500));
    q.consume(1, 1, spec(0), 600);
    q.tick(5000, |_| true, &mut fx);
    assert!(!fx.delete, "a consumer keeps it in use");
    q.cancel(1, 6000, &mut fx);
    assert_eq!(fx.wake_at, Some(7000));
    q.tick(6999, |_| true, &mut fx);
    assert!(!fx.delete);
    q.get(6999, false, &mut fx).unwrap();
    q.tick(7500, |_| true, &mut fx);
    assert!(!fx.delete, "a basic.get counts as use");
    q.tick(7999, |_| true, &mut fx);
    assert!(fx.delete);
}

#[test]
fn reconfiguring_applies_new_limits_at_once_and_keeps_old_deadlines() {
    let mut q = queue(&[("x-dead-letter-exchange", s("dlx"))]);
    publish(&mut q, 0, &["a", "b", "c", "d"]);
    // a lower length limit drops from the head at once
    let table: FieldTable = [
        ("x-dead-letter-exchange".to_string(), s("dlx")),
        ("x-max-length".to_string(), FieldValue::I32(2)),
        ("x-message-ttl".to_string(), FieldValue::I32(50)),
    ]
    .into_iter()
    .collect();
    let mut fx = Effects::default();
    q.reconfigure(QueueConfig::from_arguments("q", &table), 10, &mut fx);
    assert_eq!(
        dead(&fx),
        vec![(b"a".as_slice(), Reason::Maxlen), (b"b", Reason::Maxlen)]
    );
    assert_eq!(q.ready_count(), 2);
    // messages already there keep having no deadline; new ones get the TTL
    let (_, fx) = publish(&mut q, 20, &["e"]);
    assert_eq!(dead(&fx), vec![(b"c".as_slice(), Reason::Maxlen)]);
    let mut fx = Effects::default();
    q.tick(100, |_| true, &mut fx);
    assert!(dead(&fx).is_empty(), "{:?}", dead(&fx));
    let mut fx = Effects::default();
    q.reconfigure(
        QueueConfig::from_arguments("q", &FieldTable::new()),
        100,
        &mut fx,
    );
    let (_, fx) = publish(&mut q, 100, &["f"]);
    assert!(dead(&fx).is_empty());
    assert_eq!(q.ready_count(), 3);
}

#[test]
fn no_ack_deliveries_are_settled_at_once_and_delete_cancels_consumers() {
    let mut q = queue(&[]);
    q.consume(
        9,
        9,
        ConsumerSpec {
            no_ack: true,
            ..Default::default()
        },
        0,
    );
    let (_, fx) = publish(&mut q, 0, &["a", "b"]);
    assert_eq!(fx.deliveries.len(), 2);
    assert_eq!(q.unacked_count(), 0);
    let mut fx = Effects::default();
    q.delete(&mut fx).unwrap();
    assert_eq!(fx.cancelled, vec![9]);
}

// ----- model-based property test ---------------------------------------

#[derive(Debug, Clone)]
enum Cmd {
    Publish { ttl: Option<u64> },
    Consume { prefetch: u32 },
    Cancel,
    Deliver,
    Get { ack: bool },
    Ack(usize),
    Reject { pick: usize, requeue: bool },
    Advance(u64),
    Purge,
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        4 => prop::option::of(0u64..50).prop_map(|ttl| Cmd::Publish { ttl }),
        1 => (0u32..3).prop_map(|prefetch| Cmd::Consume { prefetch }),
        1 => Just(Cmd::Cancel),
        2 => Just(Cmd::Deliver),
        2 => any::<bool>().prop_map(|ack| Cmd::Get { ack }),
        2 => any::<usize>().prop_map(Cmd::Ack),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, requeue)| Cmd::Reject { pick, requeue }),
        2 => (0u64..40).prop_map(Cmd::Advance),
        1 => Just(Cmd::Purge),
    ]
}

/// The reference: a plain ordered list of (seq, deadline, redelivered),
/// head-only expiry, one consumer slot list, checked-out set.
#[derive(Default)]
struct Model {
    ready: Vec<(u64, Option<u64>, bool)>,
    /// Checked out: (seq, deadline, redelivered, consumer or 0 for get).
    out: Vec<(u64, Option<u64>, bool, u32)>,
    dead: Vec<u64>,
    next: u64,
}

impl Model {
    fn expire(&mut self, now: u64, inclusive: bool) {
        while let Some(&(seq, Some(t), _)) = self.ready.first() {
            if t < now || (inclusive && t == now) {
                self.ready.remove(0);
                self.dead.push(seq);
            } else {
                break;
            }
        }
    }
}

fn seq_of(m: &Arc<Message>) -> u64 {
    std::str::from_utf8(&m.body).unwrap().parse().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn the_queue_agrees_with_its_model(cmds in prop::collection::vec(cmd(), 1..120)) {
        let args = [("x-dead-letter-exchange", s("dlx"))];
        let mut q = queue(&args);
        let mut m = Model::default();
        let mut now = 0u64;
        // One consumer at most, with a prefetch window.
        let mut consumer: Option<u32> = None;
        let mut next_consumer = 0u32;
        for c in cmds {
            let mut fx = Effects::default();
            match c {
                Cmd::Publish { ttl } => {
                    let seq = m.next;
                    m.next += 1;
                    let msgs = [msg_with(&seq.to_string(), ttl)];
                    q.publish_batch(&msgs, now, |_| true, &mut fx);
                    m.ready.push((seq, ttl.map(|t| now + t), false));
                }
                Cmd::Consume { prefetch } => {
                    if consumer.is_none() {
                        next_consumer += 1;
                        q.consume(next_consumer.into(), next_consumer, spec(prefetch), now);
                        consumer = Some(prefetch);
                    }
                }
                Cmd::Cancel => {
                    if consumer.take().is_some() {
                        q.cancel(next_consumer.into(), now, &mut fx);
                    }
                }
                Cmd::Deliver => {
                    q.deliver(now, |_| true, &mut fx);
                }
                Cmd::Get { ack } => {
                    m.expire(now, true);
                    let got = q.get(now, ack, &mut fx).unwrap();
                    let want = if m.ready.is_empty() { None } else { Some(m.ready.remove(0)) };
                    prop_assert_eq!(got.as_ref().map(|g| g.0.seq), want.map(|w| w.0));
                    if let (Some(g), Some(w)) = (&got, want) {
                        prop_assert_eq!(g.0.redelivered, w.2);
                        if ack {
                            m.out.push((w.0, w.1, w.2, 0));
                        }
                        m.expire(now, true);
                        prop_assert_eq!(g.1 as usize, m.ready.len());
                    }
                }
                Cmd::Ack(pick) => {
                    if !m.out.is_empty() {
                        let (seq, ..) = m.out.remove(pick % m.out.len());
                        q.ack(seq, &mut fx).unwrap();
                    }
                }
                Cmd::Reject { pick, requeue } => {
                    if !m.out.is_empty() {
                        let (seq, t, ..) = m.out.remove(pick % m.out.len());
                        q.reject(seq, requeue, &mut fx).unwrap();
                        if requeue {
                            let at = m.ready.partition_point(|r| r.0 < seq);
                            m.ready.insert(at, (seq, t, true));
                        } else {
                            m.dead.push(seq);
                        }
                    }
                }
                Cmd::Advance(dt) => {
                    now += dt;
                    q.tick(now, |_| true, &mut fx);
                }
                Cmd::Purge => {
                    let n = q.purge().unwrap();
                    prop_assert_eq!(n, m.ready.len());
                    m.ready.clear();
                }
            }
            // Any command that ran the delivery loop: the model's consumer
            // takes from the head while its window has room, then expiry.
            let mut want_delivered = Vec::new();
            if matches!(c, Cmd::Deliver | Cmd::Advance(_) | Cmd::Publish { .. }) {
                if let Some(prefetch) = consumer {
                    loop {
                        m.expire(now, false);
                        let mine = m.out.iter().filter(|o| o.3 == next_consumer).count();
                        let full = prefetch != 0 && mine >= prefetch as usize;
                        if m.ready.is_empty() || full {
                            break;
                        }
                        let r = m.ready.remove(0);
                        want_delivered.push((r.0, r.2));
                        m.out.push((r.0, r.1, r.2, next_consumer));
                    }
                }
                m.expire(now, true);
            }
            let got: Vec<(u64, bool)> = fx.deliveries.iter().map(|(_, d)| (d.seq, d.redelivered)).collect();
            prop_assert_eq!(got, want_delivered);
            let dead: Vec<u64> = fx.dead_letters.iter().map(|(d, _)| seq_of(d)).collect();
            let want_dead: Vec<u64> = std::mem::take(&mut m.dead);
            prop_assert_eq!(dead, want_dead);
            prop_assert_eq!(q.ready_count(), m.ready.len());
            prop_assert_eq!(q.unacked_count(), m.out.len());
        }
    }
}

#[test]
fn ages_of_the_oldest_ready_and_unacked_messages() {
    let mut q = queue(&[]);
    assert_eq!(q.oldest_ready_enqueued_at(), None);
    publish(&mut q, 1_000, &["a"]);
    publish(&mut q, 2_000, &["b"]);
    publish(&mut q, 3_000, &["c"]);
    assert_eq!(q.oldest_ready_enqueued_at(), Some(1_000));
    assert_eq!(q.oldest_unacked_delivered_at(), None);
    let mut fx = Effects::default();
    let (a, _) = q.get(4_000, true, &mut fx).unwrap().unwrap();
    assert_eq!(q.oldest_ready_enqueued_at(), Some(2_000));
    assert_eq!(q.oldest_unacked_delivered_at(), Some(4_000));
    let (b, _) = q.get(5_000, true, &mut fx).unwrap().unwrap();
    assert_eq!(q.oldest_unacked_delivered_at(), Some(4_000));
    // A requeued message is the oldest ready one again.
    q.reject(a.seq, true, &mut fx).unwrap();
    assert_eq!(q.oldest_ready_enqueued_at(), Some(1_000));
    assert_eq!(q.oldest_unacked_delivered_at(), Some(5_000));
    q.ack(b.seq, &mut fx).unwrap();
    assert_eq!(q.oldest_unacked_delivered_at(), None);
    let _ = q.get(6_000, false, &mut fx).unwrap().unwrap();
    assert_eq!(q.oldest_ready_enqueued_at(), Some(3_000));
    let _ = q.get(6_000, false, &mut fx).unwrap().unwrap();
    assert_eq!(q.oldest_ready_enqueued_at(), None);
    // Empty again: a new message's time starts afresh.
    publish(&mut q, 9_000, &["d"]);
    assert_eq!(q.oldest_ready_enqueued_at(), Some(9_000));
    q.purge().unwrap();
    assert_eq!(q.oldest_ready_enqueued_at(), None);
}

#[test]
fn recovered_messages_count_as_enqueued_when_the_queue_opened() {
    let mut store = MemoryStore::default();
    for seq in 0..3 {
        store
            .push(QueuedMessage {
                seq,
                message: msg("old"),
                redelivered: false,
                expires_at: None,
                delivery_count: 0,
            })
            .unwrap();
    }
    let q: QueueState<u32> = QueueState::new(QueueConfig::default(), Box::new(store), 7_000);
    assert_eq!(q.oldest_ready_enqueued_at(), Some(7_000));
}

/// A store whose confirms wait for the disk, over memory.
#[derive(Default)]
struct DiskLike(MemoryStore);

impl MessageStore for DiskLike {
    fn push(&mut self, msg: QueuedMessage) -> Result<(), StoreError> {
        self.0.push(msg)
    }
    fn confirms_on_sync(&self, msg: &Message) -> bool {
        msg.persistent
    }
    fn pop(&mut self) -> Result<Option<QueuedMessage>, StoreError> {
        self.0.pop()
    }
    fn requeue(&mut self, msg: QueuedMessage) {
        self.0.requeue(msg)
    }
    fn ack(&mut self, msg: &QueuedMessage) -> Result<(), StoreError> {
        self.0.ack(msg)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn purge(&mut self) -> Result<usize, StoreError> {
        self.0.purge()
    }
}

struct NoSink;

impl crate::ConfirmSink for NoSink {
    fn expect(&self, _tags: &[u64]) {}
    fn settled(&self, _tags: &[u64]) {}
    fn failed(&self, _tags: &[u64]) {}
}

fn confirmed_msg(body: &str, persistent: bool, tag: u64) -> Arc<Message> {
    let mut m = Arc::into_inner(msg(body)).expect("unshared");
    m.persistent = persistent;
    m.confirm = Some(ConfirmRef {
        sink: Arc::new(NoSink),
        tag,
    });
    Arc::new(m)
}

fn tags(refs: &[ConfirmRef]) -> Vec<u64> {
    refs.iter().map(|r| r.tag).collect()
}

#[test]
fn copies_waiting_for_the_disk_are_announced_and_their_settling_reported() {
    let mut q = QueueState::new(
        QueueConfig::from_arguments("q", &FieldTable::new()),
        Box::<DiskLike>::default(),
        0,
    );
    q.consume(1, 1, spec(0), 0);
    q.consume(
        2,
        2,
        ConsumerSpec {
            no_ack: true,
            ..spec(0)
        },
        0,
    );
    let mut fx = Effects::default();
    let msgs = [
        confirmed_msg("a", true, 1),
        confirmed_msg("transient", false, 2),
        confirmed_msg("b", true, 3),
        confirmed_msg("c", true, 4),
        confirmed_msg("d", true, 5),
    ];
    q.publish_batch(&msgs, 0, |_| true, &mut fx);
    // Only persistent copies wait for the disk, and only they are announced.
    assert_eq!(tags(&fx.expected), [1, 3, 4, 5]);
    // Round robin: 1 gets a, b, d (seq 0, 2, 4); the no-ack consumer 2
    // gets transient and c, which count as settled at once.
    let to = |c: u32| -> Vec<u64> {
        fx.deliveries
            .iter()
            .filter(|(h, _)| *h == c)
            .map(|(_, m)| m.seq)
            .collect()
    };
    let (ones, twos) = (to(1), to(2));
    assert_eq!(ones.len() + twos.len(), 5);
    assert_eq!(tags(&fx.settled), [4], "c, taken without ack");
    let mut fx = Effects::default();
    q.ack(ones[0], &mut fx).unwrap();
    q.reject(ones[1], false, &mut fx).unwrap();
    q.reject(ones[2], true, &mut fx).unwrap();
    // An ack and a rejection settle; a requeue does not.
    assert_eq!(tags(&fx.settled), [1, 3]);
}
