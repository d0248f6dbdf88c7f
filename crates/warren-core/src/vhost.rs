//! A virtual host's topology: its exchanges, its queues (as opaque handles
//! `Q`), the bindings between them, and routing across all of it.

use crate::policy::Applied;
use ahash::{AHashMap as HashMap, AHashSet as HashSet};
use smallvec::SmallVec;
use warren_protocol::FieldTable;

use crate::arguments::{describe, validate_headers_binding};
use crate::exchange::{Binding, ExchangeSpec};
use crate::names::is_reserved;
use crate::{AmqpError, Destination, Exchange, ExchangeKind};

/// Exchanges every virtual host has, as RabbitMQ predeclares them.
const PREDECLARED: &[(&str, ExchangeKind, bool)] = &[
    ("", ExchangeKind::Direct, false),
    ("amq.direct", ExchangeKind::Direct, false),
    ("amq.fanout", ExchangeKind::Fanout, false),
    ("amq.topic", ExchangeKind::Topic, false),
    ("amq.headers", ExchangeKind::Headers, false),
    ("amq.match", ExchangeKind::Headers, false),
    ("amq.rabbitmq.trace", ExchangeKind::Topic, true),
];

pub struct VirtualHost<Q> {
    name: String,
    exchanges: HashMap<String, Exchange>,
    queues: HashMap<String, Q>,
    /// What changed since the last [`take_changes`](Self::take_changes),
    /// while recording is on: the owner persists it.
    journal: Option<Vec<TopologyChange>>,
}

/// One change to a vhost's topology, as the owner of its durable copy
/// needs to know it: cascades (bindings removed with their exchange or
/// queue, auto-delete exchanges) are reported one by one.
#[derive(Debug, Clone, PartialEq)]
pub enum TopologyChange {
    ExchangeDeclared(String),
    ExchangeDeleted(String),
    QueueAdded(String),
    QueueRemoved(String),
    Bound { source: String, binding: Binding },
    Unbound { source: String, binding: Binding },
}

