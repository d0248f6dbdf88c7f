//! Permissions: what a user may do in a virtual host, and the table that
//! says which permission each AMQP operation needs.
//!
//! As in RabbitMQ, a user's permissions in a vhost are three regular
//! expressions (configure, write, read) searched (not anchored) in the
//! resource name; an empty pattern matches only the empty name, so it
//! denies everything. The default exchange is checked under the name
//! `amq.default`. Topic permissions add a write and a read pattern per
//! topic exchange, searched in routing keys, with `{username}` and
//! `{vhost}` expanded first; an exchange without one is unrestricted.

use regex::Regex;
use smallvec::SmallVec;

use crate::AmqpError;

/// The three kinds of access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    Configure,
    Write,
    Read,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Configure => "configure",
            Permission::Write => "write",
            Permission::Read => "read",
        }
    }
}

/// What a permission is checked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Exchange,
    Queue,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Exchange => "exchange",
            ResourceKind::Queue => "queue",
        }
    }
}

/// A compiled permission pattern, with the text it came from.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    matcher: Matcher,
}

#[derive(Debug, Clone)]
enum Matcher {
    /// `.*` and the like: everything (the common case, kept off the regex
    /// engine on the publish path).
    Any,
    /// The empty pattern: only the empty name.
    Empty,
    Regex(Regex),
}

/// A pattern that is not a valid regular expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid regular expression '{pattern}': {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

impl Pattern {
    pub fn new(source: &str) -> Result<Self, PatternError> {
        let matcher = match source {
            "" => Matcher::Empty,
            ".*" | "^.*" | "^.*$" | ".*$" => Matcher::Any,
            _ => Matcher::Regex(Regex::new(source).map_err(|e| PatternError {
                pattern: source.to_string(),
                reason: e.to_string(),
            })?),
        };
        Ok(Pattern {
            source: source.to_string(),
            matcher,
        })
    }

    /// Everything: `.*`.
    pub fn any() -> Self {
        Pattern {
            source: ".*".into(),
            matcher: Matcher::Any,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern occurs in `name`.
    pub fn matches(&self, name: &str) -> bool {
        match &self.matcher {
            Matcher::Any => true,
            Matcher::Empty => name.is_empty(),
            Matcher::Regex(re) => re.is_match(name),
        }
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

/// A user's permissions in one virtual host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub configure: Pattern,
    pub write: Pattern,
    pub read: Pattern,
}

impl Permissions {
    pub fn new(configure: &str, write: &str, read: &str) -> Result<Self, PatternError> {
        Ok(Permissions {
            configure: Pattern::new(configure)?,
            write: Pattern::new(write)?,
            read: Pattern::new(read)?,
        })
    }

    /// `.*` for all three, as the default user gets.
    pub fn all() -> Self {
        Permissions {
            configure: Pattern::any(),
            write: Pattern::any(),
            read: Pattern::any(),
        }
    }

    pub fn pattern(&self, permission: Permission) -> &Pattern {
        match permission {
            Permission::Configure => &self.configure,
            Permission::Write => &self.write,
            Permission::Read => &self.read,
        }
    }
}

/// A user's topic permission on one exchange of a vhost, as set: the
/// patterns may name `{username}` and `{vhost}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPermission {
    pub exchange: String,
    pub write: String,
    pub read: String,
}

impl TopicPermission {
    /// Checks that both patterns compile (with variables expanded to a
    /// plain word, as they will be at use).
    pub fn validate(&self) -> Result<(), PatternError> {
        for p in [&self.write, &self.read] {
            Pattern::new(&expand(p, "user", "vhost"))?;
        }
        Ok(())
    }
}

/// Replaces `{username}` and `{vhost}` in a topic pattern.
fn expand(pattern: &str, user: &str, vhost: &str) -> String {
    pattern
        .replace("{username}", user)
        .replace("{vhost}", vhost)
}

/// One AMQP operation, with the names its permission checks need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation<'a> {
    /// A passive declare needs nothing.
    ExchangeDeclare {
        exchange: &'a str,
        passive: bool,
        alternate_exchange: Option<&'a str>,
    },
    ExchangeDelete {
        exchange: &'a str,
    },
    /// A passive declare needs nothing.
    QueueDeclare {
        queue: &'a str,
        passive: bool,
        dead_letter_exchange: Option<&'a str>,
    },
    QueueDelete {
        queue: &'a str,
    },
    /// queue.bind and queue.unbind.
    QueueBind {
        queue: &'a str,
        exchange: &'a str,
    },
    /// exchange.bind and exchange.unbind.
    ExchangeBind {
        destination: &'a str,
        source: &'a str,
    },
    Publish {
        exchange: &'a str,
    },
    Get {
        queue: &'a str,
    },
    Consume {
        queue: &'a str,
    },
    Purge {
        queue: &'a str,
    },
}

/// One check an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement<'a> {
    pub permission: Permission,
    pub kind: ResourceKind,
    pub name: &'a str,
}

