//! Exchanges and their bindings.

use crate::policy::Applied;
use ahash::AHashMap as HashMap;
use bytes::{Bytes, BytesMut};
use warren_protocol::{FieldTable, FieldValue};

use crate::routing::{DirectRouter, FanoutRouter, HeadersRouter, Router, TopicRouter};
use crate::{AmqpError, Destination};

/// The exchange types Warren implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    /// Parses a type name from exchange.declare; unknown types are a
    /// connection error (503), as in RabbitMQ.
    pub fn parse(name: &str) -> Result<Self, AmqpError> {
        Ok(match name {
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            "headers" => ExchangeKind::Headers,
            other => {
                return Err(AmqpError::command_invalid(format!(
                    "invalid exchange type '{other}'"
                )))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }

    fn router(self) -> Router {
        match self {
            ExchangeKind::Direct => Router::Direct(DirectRouter::default()),
            ExchangeKind::Fanout => Router::Fanout(FanoutRouter::default()),
            ExchangeKind::Topic => Router::Topic(TopicRouter::default()),
            ExchangeKind::Headers => Router::Headers(HeadersRouter::default()),
        }
    }
}

/// A binding's identity: destination, routing key and arguments (encoded, so
/// that it can be hashed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BindingKey {
    destination: Destination,
    routing_key: String,
    arguments: Bytes,
}

/// A binding as listed to users.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub destination: Destination,
    pub routing_key: String,
    pub arguments: FieldTable,
}

/// The properties an exchange is declared with.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeSpec {
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

#[derive(Debug)]
pub struct Exchange {
    pub spec: ExchangeSpec,
    /// The alternate exchange, where messages that match no binding go:
    /// the `alternate-exchange` argument, else a policy's.
    pub alternate: Option<String>,
    /// The policy and operator policy that apply to it.
    pub policies: Applied,
    /// The user that declared it (`None` for the predeclared ones), as the
    /// management API shows it.
    pub created_by: Option<String>,
    bindings: HashMap<BindingKey, FieldTable>,
    router: Router,
}

fn encode_args(args: &FieldTable) -> Bytes {
    if args.is_empty() {
        return Bytes::new();
    }
    let mut buf = BytesMut::new();
    args.encode(&mut buf);
    buf.freeze()
}

impl Exchange {
    pub fn new(spec: ExchangeSpec) -> Self {
        let alternate = Self::alternate_of(&spec, &Applied::default());
        Exchange {
            router: spec.kind.router(),
            spec,
            alternate,
            policies: Applied::default(),
            created_by: None,
            bindings: HashMap::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    fn alternate_of(spec: &ExchangeSpec, policies: &Applied) -> Option<String> {
        let text = |v: &FieldValue| match v {
            FieldValue::LongString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        };
        match spec.arguments.get("alternate-exchange") {
            Some(v) => text(v),
            None => policies.get("alternate-exchange").as_ref().and_then(text),
        }
    }

    /// The policies that apply changed: the argument still wins over a
    /// policy's alternate exchange, as in RabbitMQ.
    pub fn set_policies(&mut self, policies: Applied) {
        self.alternate = Self::alternate_of(&self.spec, &policies);
        self.policies = policies;
    }

    /// Adds a binding; returns false if it already existed.
    pub fn bind(&mut self, destination: Destination, routing_key: &str, args: &FieldTable) -> bool {
        let key = BindingKey {
            destination,
            routing_key: routing_key.to_string(),
            arguments: encode_args(args),
        };
        if self.bindings.contains_key(&key) {
            return false;
        }
        self.router.bind(&key.destination, routing_key, args);
        self.bindings.insert(key, args.clone());
        true
    }

    /// Removes a binding; returns false if it did not exist.
    pub fn unbind(
        &mut self,
        destination: Destination,
        routing_key: &str,
        args: &FieldTable,
    ) -> bool {
        let key = BindingKey {
            destination,
            routing_key: routing_key.to_string(),
            arguments: encode_args(args),
        };
        match self.bindings.remove(&key) {
            Some(args) => {
                self.router.unbind(&key.destination, routing_key, &args);
                true
            }
            None => false,
        }
    }

    /// Removes every binding to `destination`; returns them.
    pub fn unbind_destination(&mut self, destination: &Destination) -> Vec<Binding> {
        let keys: Vec<BindingKey> = self
            .bindings
            .keys()
            .filter(|k| &k.destination == destination)
            .cloned()
            .collect();
        let mut removed = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(args) = self.bindings.remove(&key) {
                self.router
                    .unbind(&key.destination, &key.routing_key, &args);
                removed.push(Binding {
                    destination: key.destination,
                    routing_key: key.routing_key,
                    arguments: args,
                });
            }
        }
        removed
    }

    pub fn has_bindings(&self) -> bool {
        !self.bindings.is_empty()
    }

    pub fn bindings(&self) -> impl Iterator<Item = Binding> + '_ {
        self.bindings.iter().map(|(k, args)| Binding {
            destination: k.destination.clone(),
            routing_key: k.routing_key.clone(),
            arguments: args.clone(),
        })
    }

    /// Calls `out` for each destination a message matches.
    pub fn route(
        &self,
        key: &str,
        headers: Option<&FieldTable>,
        out: &mut dyn FnMut(&Destination),
    ) {
        self.router.route(key, headers, out)
    }
}
