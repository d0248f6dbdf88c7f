//! API errors as RabbitMQ's management plugin sends them: a status code and
//! a JSON body `{"error": ..., "reason": ...}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub reason: String,
    /// Ask for credentials (`WWW-Authenticate`), as RabbitMQ does when a
    /// login fails, not when a logged-in user lacks a right.
    pub challenge: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, reason: impl Into<String>) -> Self {
        ApiError {
            status,
            error,
            reason: reason.into(),
            challenge: false,
        }
    }

    /// 404, as RabbitMQ words it.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Object Not Found", "Not Found")
    }

    /// 400 for a body or parameter that does not make sense.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    /// 401 for a user without the rights (RabbitMQ spells it the British
    /// way here).
    pub fn not_authorised(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "not_authorised", reason)
    }

    /// 401 for wrong credentials (and the American spelling).
    pub fn login_failed(reason: impl Into<String>) -> Self {
        ApiError {
            challenge: true,
            ..Self::new(StatusCode::UNAUTHORIZED, "not_authorized", reason)
        }
    }

    /// 401 without a body for a request without credentials.
    pub fn credentials_required() -> Self {
        ApiError {
            challenge: true,
            ..Self::new(StatusCode::UNAUTHORIZED, "", "")
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// A broker refusal as RabbitMQ's API reports it: an access refusal is
    /// 401 "Access refused.", a missing object 404, anything else 400 with
    /// the AMQP reply text.
    pub fn from_amqp(e: warren_core::AmqpError) -> Self {
        use warren_protocol::ReplyCode;
        match e.code {
            ReplyCode::AccessRefused => Self::not_authorised("Access refused."),
            ReplyCode::NotFound => Self::new(StatusCode::NOT_FOUND, "not_found", e.text),
            _ => Self::bad_request(e.text),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = if self.error.is_empty() {
            self.status.into_response()
        } else {
            (
                self.status,
                Json(json!({"error": self.error, "reason": self.reason})),
            )
                .into_response()
        };
        if self.challenge {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""),
            );
        }
        res
    }
}
