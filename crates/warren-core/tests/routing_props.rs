//! Property tests: the topic trie agrees with a direct reading of the
//! matching rules, and bind/unbind sequences leave exactly the bindings that
//! remain.

use proptest::prelude::*;
use warren_core::routing::{Destination, TopicRouter};

/// The matching rules, read literally: `*` is one word, `#` zero or more.
fn reference(pattern: &[&str], key: &[&str]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((&"#", rest)) => (0..=key.len()).any(|skip| reference(rest, &key[skip..])),
        Some((&"*", rest)) => !key.is_empty() && reference(rest, &key[1..]),
        Some((word, rest)) => key.first() == Some(word) && reference(rest, &key[1..]),
    }
}

fn words(s: &str) -> Vec<&str> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split('.').collect()
    }
}

fn pattern() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "", "*", "#"]), 0..6)
        .prop_map(|w| w.join("."))
}

fn key() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", ""]), 0..6).prop_map(|w| w.join("."))
}

fn routed(r: &TopicRouter, key: &str) -> Vec<Destination> {
    let mut out = Vec::new();
    r.route(key, &mut |d| out.push(d.clone()));
    out.sort();
    out.dedup();
    out
}

proptest! {
    #[test]
    fn topic_trie_matches_the_rules(patterns in prop::collection::vec(pattern(), 1..12), k in key()) {
        let mut r = TopicRouter::default();
        for (i, p) in patterns.iter().enumerate() {
            r.bind(&Destination::Queue(i.to_string()), p);
        }
        let mut want: Vec<Destination> = patterns
            .iter()
            .enumerate()
            .filter(|(_, p)| reference(&words(p), &words(&k)))
            .map(|(i, _)| Destination::Queue(i.to_string()))
            .collect();
        want.sort();
        prop_assert_eq!(routed(&r, &k), want);
    }

    #[test]
    fn unbinding_leaves_exactly_the_rest(
        patterns in prop::collection::vec(pattern(), 1..12),
        removed in prop::collection::vec(any::<bool>(), 12),
        k in key(),
    ) {
        let mut r = TopicRouter::default();
        for (i, p) in patterns.iter().enumerate() {
            r.bind(&Destination::Queue(i.to_string()), p);
        }
        for (i, p) in patterns.iter().enumerate() {
            if removed[i] {
                r.unbind(&Destination::Queue(i.to_string()), p);
            }
        }
        let mut want: Vec<Destination> = patterns
            .iter()
            .enumerate()
            .filter(|(i, p)| !removed[*i] && reference(&words(p), &words(&k)))
            .map(|(i, _)| Destination::Queue(i.to_string()))
            .collect();
        want.sort();
        prop_assert_eq!(routed(&r, &k), want);
    }
}

proptest! {
    /// Fanout to many queues (past the inline dedup capacity) still reaches
    /// each bound queue exactly once, however often it is bound.
    #[test]
    fn fanout_reaches_each_queue_once(queues in 1usize..60, extra in prop::collection::vec(0usize..60, 0..40)) {
        use warren_core::exchange::ExchangeSpec;
        use warren_core::{ExchangeKind, VirtualHost};
        use warren_protocol::{FieldTable, FieldValue};
        let mut v: VirtualHost<usize> = VirtualHost::new("/");
        for i in 0..queues {
            v.insert_queue(format!("q{i}"), i);
        }
        let spec = ExchangeSpec {
            name: "f".into(),
            kind: ExchangeKind::Fanout,
            durable: false,
            auto_delete: false,
            internal: false,
            arguments: FieldTable::new(),
        };
        v.declare_exchange(spec, false).unwrap();
        for i in 0..queues {
            v.bind("f", Destination::Queue(format!("q{i}")), "", &FieldTable::new()).unwrap();
        }
        // The same queue bound again with other arguments: a second binding.
        for i in extra.iter().filter(|i| **i < queues) {
            let args: FieldTable = [("n".to_string(), FieldValue::I32(*i as i32))].into_iter().collect();
            v.bind("f", Destination::Queue(format!("q{i}")), "", &args).unwrap();
        }
        let mut got = Vec::new();
        v.route("f", "", None, &mut |q| got.push(*q));
        got.sort();
        prop_assert_eq!(got, (0..queues).collect::<Vec<_>>());
    }
}
