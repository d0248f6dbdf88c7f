//! HTTP basic authentication against the broker's users, and what each
//! management tag allows, as RabbitMQ's management plugin decides it.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use warren_core::access::{ManagementLevel, User};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The authenticated user of a request.
pub struct Caller {
    pub user: User,
    pub level: ManagementLevel,
}

impl Caller {
    pub fn require_administrator(&self) -> ApiResult<()> {
        if self.level.is_administrator() {
            Ok(())
        } else {
            Err(ApiError::not_authorised("Not administrator user"))
        }
    }

    pub fn require_monitor(&self) -> ApiResult<()> {
        if self.level.can_monitor() {
            Ok(())
        } else {
            Err(ApiError::not_authorised("Not monitor user"))
        }
    }

    /// Whether the caller sees `vhost`: monitoring and administrator users
    /// see all of them, others those they have permissions in.
    pub fn sees_vhost(&self, state: &AppState, vhost: &str) -> bool {
        self.level.can_monitor()
            || state
                .broker
                .access()
                .permissions(&self.user.name, vhost)
                .is_some()
    }

    /// The AMQP permission check of `op` for the caller in `vhost`: the API
    /// changes nothing a user could not change over AMQP.
    pub fn check_amqp(
        &self,
        state: &AppState,
        vhost: &str,
        op: &warren_core::access::Operation<'_>,
    ) -> ApiResult<()> {
        state
            .broker
            .grants(&self.user.name, vhost)
            .check(op)
            .map_err(|_| ApiError::not_authorised("Access refused."))
    }

    /// Whether the caller sees a vhost's queues, exchanges and bindings:
    /// administrators everywhere, others (monitoring users too) where they
    /// have a permission entry.
    pub fn sees_topology(&self, state: &AppState, vhost: &str) -> bool {
        self.level.is_administrator()
            || state
                .broker
                .access()
                .permissions(&self.user.name, vhost)
                .is_some()
    }

    /// Like [`sees_vhost`](Self::sees_vhost), as an error for a request
    /// about one vhost.
    pub fn require_vhost(&self, state: &AppState, vhost: &str) -> ApiResult<()> {
        if self.sees_vhost(state, vhost) {
            Ok(())
        } else {
            Err(ApiError::not_authorised("Access refused."))
        }
    }
}

/// `user:password` from a basic Authorization header.
fn credentials(parts: &Parts) -> Option<(String, String)> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some((name, password)) = credentials(parts) else {
            return Err(ApiError::credentials_required());
        };
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let loopback = peer.is_none_or(|ip| ip.is_loopback());
        let access = state.broker.access();
        let user = match access.authenticate(&name, &password, loopback) {
            Ok(user) => user.clone(),
            Err(warren_core::access::LoginRefused::NotFromLoopback) => {
                return Err(ApiError::not_authorised(
                    "User can only log in via localhost",
                ))
            }
            Err(_) => return Err(ApiError::login_failed("Login failed")),
        };
        drop(access);
        let level = user.management_level();
        if !level.can_manage() {
            return Err(ApiError::not_authorised("Not management user"));
        }
        Ok(Caller { user, level })
    }
}
