//! Values written as Erlang's `~p` writes the terms RabbitMQ decoded them
//! to, as its validation texts show them.

use std::fmt::Write as _;

use warren_protocol::FieldValue;

/// A value as Erlang's `~p` writes the term RabbitMQ decoded it to.
pub fn erlang_term(v: &FieldValue) -> String {
    let mut out = String::new();
    write_term(&mut out, v);
    out
}

pub(super) fn write_binary(out: &mut String, b: &[u8]) {
    out.push_str("<<\"");
    for &c in b {
        match c {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(c as char),
            _ => {
                let _ = write!(out, "\\{c:o}");
            }
        }
    }
    out.push_str("\">>");
}

fn write_float(out: &mut String, f: f64) {
    // Erlang prints the shortest form that reads back, always with a
    // fraction, in scientific notation outside [0.1, 1e21).
    let plain = format!("{f:?}");
    if plain.contains('e') {
        let (mantissa, exp) = plain.split_once('e').unwrap_or((&plain, "0"));
        let mantissa = if mantissa.contains('.') {
            mantissa.to_string()
        } else {
            format!("{mantissa}.0")
        };
        let _ = write!(out, "{mantissa}e{exp}");
    } else {
        out.push_str(&plain);
    }
}

pub(super) fn write_term(out: &mut String, v: &FieldValue) {
    match v {
        FieldValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        FieldValue::LongString(b) | FieldValue::ByteArray(b) => write_binary(out, b),
        FieldValue::F32(f) => write_float(out, f64::from(*f)),
        FieldValue::F64(f) => write_float(out, *f),
        FieldValue::Void => out.push_str("null"),
        FieldValue::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_term(out, item);
            }
            out.push(']');
        }
        FieldValue::Table(t) => {
            out.push_str("#{");
            for (i, (k, item)) in t.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_binary(out, k.as_bytes());
                out.push_str(" => ");
                write_term(out, item);
            }
            out.push('}');
        }
        other => match other.as_i64() {
            Some(n) => {
                let _ = write!(out, "{n}");
            }
            None => out.push_str(&other.display()),
        },
    }
}
