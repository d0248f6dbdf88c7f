//! Validation of the `x-` arguments RabbitMQ checks on queue.declare,
//! basic.consume and headers bindings, with RabbitMQ's reply texts.

use warren_protocol::{FieldTable, FieldValue};

use crate::AmqpError;

/// RabbitMQ's name for a field value's type, as it appears in reply texts.
pub fn type_name(v: &FieldValue) -> &'static str {
    match v {
        FieldValue::Bool(_) => "bool",
        FieldValue::I8(_) => "byte",
        FieldValue::U8(_) => "unsignedbyte",
        FieldValue::I16(_) => "short",
        FieldValue::U16(_) => "unsignedshort",
        FieldValue::I32(_) => "signedint",
        FieldValue::U32(_) => "unsignedint",
        FieldValue::I64(_) | FieldValue::U64(_) => "long",
        FieldValue::F32(_) => "float",
        FieldValue::F64(_) => "double",
        FieldValue::Decimal { .. } => "decimal",
        FieldValue::LongString(_) => "longstr",
        FieldValue::Array(_) => "array",
        FieldValue::Timestamp(_) => "timestamp",
        FieldValue::Table(_) => "table",
        FieldValue::Void => "void",
        FieldValue::ByteArray(_) => "binary",
    }
}

/// How a value appears in RabbitMQ's "inequivalent arg" texts.
pub fn describe(v: Option<&FieldValue>) -> String {
    match v {
        Some(v) => format!("the value '{}' of type '{}'", v.display(), type_name(v)),
        None => "none".to_string(),
    }
}

fn integer(v: &FieldValue) -> Option<i64> {
    match v {
        FieldValue::Timestamp(_) => None,
        other => other.as_i64(),
    }
}

fn text(v: &FieldValue) -> Option<&[u8]> {
    match v {
        FieldValue::LongString(b) => Some(b),
        _ => None,
    }
}

/// Arguments a queue type refuses, as RabbitMQ 3.10 lists them.
const NOT_FOR_CLASSIC: &[&str] = &[
    "x-delivery-limit",
    "x-quorum-initial-group-size",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-dead-letter-strategy",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
];
const NOT_FOR_QUORUM: &[&str] = &[
    "x-max-priority",
    "x-queue-mode",
    "x-queue-version",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
];

/// The longest TTL or expiry RabbitMQ 3.10 accepts, in milliseconds (ten
/// years).
pub const MAX_EXPIRY: i64 = 315_360_000_000;

