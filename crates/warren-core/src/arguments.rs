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

/// Checks a queue's declared arguments (and the properties some of them
/// constrain) the way RabbitMQ does; unknown arguments are accepted.
pub fn validate_queue_args(
    queue: &str,
    vhost: &str,
    durable: bool,
    exclusive: bool,
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
                Some(b"classic") => {}
                Some(kind @ (b"quorum" | b"stream")) => {
                    let property = if !durable {
                        Some("non-durable")
                    } else if exclusive {
                        Some("exclusive-owner")
                    } else {
                        None
                    };
                    if let Some(p) = property {
                        let _ = kind;
                        return Err(AmqpError::precondition_failed(format!(
                            "invalid property '{p}' for queue '{queue}' in vhost '{vhost}'"
                        )));
                    }
                }
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
        validate_queue_args("q", "/", true, false, a).map_err(|e| e.reply_text())
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
        assert_eq!(
            validate_queue_args("q", "/", false, false, &quorum).map_err(|e| e.text),
            Err("invalid property 'non-durable' for queue 'q' in vhost '/'".to_string())
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
