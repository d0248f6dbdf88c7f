//! Every method of every AMQP 0-9-1 class, with RabbitMQ's extensions
//! (connection.blocked/unblocked/update-secret, exchange.bind/unbind,
//! basic.nack, confirm.*).
//!
//! Each method is a plain struct; [`Method`] is the sum of them. The
//! definitions are one table below, expanded by a macro into the structs and
//! their decoders and encoders so the wire layout is written down once.

use bytes::{Bytes, BytesMut};

use crate::{DecodeError, FieldTable, Reader, Writer};

/// A field type that can appear in a method's argument list.
trait WireField: Sized {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
    fn write(&self, w: &mut Writer<'_>);
}

impl WireField for u8 {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.u8()
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.u8(*self)
    }
}
impl WireField for u16 {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.u16()
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.u16(*self)
    }
}
impl WireField for u32 {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.u32()
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.u32(*self)
    }
}
impl WireField for u64 {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.u64()
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.u64(*self)
    }
}
impl WireField for bool {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.bit()
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.bit(*self)
    }
}
/// `shortstr`
impl WireField for String {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.short_str()
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.short_str(self)
    }
}
/// `longstr`
impl WireField for Bytes {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.long_str()
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.long_str(self)
    }
}
impl WireField for FieldTable {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.table()
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.table(self)
    }
}

macro_rules! methods {
    ($(
        $(#[$doc:meta])*
        $variant:ident ($class:literal, $method:literal, $name:literal, content: $content:literal) {
            $($field:ident : $ty:ty),* $(,)?
        }
    )*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, PartialEq, Default)]
            pub struct $variant {
                $(pub $field: $ty,)*
            }

            impl $variant {
                pub const CLASS_ID: u16 = $class;
                pub const METHOD_ID: u16 = $method;
            }

            impl From<$variant> for Method {
                fn from(m: $variant) -> Method {
                    Method::$variant(m)
                }
            }
        )*

        /// Any AMQP 0-9-1 method.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Method {
            $($variant($variant),)*
        }

        impl Method {
            /// Decodes a method frame's payload (class id, method id, arguments).
            pub fn decode(payload: &[u8]) -> Result<Method, DecodeError> {
                let mut r = Reader::new(payload);
                let class_id = r.u16()?;
                let method_id = r.u16()?;
                let method = match (class_id, method_id) {
                    $(
                        ($class, $method) => {
                            Method::$variant($variant {
                                $($field: <$ty as WireField>::read(&mut r)?,)*
                            })
                        }
                    )*
                    _ => return Err(DecodeError::UnknownMethod { class_id, method_id }),
                };
                if !r.is_empty() {
                    return Err(DecodeError::Trailing(method.name()));
                }
                Ok(method)
            }

            /// Appends the method payload (class id, method id, arguments).
            pub fn encode_payload(&self, buf: &mut BytesMut) {
                let mut w = Writer::new(buf);
                match self {
                    $(
                        #[allow(unused_variables)]
                        Method::$variant(m) => {
                            w.u16($class);
                            w.u16($method);
                            $(WireField::write(&m.$field, &mut w);)*
                        }
                    )*
                }
            }

            pub fn class_id(&self) -> u16 {
                match self { $(Method::$variant(_) => $class,)* }
            }

            pub fn method_id(&self) -> u16 {
                match self { $(Method::$variant(_) => $method,)* }
            }

            /// The method's name as RabbitMQ writes it in reply texts,
            /// e.g. `basic.publish`.
            pub fn name(&self) -> &'static str {
                match self { $(Method::$variant(_) => $name,)* }
            }

            /// Whether a content header and body follow this method.
            pub fn has_content(&self) -> bool {
                match self { $(Method::$variant(_) => $content,)* }
            }
        }

        /// The name of a class/method pair, for reply texts.
        pub fn method_name(class_id: u16, method_id: u16) -> Option<&'static str> {
            match (class_id, method_id) {
                $(($class, $method) => Some($name),)*
                _ => None,
            }
        }
    };
}

