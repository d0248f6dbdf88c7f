//! Small pieces of RabbitMQ's JSON conventions.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::ApiError;

/// A JSON request body, read as RabbitMQ reads it: whatever the content
/// type, an empty body is `{}`, and what is not JSON is 400 `not_json`.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), "bad_request", e.body_text()))?;
        let value: serde_json::Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_slice(&bytes).map_err(|_| ApiError::bad_request("not_json"))?
        };
        serde_json::from_value(value)
            .map(Body)
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }
}

/// Tags as RabbitMQ's API accepts them: a comma-separated string or a list.
#[derive(Debug, Default)]
pub struct Tags(pub Vec<String>);

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            List(Vec<String>),
        }
        Ok(match Either::deserialize(d)? {
            Either::Text(t) => Tags(warren_core::access::User::parse_tags(&t)),
            Either::List(l) => Tags(
                l.iter()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect(),
            ),
        })
    }
}

/// 201 for a PUT that created the object, 204 for one that updated it.
pub fn created_or_updated(created: bool) -> Response {
    if created {
        StatusCode::CREATED.into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

/// A field table as RabbitMQ's API shows it: strings as strings, numbers
/// as numbers, nested tables as objects.
pub fn table_to_json(table: &warren_protocol::FieldTable) -> serde_json::Value {
    serde_json::Value::Object(
        table
            .iter()
            .map(|(k, v)| (k.to_string(), value_to_json(v)))
            .collect(),
    )
}

pub fn value_to_json(v: &warren_protocol::FieldValue) -> serde_json::Value {
    use serde_json::json;
    use warren_protocol::FieldValue as F;
    match v {
        F::Bool(b) => json!(b),
        F::I8(n) => json!(n),
        F::U8(n) => json!(n),
        F::I16(n) => json!(n),
        F::U16(n) => json!(n),
        F::I32(n) => json!(n),
        F::U32(n) => json!(n),
        F::I64(n) => json!(n),
        F::U64(n) => json!(n),
        F::F32(n) => json!(n),
        F::F64(n) => json!(n),
        F::Decimal { scale, value } => json!(*value as f64 / 10f64.powi(*scale as i32)),
        F::LongString(b) | F::ByteArray(b) => json!(String::from_utf8_lossy(b)),
        F::Array(items) => serde_json::Value::Array(items.iter().map(value_to_json).collect()),
        F::Timestamp(t) => json!(t),
        F::Table(t) => table_to_json(t),
        F::Void => serde_json::Value::Null,
    }
}
/// A JSON object as a field table, as RabbitMQ converts arguments given
/// to its API: integers as signed 64-bit, other numbers as doubles,
/// strings as long strings.
pub fn json_to_table(value: &serde_json::Value) -> Option<warren_protocol::FieldTable> {
    let obj = value.as_object()?;
    Some(warren_protocol::FieldTable(
        obj.iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    ))
}

pub fn json_to_value(v: &serde_json::Value) -> warren_protocol::FieldValue {
    use serde_json::Value as J;
    use warren_protocol::FieldValue as F;
    match v {
        J::Null => F::Void,
        J::Bool(b) => F::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => F::I64(i),
            None => F::F64(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => F::LongString(bytes::Bytes::copy_from_slice(s.as_bytes())),
        J::Array(items) => F::Array(items.iter().map(json_to_value).collect()),
        J::Object(_) => F::Table(json_to_table(v).unwrap_or_default()),
    }
}

/// A name as it appears in a URL path segment.
pub fn path_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A boolean as RabbitMQ's API reads one: `true`/`false`, or the strings
/// `"true"`/`"false"` (`rabbitmqadmin` sends those).
pub fn loose_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => Ok(b),
        serde_json::Value::String(s) if s == "true" => Ok(true),
        serde_json::Value::String(s) if s == "false" => Ok(false),
        other => Err(serde::de::Error::custom(format!(
            "[\"not_boolean\",{}]",
            other
        ))),
    }
}

/// A count as RabbitMQ's API reads one: a number, or a string of digits.
pub fn loose_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    let n = match &v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.map(|n| n as usize)
        .ok_or_else(|| serde::de::Error::custom(format!("[\"not_integer\",{v}]")))
}

/// [`loose_count`] for an optional field.
pub fn loose_count_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    loose_count(d).map(Some)
}
