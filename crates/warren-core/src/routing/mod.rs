//! Exchange types: how each kind of exchange matches a message's routing key
//! (and headers) against its bindings.
//!
//! A router only knows destinations by name; the virtual host resolves names
//! to queues and follows exchange-to-exchange bindings.

mod direct;
mod fanout;
mod headers;
mod topic;

pub use direct::DirectRouter;
pub use fanout::FanoutRouter;
pub use headers::{headers_match, HeadersRouter};
pub use topic::TopicRouter;

use warren_protocol::FieldTable;

/// Where a binding sends matching messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    Queue(String),
    Exchange(String),
}

impl Destination {
    pub fn name(&self) -> &str {
        match self {
            Destination::Queue(n) | Destination::Exchange(n) => n,
        }
    }
}

/// The matching structure of one exchange. A binding that exists twice with
/// different arguments is held twice; routing results are de-duplicated by
/// the caller.
#[derive(Debug)]
pub enum Router {
    Direct(DirectRouter),
    Fanout(FanoutRouter),
    Topic(TopicRouter),
    Headers(HeadersRouter),
}

impl Router {
    pub fn bind(&mut self, dest: &Destination, key: &str, args: &FieldTable) {
        match self {
            Router::Direct(r) => r.bind(dest, key),
            Router::Fanout(r) => r.bind(dest),
            Router::Topic(r) => r.bind(dest, key),
            Router::Headers(r) => r.bind(dest, args),
        }
    }

    pub fn unbind(&mut self, dest: &Destination, key: &str, args: &FieldTable) {
        match self {
            Router::Direct(r) => r.unbind(dest, key),
            Router::Fanout(r) => r.unbind(dest),
            Router::Topic(r) => r.unbind(dest, key),
            Router::Headers(r) => r.unbind(dest, args),
        }
    }

    /// Calls `out` for every destination whose binding matches (possibly
    /// more than once for one destination).
    pub fn route(
        &self,
        key: &str,
        headers: Option<&FieldTable>,
        out: &mut dyn FnMut(&Destination),
    ) {
        match self {
            Router::Direct(r) => r.route(key, out),
            Router::Fanout(r) => r.route(out),
            Router::Topic(r) => r.route(key, out),
            Router::Headers(r) => r.route(headers, out),
        }
    }
}