impl<Q> VirtualHost<Q> {
    pub fn new(name: impl Into<String>) -> Self {
        let mut vhost = VirtualHost {
            name: name.into(),
            exchanges: HashMap::new(),
            queues: HashMap::new(),
            journal: None,
        };
        for &(name, kind, internal) in PREDECLARED {
            vhost.exchanges.insert(
                name.to_string(),
                Exchange::new(ExchangeSpec {
                    name: name.to_string(),
                    kind,
                    durable: true,
                    auto_delete: false,
                    internal,
                    arguments: FieldTable::new(),
                }),
            );
        }
        vhost
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts (or stops) recording changes for [`take_changes`](Self::take_changes).
    pub fn record_changes(&mut self, on: bool) {
        self.journal = on.then(Vec::new);
    }

    /// The changes recorded since the last call.
    pub fn take_changes(&mut self) -> Vec<TopologyChange> {
        match &mut self.journal {
            Some(j) => std::mem::take(j),
            None => Vec::new(),
        }
    }

    fn note(&mut self, change: TopologyChange) {
        if let Some(j) = &mut self.journal {
            j.push(change);
        }
    }

    /// Removes an exchange, noting its bindings and itself as gone.
    fn drop_exchange(&mut self, name: &str) -> bool {
        let Some(x) = self.exchanges.remove(name) else {
            return false;
        };
        if self.journal.is_some() {
            let gone: Vec<_> = x.bindings().collect();
            for binding in gone {
                self.note(TopologyChange::Unbound {
                    source: name.to_string(),
                    binding,
                });
            }
            self.note(TopologyChange::ExchangeDeleted(name.to_string()));
        }
        true
    }

    fn no_exchange(&self, name: &str) -> AmqpError {
        AmqpError::not_found(format!("no exchange '{name}' in vhost '{}'", self.name))
    }

    /// The error RabbitMQ gives for a missing queue.
    pub fn no_queue(&self, name: &str) -> AmqpError {
        AmqpError::not_found(format!("no queue '{name}' in vhost '{}'", self.name))
    }

    fn default_exchange_refused() -> AmqpError {
        AmqpError::access_refused("operation not permitted on the default exchange")
    }

    /// Records who declared an exchange.
    pub fn set_creator(&mut self, exchange: &str, user: &str) {
        if let Some(x) = self.exchanges.get_mut(exchange) {
            x.created_by = Some(user.to_string());
        }
    }

    /// Sets the policies of every exchange (or of one, with `only`), as
    /// `applied` says for each name.
    pub fn set_exchange_policies(
        &mut self,
        only: Option<&str>,
        mut applied: impl FnMut(&str) -> Applied,
    ) {
        let mut set = |name: &str, x: &mut Exchange| {
            // The default exchange takes no policy.
            if !name.is_empty() {
                let a = applied(name);
                if a != x.policies {
                    x.set_policies(a);
                }
            }
        };
        match only {
            Some(name) => {
                if let Some(x) = self.exchanges.get_mut(name) {
                    set(name, x);
                }
            }
            None => {
                for (name, x) in self.exchanges.iter_mut() {
                    set(name, x);
                }
            }
        }
    }

    pub fn exchange(&self, name: &str) -> Result<&Exchange, AmqpError> {
        self.exchanges
            .get(name)
            .ok_or_else(|| self.no_exchange(name))
    }

    pub fn exchanges(&self) -> impl Iterator<Item = &Exchange> {
        self.exchanges.values()
    }

    /// exchange.declare: creates the exchange, or checks that an existing one
    /// is equivalent. `passive` only checks that it exists. Returns whether
    /// it was created.
    pub fn declare_exchange(
        &mut self,
        spec: ExchangeSpec,
        passive: bool,
    ) -> Result<bool, AmqpError> {
        if spec.name.is_empty() {
            return Err(Self::default_exchange_refused());
        }
        if passive {
            return self.exchange(&spec.name).map(|_| false);
        }
        match self.exchanges.get(&spec.name) {
            Some(existing) => self.check_equivalent(&existing.spec, &spec).map(|_| false),
            None => {
                if is_reserved(&spec.name) {
                    return Err(AmqpError::access_refused(format!(
                        "exchange name '{}' contains reserved prefix 'amq.*'",
                        spec.name
                    )));
                }
                let name = spec.name.clone();
                self.exchanges.insert(name.clone(), Exchange::new(spec));
                self.note(TopologyChange::ExchangeDeclared(name));
                Ok(true)
            }
        }
    }

    fn check_equivalent(
        &self,
        current: &ExchangeSpec,
        wanted: &ExchangeSpec,
    ) -> Result<(), AmqpError> {
        let mismatch = |arg: &str, received: &str, current_v: &str| {
            AmqpError::precondition_failed(format!(
                "inequivalent arg '{arg}' for exchange '{}' in vhost '{}': received '{received}' but current is '{current_v}'",
                current.name, self.name
            ))
        };
        if current.kind != wanted.kind {
            return Err(mismatch(
                "type",
                wanted.kind.as_str(),
                current.kind.as_str(),
            ));
        }
        for (arg, w, c) in [
            ("durable", wanted.durable, current.durable),
            ("auto_delete", wanted.auto_delete, current.auto_delete),
            ("internal", wanted.internal, current.internal),
        ] {
            if w != c {
                return Err(mismatch(arg, &w.to_string(), &c.to_string()));
            }
        }
        let (w, c) = (
            wanted.arguments.get("alternate-exchange"),
            current.arguments.get("alternate-exchange"),
        );
        match (w, c) {
            (Some(w), Some(c)) if !w.loosely_equals(c) => {
                Err(mismatch("alternate-exchange", &w.display(), &c.display()))
            }
            (Some(_), None) | (None, Some(_)) => Err(AmqpError::precondition_failed(format!(
                "inequivalent arg 'alternate-exchange' for exchange '{}' in vhost '{}': received {} but current is {}",
                current.name,
                self.name,
                describe(w),
                describe(c)
            ))),
            _ => Ok(()),
        }
    }

    /// exchange.delete. Deleting an exchange that does not exist succeeds,
    /// as in RabbitMQ 3.x. Returns whether an exchange was deleted.
    pub fn delete_exchange(&mut self, name: &str, if_unused: bool) -> Result<bool, AmqpError> {
        if name.is_empty() || is_reserved(name) {
            if name.is_empty() {
                return Err(Self::default_exchange_refused());
            }
            return Err(AmqpError::access_refused(format!(
                "deletion of system exchange '{name}' in vhost '{}' not allowed",
                self.name
            )));
        }
        let Some(x) = self.exchanges.get(name) else {
            return Ok(false);
        };
        if if_unused && x.has_bindings() {
            return Err(AmqpError::precondition_failed(format!(
                "exchange '{name}' in vhost '{}' in use",
                self.name
            )));
        }
        self.drop_exchange(name);
        self.remove_destination(&Destination::Exchange(name.to_string()));
        Ok(true)
    }

    /// Removes every binding to `dest`, then deletes auto-delete exchanges
    /// left without bindings (which may cascade).
    fn remove_destination(&mut self, dest: &Destination) {
        let mut emptied = Vec::new();
        let mut unbound = Vec::new();
        for x in self.exchanges.values_mut() {
            let gone = x.unbind_destination(dest);
            if gone.is_empty() {
                continue;
            }
            if x.spec.auto_delete && !x.has_bindings() {
                emptied.push(x.spec.name.clone());
            }
            if self.journal.is_some() {
                unbound.extend(gone.into_iter().map(|binding| TopologyChange::Unbound {
                    source: x.spec.name.clone(),
                    binding,
                }));
            }
        }
        for change in unbound {
            self.note(change);
        }
        for name in emptied {
            if self.drop_exchange(&name) {
                self.remove_destination(&Destination::Exchange(name));
            }
        }
    }

    fn check_destination(&self, dest: &Destination) -> Result<(), AmqpError> {
        match dest {
            Destination::Queue(q) if !self.queues.contains_key(q) => Err(self.no_queue(q)),
            Destination::Exchange(x) if x.is_empty() => Err(Self::default_exchange_refused()),
            Destination::Exchange(x) if !self.exchanges.contains_key(x) => Err(self.no_exchange(x)),
            _ => Ok(()),
        }
    }

    /// Checks that a message may be published to `exchange`: it exists and
    /// is not internal (the default exchange always may).
    pub fn check_publishable(&self, exchange: &str) -> Result<(), AmqpError> {
        if exchange.is_empty() {
            return Ok(());
        }
        if self.exchange(exchange)?.spec.internal {
            return Err(AmqpError::access_refused(format!(
                "cannot publish to internal exchange '{exchange}' in vhost '{}'",
                self.name
            )));
        }
        Ok(())
    }

    /// Whether a binding from `source` to `dest` outlives a restart: both
    /// ends durable. `queue_durable` says it for queues.
    pub fn binding_is_durable(
        &self,
        source: &str,
        dest: &Destination,
        queue_durable: impl Fn(&Q) -> bool,
    ) -> bool {
        let source_durable = self.exchanges.get(source).is_some_and(|x| x.spec.durable);
        source_durable
            && match dest {
                Destination::Queue(q) => self.queues.get(q).is_some_and(queue_durable),
                Destination::Exchange(x) => self.exchanges.get(x).is_some_and(|x| x.spec.durable),
            }
    }

    /// queue.bind / exchange.bind. Binding twice is harmless.
    pub fn bind(
        &mut self,
        source: &str,
        dest: Destination,
        key: &str,
        args: &FieldTable,
    ) -> Result<(), AmqpError> {
        if source.is_empty() {
            return Err(Self::default_exchange_refused());
        }
        // The source is checked before the destination, as RabbitMQ does.
        let kind = self.exchange(source)?.spec.kind;
        self.check_destination(&dest)?;
        if kind == ExchangeKind::Headers {
            validate_headers_binding(args)?;
        }
        let no_source = self.no_exchange(source);
        let x = self.exchanges.get_mut(source).ok_or(no_source)?;
        if x.bind(dest.clone(), key, args) {
            self.note(TopologyChange::Bound {
                source: source.to_string(),
                binding: Binding {
                    destination: dest,
                    routing_key: key.to_string(),
                    arguments: args.clone(),
                },
            });
        }
        Ok(())
    }

    /// queue.unbind / exchange.unbind. Removing a binding that does not
    /// exist, or whose source or destination does not exist, succeeds, as
    /// in RabbitMQ.
    pub fn unbind(
        &mut self,
        source: &str,
        dest: Destination,
        key: &str,
        args: &FieldTable,
    ) -> Result<(), AmqpError> {
        if source.is_empty() {
            return Err(Self::default_exchange_refused());
        }
        let Some(x) = self.exchanges.get_mut(source) else {
            return Ok(());
        };
        if !x.unbind(dest.clone(), key, args) {
            return Ok(());
        }
        let emptied = x.spec.auto_delete && !x.has_bindings();
        self.note(TopologyChange::Unbound {
            source: source.to_string(),
            binding: Binding {
                destination: dest,
                routing_key: key.to_string(),
                arguments: args.clone(),
            },
        });
        if emptied {
            let name = source.to_string();
            self.drop_exchange(&name);
            self.remove_destination(&Destination::Exchange(name));
        }
        Ok(())
    }

    pub fn queue(&self, name: &str) -> Option<&Q> {
        self.queues.get(name)
    }

    pub fn queues(&self) -> impl Iterator<Item = (&str, &Q)> {
        self.queues.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn insert_queue(&mut self, name: String, queue: Q) {
        self.queues.insert(name.clone(), queue);
        self.note(TopologyChange::QueueAdded(name));
    }

    /// Removes a queue and its bindings (auto-delete exchanges that lose
    /// their last binding go too).
    pub fn remove_queue(&mut self, name: &str) -> Option<Q> {
        let q = self.queues.remove(name)?;
        self.note(TopologyChange::QueueRemoved(name.to_string()));
        self.remove_destination(&Destination::Queue(name.to_string()));
        Some(q)
    }

    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Removes every queue (the vhost is being deleted); exchanges and
    /// bindings stay for the caller to drop with the vhost.
    pub fn drain_queues(&mut self) -> Vec<Q> {
        self.queues.drain().map(|(_, q)| q).collect()
    }

    /// Routes a message published to `exchange`, calling `out` for each matching
    /// queue once. Follows exchange-to-exchange bindings and
    /// alternate exchanges, each exchange at most once (cycles are cut).
    /// The default exchange routes to the queue named by the routing key.
    pub fn route<'a>(
        &'a self,
        exchange: &str,
        key: &str,
        headers: Option<&FieldTable>,
        out: &mut dyn FnMut(&'a Q),
    ) {
        if exchange.is_empty() {
            if let Some(q) = self.queues.get(key) {
                out(q);
            }
            return;
        }
        // Inline capacity covers the usual case (a handful of queues, no
        // exchange-to-exchange hops) without touching the heap.
        let mut seen_queues: SmallVec<[&str; 16]> = SmallVec::new();
        let mut many_queues: Option<HashSet<&str>> = None;
        let mut seen_exchanges: SmallVec<[&str; 4]> = SmallVec::new();
        let mut pending: SmallVec<[&str; 4]> = SmallVec::new();
        if let Some((name, _)) = self.exchanges.get_key_value(exchange) {
            pending.push(name);
            seen_exchanges.push(name);
        }
        let mut next: SmallVec<[&'a str; 4]> = SmallVec::new();
        while let Some(name) = pending.pop() {
            let Some(x) = self.exchanges.get(name) else {
                continue;
            };
            let mut matched = false;
            x.route(key, headers, &mut |dest| {
                matched = true;
                match dest {
                    Destination::Queue(q) => {
                        if let Some((qname, q)) = self.queues.get_key_value(q) {
                            let first_time = match many_queues.as_mut() {
                                Some(set) => set.insert(qname),
                                None if seen_queues.contains(&qname.as_str()) => false,
                                None if seen_queues.len() < seen_queues.inline_size() => {
                                    seen_queues.push(qname);
                                    true
                                }
                                None => {
                                    let mut set: HashSet<&str> = seen_queues.drain(..).collect();
                                    set.insert(qname);
                                    many_queues = Some(set);
                                    true
                                }
                            };
                            if first_time {
                                out(q);
                            }
                        }
                    }
                    Destination::Exchange(e) => {
                        if let Some((ename, _)) = self.exchanges.get_key_value(e) {
                            next.push(ename);
                        }
                    }
                }
            });
            if !matched {
                if let Some(ae) = x.alternate.as_deref() {
                    if let Some((ename, _)) = self.exchanges.get_key_value(ae) {
                        next.push(ename);
                    }
                }
            }
            for e in next.drain(..) {
                if !seen_exchanges.contains(&e) {
                    seen_exchanges.push(e);
                    pending.push(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use warren_protocol::{FieldValue, ReplyCode};

    fn spec(name: &str, kind: ExchangeKind) -> ExchangeSpec {
        ExchangeSpec {
            name: name.into(),
            kind,
            durable: false,
            auto_delete: false,
            internal: false,
            arguments: FieldTable::new(),
        }
    }

    #[test]
    fn the_journal_reports_every_change_cascades_included() {
        use TopologyChange::*;
        let mut v: VirtualHost<u32> = VirtualHost::new("/");
        v.declare_exchange(spec("untracked", ExchangeKind::Fanout), false)
            .unwrap();
        v.record_changes(true);
        let auto = ExchangeSpec {
            auto_delete: true,
            ..spec("auto", ExchangeKind::Fanout)
        };
        v.declare_exchange(auto, false).unwrap();
        v.declare_exchange(spec("x", ExchangeKind::Direct), false)
            .unwrap();
        v.insert_queue("q".into(), 1);
        let none = FieldTable::new();
        v.bind("auto", Destination::Queue("q".into()), "", &none)
            .unwrap();
        v.bind("x", Destination::Exchange("auto".into()), "k", &none)
            .unwrap();
        // Binding twice changes nothing.
        v.bind("x", Destination::Exchange("auto".into()), "k", &none)
            .unwrap();
        let to = |d: Destination, k: &str| Binding {
            destination: d,
            routing_key: k.into(),
            arguments: FieldTable::new(),
        };
        assert_eq!(
            v.take_changes(),
            vec![
                ExchangeDeclared("auto".into()),
                ExchangeDeclared("x".into()),
                QueueAdded("q".into()),
                Bound {
                    source: "auto".into(),
                    binding: to(Destination::Queue("q".into()), "")
                },
                Bound {
                    source: "x".into(),
                    binding: to(Destination::Exchange("auto".into()), "k")
                },
            ]
        );
        // The queue goes: its binding, then the auto-delete exchange left
        // without bindings, and the binding to that exchange.
        v.remove_queue("q");
        assert_eq!(
            v.take_changes(),
            vec![
                QueueRemoved("q".into()),
                Unbound {
                    source: "auto".into(),
                    binding: to(Destination::Queue("q".into()), "")
                },
                ExchangeDeleted("auto".into()),
                Unbound {
                    source: "x".into(),
                    binding: to(Destination::Exchange("auto".into()), "k")
                },
            ]
        );
        v.record_changes(false);
        v.delete_exchange("x", false).unwrap();
        assert!(v.take_changes().is_empty());
    }

    fn vhost_with_queues(names: &[&str]) -> VirtualHost<String> {
        let mut v = VirtualHost::new("/");
        for n in names {
            v.insert_queue(n.to_string(), n.to_string());
        }
        v
    }

    fn route(v: &VirtualHost<String>, x: &str, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        v.route(x, key, None, &mut |q| out.push(q));
        let mut names: Vec<String> = out.into_iter().cloned().collect();
        names.sort();
        names
    }

    fn q(n: &str) -> Destination {
        Destination::Queue(n.into())
    }

    #[test]
    fn default_exchange_routes_by_queue_name() {
        let v = vhost_with_queues(&["hello"]);
        assert_eq!(route(&v, "", "hello"), vec!["hello"]);
        assert!(route(&v, "", "nope").is_empty());
    }

    #[test]
    fn direct_fanout_topic_and_dedup() {
        let mut v = vhost_with_queues(&["a", "b"]);
        let t = FieldTable::new();
        v.bind("amq.direct", q("a"), "k", &t).unwrap();
        v.bind("amq.direct", q("a"), "k", &t).unwrap();
        v.bind("amq.fanout", q("a"), "", &t).unwrap();
        v.bind("amq.fanout", q("b"), "x", &t).unwrap();
        v.bind("amq.topic", q("a"), "a.*", &t).unwrap();
        v.bind("amq.topic", q("a"), "#", &t).unwrap();
        assert_eq!(route(&v, "amq.direct", "k"), vec!["a"]);
        assert_eq!(route(&v, "amq.fanout", "whatever"), vec!["a", "b"]);
        assert_eq!(route(&v, "amq.topic", "a.b"), vec!["a"]);
    }

    #[test]
    fn exchange_to_exchange_with_cycle() {
        let mut v = vhost_with_queues(&["a"]);
        let t = FieldTable::new();
        v.declare_exchange(spec("x1", ExchangeKind::Fanout), false)
            .unwrap();
        v.declare_exchange(spec("x2", ExchangeKind::Fanout), false)
            .unwrap();
        v.bind("x1", Destination::Exchange("x2".into()), "", &t)
            .unwrap();
        v.bind("x2", Destination::Exchange("x1".into()), "", &t)
            .unwrap();
        v.bind("x2", q("a"), "", &t).unwrap();
        assert_eq!(route(&v, "x1", "k"), vec!["a"]);
    }

    #[test]
    fn alternate_exchange_takes_unroutable() {
        let mut v = vhost_with_queues(&["a", "lost"]);
        let t = FieldTable::new();
        v.declare_exchange(spec("ae", ExchangeKind::Fanout), false)
            .unwrap();
        let mut main = spec("main", ExchangeKind::Direct);
        main.arguments.insert(
            "alternate-exchange",
            FieldValue::LongString(Bytes::from_static(b"ae")),
        );
        v.declare_exchange(main, false).unwrap();
        v.bind("main", q("a"), "k", &t).unwrap();
        v.bind("ae", q("lost"), "", &t).unwrap();
        assert_eq!(route(&v, "main", "k"), vec!["a"]);
        assert_eq!(route(&v, "main", "other"), vec!["lost"]);
    }

    #[test]
    fn declare_errors() {
        let mut v: VirtualHost<String> = VirtualHost::new("/");
        let err = v
            .declare_exchange(spec("amq.foo", ExchangeKind::Direct), false)
            .unwrap_err();
        assert_eq!(err.code, ReplyCode::AccessRefused);
        v.declare_exchange(spec("amq.direct", ExchangeKind::Direct), false)
            .unwrap_err();
        v.declare_exchange(spec("logs", ExchangeKind::Direct), false)
            .unwrap();
        let err = v
            .declare_exchange(spec("logs", ExchangeKind::Fanout), false)
            .unwrap_err();
        assert_eq!(err.code, ReplyCode::PreconditionFailed);
        assert_eq!(
            err.text,
            "inequivalent arg 'type' for exchange 'logs' in vhost '/': received 'fanout' but current is 'direct'"
        );
        let err = v
            .declare_exchange(spec("missing", ExchangeKind::Direct), true)
            .unwrap_err();
        assert_eq!(err.code, ReplyCode::NotFound);
        assert_eq!(err.text, "no exchange 'missing' in vhost '/'");
    }

    #[test]
    fn auto_delete_exchange_goes_with_last_binding() {
        let mut v = vhost_with_queues(&["a"]);
        let t = FieldTable::new();
        let mut s = spec("tmp", ExchangeKind::Fanout);
        s.auto_delete = true;
        v.declare_exchange(s, false).unwrap();
        v.bind("tmp", q("a"), "", &t).unwrap();
        v.remove_queue("a");
        assert!(v.exchange("tmp").is_err());
    }
}