impl<'a> Operation<'a> {
    /// The checks, in the order RabbitMQ makes them (the first that fails
    /// names the refusal).
    pub fn requirements(&self) -> SmallVec<[Requirement<'a>; 3]> {
        use Permission::*;
        use ResourceKind::*;
        let r = |permission, kind, name| Requirement {
            permission,
            kind,
            name,
        };
        let mut out = SmallVec::new();
        match *self {
            Operation::ExchangeDeclare {
                exchange,
                passive,
                alternate_exchange,
            } => {
                if !passive {
                    out.push(r(Configure, Exchange, exchange));
                    if let Some(ae) = alternate_exchange {
                        out.push(r(Read, Exchange, exchange));
                        out.push(r(Write, Exchange, ae));
                    }
                }
            }
            Operation::ExchangeDelete { exchange } => out.push(r(Configure, Exchange, exchange)),
            Operation::QueueDeclare {
                queue,
                passive,
                dead_letter_exchange,
            } => {
                if !passive {
                    out.push(r(Configure, Queue, queue));
                    if let Some(dlx) = dead_letter_exchange {
                        out.push(r(Read, Queue, queue));
                        out.push(r(Write, Exchange, dlx));
                    }
                }
            }
            Operation::QueueDelete { queue } => out.push(r(Configure, Queue, queue)),
            Operation::QueueBind { queue, exchange } => {
                out.push(r(Write, Queue, queue));
                out.push(r(Read, Exchange, exchange));
            }
            Operation::ExchangeBind {
                destination,
                source,
            } => {
                out.push(r(Write, Exchange, destination));
                out.push(r(Read, Exchange, source));
            }
            Operation::Publish { exchange } => out.push(r(Write, Exchange, exchange)),
            Operation::Get { queue }
            | Operation::Consume { queue }
            | Operation::Purge { queue } => out.push(r(Read, Queue, queue)),
        }
        out
    }
}

/// How many passed checks a channel remembers, as RabbitMQ's channels do.
pub const CACHE_SIZE: usize = 12;

/// The checks a channel has passed lately. As in RabbitMQ, a check found
/// here passes without consulting the permissions again, so revoking a
/// permission does not affect a channel that used it recently; a grant
/// takes effect at once. Entries leave in the order they came.
#[derive(Debug, Default, Clone)]
pub struct CheckCache {
    resources: std::collections::VecDeque<(Permission, ResourceKind, String)>,
    topics: std::collections::VecDeque<(Permission, String, String)>,
}

impl CheckCache {
    fn has_resource(&self, permission: Permission, kind: ResourceKind, name: &str) -> bool {
        self.resources
            .iter()
            .any(|(p, k, n)| *p == permission && *k == kind && n == name)
    }

    fn add_resource(&mut self, permission: Permission, kind: ResourceKind, name: &str) {
        if self.resources.len() == CACHE_SIZE {
            self.resources.pop_back();
        }
        self.resources
            .push_front((permission, kind, name.to_string()));
    }