methods! {
    ConnectionStart (10, 10, "connection.start", content: false) {
        version_major: u8, version_minor: u8, server_properties: FieldTable,
        mechanisms: Bytes, locales: Bytes,
    }
    ConnectionStartOk (10, 11, "connection.start_ok", content: false) {
        client_properties: FieldTable, mechanism: String, response: Bytes, locale: String,
    }
    ConnectionSecure (10, 20, "connection.secure", content: false) { challenge: Bytes }
    ConnectionSecureOk (10, 21, "connection.secure_ok", content: false) { response: Bytes }
    ConnectionTune (10, 30, "connection.tune", content: false) {
        channel_max: u16, frame_max: u32, heartbeat: u16,
    }
    ConnectionTuneOk (10, 31, "connection.tune_ok", content: false) {
        channel_max: u16, frame_max: u32, heartbeat: u16,
    }
    ConnectionOpen (10, 40, "connection.open", content: false) {
        virtual_host: String, capabilities: String, insist: bool,
    }
    ConnectionOpenOk (10, 41, "connection.open_ok", content: false) { known_hosts: String }
    ConnectionClose (10, 50, "connection.close", content: false) {
        reply_code: u16, reply_text: String, class_id: u16, method_id: u16,
    }
    ConnectionCloseOk (10, 51, "connection.close_ok", content: false) {}
    ConnectionBlocked (10, 60, "connection.blocked", content: false) { reason: String }
    ConnectionUnblocked (10, 61, "connection.unblocked", content: false) {}
    ConnectionUpdateSecret (10, 70, "connection.update_secret", content: false) {
        new_secret: Bytes, reason: String,
    }
    ConnectionUpdateSecretOk (10, 71, "connection.update_secret_ok", content: false) {}

    ChannelOpen (20, 10, "channel.open", content: false) { out_of_band: String }
    ChannelOpenOk (20, 11, "channel.open_ok", content: false) { channel_id: Bytes }
    ChannelFlow (20, 20, "channel.flow", content: false) { active: bool }
    ChannelFlowOk (20, 21, "channel.flow_ok", content: false) { active: bool }
    ChannelClose (20, 40, "channel.close", content: false) {
        reply_code: u16, reply_text: String, class_id: u16, method_id: u16,
    }
    ChannelCloseOk (20, 41, "channel.close_ok", content: false) {}

    AccessRequest (30, 10, "access.request", content: false) {
        realm: String, exclusive: bool, passive: bool, active: bool, write: bool, read: bool,
    }
    AccessRequestOk (30, 11, "access.request_ok", content: false) { ticket: u16 }

    ExchangeDeclare (40, 10, "exchange.declare", content: false) {
        ticket: u16, exchange: String, kind: String, passive: bool, durable: bool,
        auto_delete: bool, internal: bool, nowait: bool, arguments: FieldTable,
    }
    ExchangeDeclareOk (40, 11, "exchange.declare_ok", content: false) {}
    ExchangeDelete (40, 20, "exchange.delete", content: false) {
        ticket: u16, exchange: String, if_unused: bool, nowait: bool,
    }
    ExchangeDeleteOk (40, 21, "exchange.delete_ok", content: false) {}
    ExchangeBind (40, 30, "exchange.bind", content: false) {
        ticket: u16, destination: String, source: String, routing_key: String, nowait: bool,
        arguments: FieldTable,
    }
    ExchangeBindOk (40, 31, "exchange.bind_ok", content: false) {}
    ExchangeUnbind (40, 40, "exchange.unbind", content: false) {
        ticket: u16, destination: String, source: String, routing_key: String, nowait: bool,
        arguments: FieldTable,
    }
    ExchangeUnbindOk (40, 51, "exchange.unbind_ok", content: false) {}

    QueueDeclare (50, 10, "queue.declare", content: false) {
        ticket: u16, queue: String, passive: bool, durable: bool, exclusive: bool,
        auto_delete: bool, nowait: bool, arguments: FieldTable,
    }
    QueueDeclareOk (50, 11, "queue.declare_ok", content: false) {
        queue: String, message_count: u32, consumer_count: u32,
    }
    QueueBind (50, 20, "queue.bind", content: false) {
        ticket: u16, queue: String, exchange: String, routing_key: String, nowait: bool,
        arguments: FieldTable,
    }
    QueueBindOk (50, 21, "queue.bind_ok", content: false) {}
    QueuePurge (50, 30, "queue.purge", content: false) { ticket: u16, queue: String, nowait: bool }
    QueuePurgeOk (50, 31, "queue.purge_ok", content: false) { message_count: u32 }
    QueueDelete (50, 40, "queue.delete", content: false) {
        ticket: u16, queue: String, if_unused: bool, if_empty: bool, nowait: bool,
    }
    QueueDeleteOk (50, 41, "queue.delete_ok", content: false) { message_count: u32 }
    QueueUnbind (50, 50, "queue.unbind", content: false) {
        ticket: u16, queue: String, exchange: String, routing_key: String, arguments: FieldTable,
    }
    QueueUnbindOk (50, 51, "queue.unbind_ok", content: false) {}

    BasicQos (60, 10, "basic.qos", content: false) {
        prefetch_size: u32, prefetch_count: u16, global: bool,
    }
    BasicQosOk (60, 11, "basic.qos_ok", content: false) {}
    BasicConsume (60, 20, "basic.consume", content: false) {
        ticket: u16, queue: String, consumer_tag: String, no_local: bool, no_ack: bool,
        exclusive: bool, nowait: bool, arguments: FieldTable,
    }
    BasicConsumeOk (60, 21, "basic.consume_ok", content: false) { consumer_tag: String }
    BasicCancel (60, 30, "basic.cancel", content: false) { consumer_tag: String, nowait: bool }
    BasicCancelOk (60, 31, "basic.cancel_ok", content: false) { consumer_tag: String }
    BasicPublish (60, 40, "basic.publish", content: true) {
        ticket: u16, exchange: String, routing_key: String, mandatory: bool, immediate: bool,
    }
    BasicReturn (60, 50, "basic.return", content: true) {
        reply_code: u16, reply_text: String, exchange: String, routing_key: String,
    }
    BasicDeliver (60, 60, "basic.deliver", content: true) {
        consumer_tag: String, delivery_tag: u64, redelivered: bool, exchange: String,
        routing_key: String,
    }
    BasicGet (60, 70, "basic.get", content: false) { ticket: u16, queue: String, no_ack: bool }
    BasicGetOk (60, 71, "basic.get_ok", content: true) {
        delivery_tag: u64, redelivered: bool, exchange: String, routing_key: String,
        message_count: u32,
    }
    BasicGetEmpty (60, 72, "basic.get_empty", content: false) { cluster_id: String }
    BasicAck (60, 80, "basic.ack", content: false) { delivery_tag: u64, multiple: bool }
    BasicReject (60, 90, "basic.reject", content: false) { delivery_tag: u64, requeue: bool }
    BasicRecoverAsync (60, 100, "basic.recover_async", content: false) { requeue: bool }
    BasicRecover (60, 110, "basic.recover", content: false) { requeue: bool }
    BasicRecoverOk (60, 111, "basic.recover_ok", content: false) {}
    BasicNack (60, 120, "basic.nack", content: false) {
        delivery_tag: u64, multiple: bool, requeue: bool,
    }

    ConfirmSelect (85, 10, "confirm.select", content: false) { nowait: bool }
    ConfirmSelectOk (85, 11, "confirm.select_ok", content: false) {}

    TxSelect (90, 10, "tx.select", content: false) {}
    TxSelectOk (90, 11, "tx.select_ok", content: false) {}
    TxCommit (90, 20, "tx.commit", content: false) {}
    TxCommitOk (90, 21, "tx.commit_ok", content: false) {}
    TxRollback (90, 30, "tx.rollback", content: false) {}
    TxRollbackOk (90, 31, "tx.rollback_ok", content: false) {}
}
