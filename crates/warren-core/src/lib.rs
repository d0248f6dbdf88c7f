//! Warren's broker domain, free of I/O.
//!
//! This crate owns what a broker *is*, independent of sockets and tasks:
//! - [`access`]: vhosts, users, password hashes, permissions and the
//!   access-control checks of every operation;
//! - [`error`]: protocol errors as reply code plus RabbitMQ's reply text;
//! - [`message`]: a published message, shared (never copied) by every queue it
//!   is routed to;
//! - [`routing`]: the exchange types (direct, fanout, topic, headers);
//! - [`exchange`] and [`vhost`]: exchanges, bindings, alternate exchanges and
//!   exchange-to-exchange routing inside a virtual host;
//! - [`queue`]: a queue as one deterministic state machine (ready and
//!   checked-out messages, consumers with priorities and prefetch, TTL,
//!   length limits, idle expiry), commands in and effects out;
//! - [`policy`]: policies and operator policies, their validation, which one
//!   applies to a queue or exchange, and how they merge;
//! - [`priority_store`]: a priority queue's ready messages, a store per
//!   priority level;
//! - [`dead_letter`]: the dead letters queues republish, with their
//!   `x-death` history, and the cycle rule.
//!
//! The server crate wraps these in the locks and tasks that run them.

pub mod access;
pub mod arguments;
pub mod dead_letter;
pub mod error;
pub mod exchange;
pub mod message;
pub mod names;
pub mod policy;
pub mod priority_store;
pub mod queue;
pub mod routing;
pub mod store;
pub mod vhost;

pub use error::AmqpError;
pub use exchange::{Exchange, ExchangeKind};
pub use message::{ConfirmRef, ConfirmSink, Message, QueuedMessage};
pub use priority_store::PriorityStore;
pub use queue::{ConsumerSpec, Effects, QueueConfig, QueueState};
pub use routing::Destination;
pub use store::{MemoryStore, MessageStore, StoreError, SyncTicket};
pub use vhost::VirtualHost;