/// Checks an `expiration` property as RabbitMQ parses it (Erlang's
/// `string:to_integer`: an optional sign and digits, nothing after them),
/// returning the milliseconds, or RabbitMQ's term for what is wrong.
pub fn check_expiration(raw: &[u8]) -> Result<u64, String> {
    let sign = usize::from(matches!(raw.first(), Some(b'+' | b'-')));
    let digits = raw[sign..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 {
        return Err("no_integer".into());
    }
    let (number, rest) = raw.split_at(sign + digits);
    let number = String::from_utf8_lossy(number);
    if !rest.is_empty() {
        return Err(format!(
            "{{leftover_string,\"{}\"}}",
            String::from_utf8_lossy(rest)
        ));
    }
    match number.parse::<i128>() {
        Ok(n) if n > i128::from(MAX_EXPIRY) => Err(format!("{{value_too_large,{n}}}")),
        Ok(n) if n < 0 => Err(format!("{{value_negative,{n}}}")),
        Ok(n) => Ok(n as u64),
        // More digits than any integer here: too large.
        Err(_) => Err(format!("{{value_too_large,{number}}}")),
    }
}

/// Checks a queue's declared arguments (and the properties some of them
/// constrain) the way RabbitMQ does; unknown arguments are accepted.
pub fn validate_queue_args(
    queue: &str,
    vhost: &str,
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
    args: &FieldTable,
) -> Result<(), AmqpError> {
    let invalid = |arg: &str, why: String| {
        AmqpError::precondition_failed(format!(
            "invalid arg '{arg}' for queue '{queue}' in vhost '{vhost}': {why}"
        ))
    };
    let expected_integer = |arg: &str, v: &FieldValue| {
        invalid(arg, format!("\"expected integer, got {}\"", type_name(v)))
    };
    for (key, value) in args.iter() {
        match key {
            "x-message-ttl" | "x-max-length" | "x-max-length-bytes" | "x-expires"
            | "x-max-priority" | "x-delivery-limit" => {
                let n = integer(value).ok_or_else(|| expected_integer(key, value))?;
                if n < 0 {
                    return Err(invalid(key, format!("{{value_negative,{n}}}")));
                }
                if key == "x-expires" && n == 0 {
                    return Err(invalid(key, "{value_zero,0}".into()));
                }
                if matches!(key, "x-expires" | "x-message-ttl") && n > MAX_EXPIRY {
                    return Err(invalid(key, format!("{{value_too_large,{n}}}")));
                }
                if key == "x-max-priority" && n > 255 {
                    return Err(invalid(key, format!("{{max_value_exceeded,{n}}}")));
                }
            }
            "x-overflow" => {
                let ok = matches!(
                    text(value),
                    Some(b"drop-head" | b"reject-publish" | b"reject-publish-dlx")
                );
                if !ok {
                    return Err(invalid(key, "invalid_overflow".into()));
                }
            }
            "x-queue-type" => match text(value) {
                // Streams are checked below (their properties first, as
                // RabbitMQ does), then refused until they exist.
                Some(b"classic" | b"quorum" | b"stream") => {}
                _ => {
                    return Err(invalid(
                        key,
                        format!("\"unsupported queue type '{}'\"", value.display()),
                    ))
                }
            },
            "x-queue-mode" if !matches!(text(value), Some(b"default" | b"lazy")) => {
                return Err(invalid(
                    key,
                    format!("\"unsupported queue mode '{}'\"", value.display()),
                ));
            }
            "x-queue-version" => match integer(value) {
                None => return Err(expected_integer(key, value)),
                Some(1 | 2) => {}
                Some(v) => {
                    return Err(invalid(key, format!("\"unsupported queue version '{v}'\"")))
                }
            },
            "x-single-active-consumer" if !matches!(value, FieldValue::Bool(_)) => {
                return Err(invalid(
                    key,
                    format!("{{unacceptable_type,{}}}", type_name(value)),
                ));
            }
            "x-dead-letter-exchange" | "x-dead-letter-routing-key" => {
                if text(value).is_none() {
                    return Err(AmqpError::precondition_failed(format!(
                        "invalid type '{}' for arg '{key}' in queue '{queue}' in vhost '{vhost}'",
                        type_name(value)
                    )));
                }
                if key == "x-dead-letter-routing-key"
                    && args.get("x-dead-letter-exchange").is_none()
                {
                    return Err(invalid(key, "routing_key_but_no_dlx_defined".into()));
                }
            }
            _ => {}
        }
    }
    let kind = args.get("x-queue-type").and_then(text);
    let quorum = kind == Some(b"quorum");
    if quorum || kind == Some(b"stream") {
        let property = if auto_delete {
            Some("auto-delete")
        } else if exclusive {
            Some("exclusive-owner")
        } else if !durable {
            Some("non-durable")
        } else {
            None
        };
        if let Some(p) = property {
            return Err(AmqpError::precondition_failed(format!(
                "invalid property '{p}' for queue '{queue}' in vhost '{vhost}'"
            )));
        }
    }
    if kind == Some(b"stream") {
        return Err(invalid(
            "x-queue-type",
            "\"unsupported queue type 'stream'\"".into(),
        ));
    }
    let (refused, kind) = if quorum {
        (NOT_FOR_QUORUM, "rabbit_quorum_queue")
    } else {
        (NOT_FOR_CLASSIC, "rabbit_classic_queue")
    };
    if let Some((key, _)) = args.iter().find(|(k, _)| refused.contains(k)) {
        return Err(AmqpError::precondition_failed(format!(
            "invalid arg '{key}' for queue '{queue}' in vhost '{vhost}' of queue type {kind}"
        )));
    }
    Ok(())
}

/// Checks basic.consume arguments (`x-priority` must be an integer).
pub fn validate_consumer_args(
    queue: &str,
    vhost: &str,
    args: &FieldTable,
) -> Result<(), AmqpError> {
    if let Some(v) = args.get("x-priority") {
        if integer(v).is_none() {
            return Err(AmqpError::precondition_failed(format!(
                "invalid arg 'x-priority' for queue '{queue}' in vhost '{vhost}': \"expected integer, got {}\"",
                type_name(v)
            )));
        }
    }
    Ok(())
}

/// Checks a headers-exchange binding's `x-match`.
pub fn validate_headers_binding(args: &FieldTable) -> Result<(), AmqpError> {
    match args.get("x-match") {
        None => Ok(()),
        Some(v) => match text(v) {
            Some(b"all" | b"any" | b"all-with-x" | b"any-with-x") => Ok(()),
            _ => Err(AmqpError::precondition_failed(format!(
                "Invalid x-match field value <<\"{}\">>; expected all, any, all-with-x, or any-with-x",
                v.display()
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn args(k: &str, v: FieldValue) -> FieldTable {
        [(k.to_string(), v)].into_iter().collect()
    }

    fn s(v: &'static str) -> FieldValue {
        FieldValue::LongString(Bytes::from_static(v.as_bytes()))
    }

    fn check(a: &FieldTable) -> Result<(), String> {
        validate_queue_args("q", "/", true, false, false, a).map_err(|e| e.reply_text())
    }

    #[test]
    fn texts_match_rabbitmq() {
        let cases = [
            (args("x-message-ttl", s("abc")), "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'q' in vhost '/': \"expected integer, got longstr\""),
            (args("x-message-ttl", FieldValue::I32(-1)), "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}"),
            (args("x-expires", FieldValue::I32(0)), "PRECONDITION_FAILED - invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}"),
            (args("x-max-priority", FieldValue::I32(300)), "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'q' in vhost '/': {max_value_exceeded,300}"),
            (args("x-overflow", s("bogus")), "PRECONDITION_FAILED - invalid arg 'x-overflow' for queue 'q' in vhost '/': invalid_overflow"),
            (args("x-queue-type", s("bogus")), "PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue 'q' in vhost '/': \"unsupported queue type 'bogus'\""),
            (args("x-single-active-consumer", s("yes")), "PRECONDITION_FAILED - invalid arg 'x-single-active-consumer' for queue 'q' in vhost '/': {unacceptable_type,longstr}"),
            (args("x-dead-letter-exchange", FieldValue::I32(5)), "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'"),
            (args("x-dead-letter-routing-key", s("k")), "PRECONDITION_FAILED - invalid arg 'x-dead-letter-routing-key' for queue 'q' in vhost '/': routing_key_but_no_dlx_defined"),
        ];
        for (a, want) in cases {
            assert_eq!(check(&a), Err(want.to_string()));
        }
        for ok in [
            args("x-message-ttl", FieldValue::I16(0)),
            args("x-foo", s("anything")),
            args("x-overflow", s("reject-publish-dlx")),
            args("x-queue-type", s("quorum")),
        ] {
            assert_eq!(check(&ok), Ok(()));
        }
        let quorum = args("x-queue-type", s("quorum"));
        let with = |durable, exclusive, auto_delete, a: &FieldTable| {
            validate_queue_args("q", "/", durable, exclusive, auto_delete, a).map_err(|e| e.text)
        };
        let property = |p: &str| Err(format!("invalid property '{p}' for queue 'q' in vhost '/'"));
        assert_eq!(with(false, false, false, &quorum), property("non-durable"));
        assert_eq!(
            with(false, true, false, &quorum),
            property("exclusive-owner")
        );
        assert_eq!(with(false, true, true, &quorum), property("auto-delete"));
        let mut lazy_quorum = quorum.clone();
        lazy_quorum.insert("x-queue-mode", s("lazy"));
        assert_eq!(
            with(true, false, false, &lazy_quorum),
            Err("invalid arg 'x-queue-mode' for queue 'q' in vhost '/' of queue type rabbit_quorum_queue".to_string())
        );
        assert_eq!(
            check(&args("x-delivery-limit", FieldValue::I32(3))),
            Err("PRECONDITION_FAILED - invalid arg 'x-delivery-limit' for queue 'q' in vhost '/' of queue type rabbit_classic_queue".to_string())
        );
        assert_eq!(
            check(&args("x-queue-type", s("stream"))),
            Err("PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue 'q' in vhost '/': \"unsupported queue type 'stream'\"".to_string())
        );
        assert_eq!(
            check(&args("x-queue-version", FieldValue::I32(3))),
            Err("PRECONDITION_FAILED - invalid arg 'x-queue-version' for queue 'q' in vhost '/': \"unsupported queue version '3'\"".to_string())
        );
        assert_eq!(check(&args("x-queue-version", FieldValue::I32(2))), Ok(()));
    }

    #[test]
    fn expirations_parse_as_rabbitmq_parses_them() {
        let check = |s: &str| check_expiration(s.as_bytes());
        assert_eq!(check("5000"), Ok(5000));
        assert_eq!(check("+7"), Ok(7));
        assert_eq!(check("-1"), Err("{value_negative,-1}".into()));
        assert_eq!(check("1.5"), Err("{leftover_string,\".5\"}".into()));
        assert_eq!(check(""), Err("no_integer".into()));
        assert_eq!(check(" 5"), Err("no_integer".into()));
        assert_eq!(
            check("99999999999999999"),
            Err("{value_too_large,99999999999999999}".into())
        );
        assert_eq!(check("315360000000"), Ok(315_360_000_000));
        assert_eq!(
            check("315360000001"),
            Err("{value_too_large,315360000001}".into())
        );
    }

    #[test]
    fn x_match_must_be_known() {
        assert!(validate_headers_binding(&args("x-match", s("any"))).is_ok());
        assert_eq!(
            validate_headers_binding(&args("x-match", s("bogus"))).map_err(|e| e.text),
            Err("Invalid x-match field value <<\"bogus\">>; expected all, any, all-with-x, or any-with-x".to_string())
        );
    }
}