    fn has_topic(&self, permission: Permission, exchange: &str, key: &str) -> bool {
        self.topics
            .iter()
            .any(|(p, x, k)| *p == permission && x == exchange && k == key)
    }

    fn add_topic(&mut self, permission: Permission, exchange: &str, key: &str) {
        if self.topics.len() == CACHE_SIZE {
            self.topics.pop_back();
        }
        self.topics
            .push_front((permission, exchange.to_string(), key.to_string()));
    }
}

/// What one connection's user may do in its vhost: the permissions and
/// topic permissions resolved once (patterns compiled, variables
/// expanded), checked on every operation.
#[derive(Debug, Clone)]
pub struct Grants {
    pub user: String,
    pub vhost: String,
    /// `None`: no permissions in this vhost at all.
    pub permissions: Option<Permissions>,
    /// Per topic exchange: (write, read).
    pub topics: Vec<(String, Pattern, Pattern)>,
}

impl Grants {
    /// Resolves `topic` permissions for `user` in `vhost`. Patterns that do
    /// not compile after expansion deny everything.
    pub fn new(
        user: &str,
        vhost: &str,
        permissions: Option<Permissions>,
        topic: &[TopicPermission],
    ) -> Self {
        let compile = |p: &str| {
            Pattern::new(&expand(p, user, vhost)).unwrap_or_else(|_| Pattern {
                source: p.to_string(),
                matcher: Matcher::Empty,
            })
        };
        Grants {
            user: user.to_string(),
            vhost: vhost.to_string(),
            permissions,
            topics: topic
                .iter()
                .map(|t| (t.exchange.clone(), compile(&t.write), compile(&t.read)))
                .collect(),
        }
    }

    /// Whether `permission` on `name` is granted (the default exchange is
    /// `amq.default`).
    pub fn allows(&self, permission: Permission, kind: ResourceKind, name: &str) -> bool {
        let name = if kind == ResourceKind::Exchange && name.is_empty() {
            "amq.default"
        } else {
            name
        };
        self.permissions
            .as_ref()
            .is_some_and(|p| p.pattern(permission).matches(name))
    }

    /// Checks every requirement of `op`, refusing with RabbitMQ's 403.
    pub fn check(&self, op: &Operation<'_>) -> Result<(), AmqpError> {
        self.check_cached(op, &mut CheckCache::default())
    }

    /// Like [`check`](Self::check), passing what `cache` remembers and
    /// remembering what passes.
    pub fn check_cached(
        &self,
        op: &Operation<'_>,
        cache: &mut CheckCache,
    ) -> Result<(), AmqpError> {
        for req in op.requirements() {
            if cache.has_resource(req.permission, req.kind, req.name) {
                continue;
            }
            if self.allows(req.permission, req.kind, req.name) {
                cache.add_resource(req.permission, req.kind, req.name);
            } else {
                let name = if req.kind == ResourceKind::Exchange && req.name.is_empty() {
                    "amq.default"
                } else {
                    req.name
                };
                return Err(AmqpError::access_refused(format!(
                    "access to {} '{}' in vhost '{}' refused for user '{}'",
                    req.kind.as_str(),
                    name,
                    self.vhost,
                    self.user
                )));
            }
        }
        Ok(())
    }

