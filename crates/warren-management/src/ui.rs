//! The web UI: one page and its script and style sheet, compiled into the
//! binary and served without authentication (the page logs in itself,
//! through the API, with the broker's users). Everything it shows comes
//! from the API paths RabbitMQ's UI uses.
//!
//! Also Warren's `rabbitmqadmin` (`cli/rabbitmqadmin`, a Python script that
//! takes RabbitMQ's rabbitmqadmin command lines), at `/cli/rabbitmqadmin`
//! where RabbitMQ's management plugin serves its own.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::AppState;

const INDEX: &str = include_str!("../ui/index.html");
const SCRIPT: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/app.css");
const ADMIN_CLI: &str = include_str!("../cli/rabbitmqadmin");

/// The page takes nothing from elsewhere, and may not be framed.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                      script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/cli/rabbitmqadmin",
            get(|| async { asset("text/x-python; charset=utf-8", ADMIN_CLI) }),
        )
}

fn asset(kind: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, kind),
            (CACHE_CONTROL, "no-cache"),
            (CONTENT_SECURITY_POLICY, POLICY),
        ],
        body,
    )
}