    /// Checks a routing key against the topic permission of a topic
    /// exchange: `Write` when publishing, `Read` when binding.
    pub fn check_topic(
        &self,
        permission: Permission,
        exchange: &str,
        routing_key: &str,
        cache: &mut CheckCache,
    ) -> Result<(), AmqpError> {
        let Some((_, write, read)) = self.topics.iter().find(|(x, _, _)| x == exchange) else {
            return Ok(());
        };
        if cache.has_topic(permission, exchange, routing_key) {
            return Ok(());
        }
        let pattern = if permission == Permission::Write {
            write
        } else {
            read
        };
        if pattern.matches(routing_key) {
            cache.add_topic(permission, exchange, routing_key);
            return Ok(());
        }
        Err(AmqpError::access_refused(format!(
            "access to topic '{}' in exchange '{}' in vhost '{}' refused for user '{}'",
            routing_key, exchange, self.vhost, self.user
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_protocol::ReplyCode;

    fn grants(configure: &str, write: &str, read: &str) -> Grants {
        Grants::new(
            "u",
            "v",
            Some(Permissions::new(configure, write, read).unwrap()),
            &[],
        )
    }

    #[test]
    fn patterns_are_unanchored_searches_and_empty_denies() {
        let p = Pattern::new("foo").unwrap();
        assert!(p.matches("foo"));
        assert!(p.matches("a-foo-b"));
        assert!(!p.matches("fo"));
        let anchored = Pattern::new("^foo$").unwrap();
        assert!(!anchored.matches("a-foo"));
        assert!(Pattern::new(".*").unwrap().matches(""));
        let empty = Pattern::new("").unwrap();
        assert!(!empty.matches("x"));
        assert!(Pattern::new("(").is_err());
    }

    /// The access-control table: each operation, the permission it needs
    /// on which resource, granted and refused.
    #[test]
    fn every_operation_needs_what_the_table_says() {
        use Operation as O;
        let x = "ex";
        let q = "qu";
        // (configure, write, read) patterns.
        type Perms<'a> = &'a [(&'a str, &'a str, &'a str)];
        let cases: Vec<(O, Perms, Perms, &str)> = vec![
            (
                O::ExchangeDeclare {
                    exchange: x,
                    passive: false,
                    alternate_exchange: None,
                },
                &[("^ex$", "", "")],
                &[("", ".*", ".*")],
                "access to exchange 'ex' in vhost 'v' refused for user 'u'",
            ),
            (
                O::ExchangeDeclare {
                    exchange: x,
                    passive: true,
                    alternate_exchange: None,
                },
                &[("", "", "")],
                &[],
                "",
            ),
            (
                O::ExchangeDeclare {
                    exchange: x,
                    passive: false,
                    alternate_exchange: Some("ae"),
                },
                &[("^ex$", "^ae$", "^ex$")],
                &[("^ex$", "^ex$", "^ex$")],
                "access to exchange 'ae' in vhost 'v' refused for user 'u'",
            ),
            (
                O::ExchangeDelete { exchange: x },
                &[("ex", "", "")],
                &[("", ".*", ".*")],
                "access to exchange 'ex' in vhost 'v' refused for user 'u'",
            ),
            (
                O::QueueDeclare {
                    queue: q,
                    passive: false,
                    dead_letter_exchange: None,
                },
                &[("qu", "", "")],
                &[("ex", ".*", ".*")],
                "access to queue 'qu' in vhost 'v' refused for user 'u'",
            ),
            (
                O::QueueDeclare {
                    queue: q,
                    passive: true,
                    dead_letter_exchange: None,
                },
                &[("", "", "")],
                &[],
                "",
            ),
            (
                O::QueueDeclare {
                    queue: q,
                    passive: false,
                    dead_letter_exchange: Some("dlx"),
                },
                &[("qu", "dlx", "qu")],
                &[("qu", "dlx", "")],
                "access to queue 'qu' in vhost 'v' refused for user 'u'",
            ),
            (
                O::QueueDelete { queue: q },
                &[("qu", "", "")],
                &[("", ".*", ".*")],
                "access to queue 'qu' in vhost 'v' refused for user 'u'",
            ),
            (
                O::QueueBind {
                    queue: q,
                    exchange: x,
                },
                &[("", "qu", "ex")],
                &[("", "qu", "")],
                "access to exchange 'ex' in vhost 'v' refused for user 'u'",
            ),
            (
                O::QueueBind {
                    queue: q,
                    exchange: x,
                },
                &[],
                &[(".*", "ex", ".*")],
                "access to queue 'qu' in vhost 'v' refused for user 'u'",
            ),
            (
                O::ExchangeBind {
                    destination: "d",
                    source: "s",
                },
                &[("", "^d$", "^s$")],
                &[("", "^s$", "^d$")],
                "access to exchange 'd' in vhost 'v' refused for user 'u'",
            ),
            (
                O::Publish { exchange: "" },
                &[("", "amq\\.default", "")],
                &[(".*", "", ".*")],
                "access to exchange 'amq.default' in vhost 'v' refused for user 'u'",
            ),
            (
                O::Get { queue: q },
                &[("", "", "qu")],
                &[(".*", ".*", "")],
                "access to queue 'qu' in vhost 'v' refused for user 'u'",
            ),
            (
                O::Consume { queue: q },
                &[("", "", "^qu")],
                &[(".*", ".*", "^x")],
                "access to queue 'qu' in vhost 'v' refused for user 'u'",
            ),
            (
                O::Purge { queue: q },
                &[("", "", "u$")],
                &[(".*", ".*", "")],
                "access to queue 'qu' in vhost 'v' refused for user 'u'",
            ),
        ];
        for (op, granted, refused, text) in cases {
            for (c, w, r) in granted {
                assert_eq!(
                    grants(c, w, r).check(&op),
                    Ok(()),
                    "{op:?} with {c}/{w}/{r}"
                );
            }
            for (c, w, r) in refused {
                let err = grants(c, w, r).check(&op).unwrap_err();
                assert_eq!(err.code, ReplyCode::AccessRefused);
                assert_eq!(err.text, text, "{op:?} with {c}/{w}/{r}");
            }
        }
    }

    #[test]
    fn a_channel_keeps_passing_the_last_twelve_checks_it_passed() {
        let open = grants(".*", ".*", ".*");
        let closed = grants("", "", "");
        let mut cache = CheckCache::default();
        let op = |q| Operation::Get { queue: q };
        let names: Vec<String> = (0..13).map(|i| format!("q{i}")).collect();
        for n in &names {
            open.check_cached(&op(n), &mut cache).unwrap();
        }
        // Revoked: the twelve most recent still pass, the oldest does not.
        for n in &names[1..] {
            assert!(closed.check_cached(&op(n), &mut cache).is_ok(), "{n}");
        }
        assert!(closed.check_cached(&op(&names[0]), &mut cache).is_err());
        assert!(closed.check_cached(&op("new"), &mut cache).is_err());
    }

    #[test]
    fn no_permissions_in_the_vhost_refuses_everything_but_passive_declares() {
        let g = Grants::new("u", "v", None, &[]);
        assert!(g.check(&Operation::Publish { exchange: "x" }).is_err());
        assert!(g
            .check(&Operation::QueueDeclare {
                queue: "q",
                passive: true,
                dead_letter_exchange: None
            })
            .is_ok());
    }

    #[test]
    fn topic_permissions_expand_variables_and_leave_other_exchanges_alone() {
        let g = Grants::new(
            "alice",
            "prod",
            Some(Permissions::all()),
            &[TopicPermission {
                exchange: "amq.topic".into(),
                write: "^{username}\\.".into(),
                read: "^{vhost}\\.".into(),
            }],
        );
        assert!(g
            .check_topic(
                Permission::Write,
                "amq.topic",
                "alice.x",
                &mut CheckCache::default()
            )
            .is_ok());
        let err = g
            .check_topic(
                Permission::Write,
                "amq.topic",
                "bob.x",
                &mut CheckCache::default(),
            )
            .unwrap_err();
        assert_eq!(
            err.text,
            "access to topic 'bob.x' in exchange 'amq.topic' in vhost 'prod' refused for user 'alice'"
        );
        let mut cache = CheckCache::default();
        assert!(g
            .check_topic(Permission::Read, "amq.topic", "prod.a", &mut cache)
            .is_ok());
        assert!(g
            .check_topic(Permission::Read, "amq.topic", "alice.a", &mut cache)
            .is_err());
        assert!(g
            .check_topic(Permission::Write, "other", "bob.x", &mut cache)
            .is_ok());
    }
}
