//! The webhook intake: Telegram POSTs each update to the path of `WEBHOOK_URL`, proving it with
//! the secret in `X-Telegram-Bot-Api-Secret-Token`. The answer is 2xx only once the update has
//! been handled (or deliberately dropped as a duplicate or flood, or ignored as not ours);
//! anything that must not be lost — no room in this instance, draining for shutdown, a handler
//! that handed the update back — answers 503, and Telegram delivers it again. Telegram keeps one
//! update in flight per chat queue, so answering only after handling keeps a user's updates in
//! order. A body that is not an update is answered 200: it would never get better, and a 5xx
//! would block its queue (`../shared/spec/providers.md` §4).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::{ExposeSecret as _, SecretString};

use super::gate::Gate;
use super::intake::process;
use super::wiring::{Adapters, App};
use crate::bot::incoming;

/// The header Telegram sends the secret in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

struct Route<A: Adapters> {
    app: Arc<App<A>>,
    secret: SecretString,
    gate: Arc<Gate>,
}

/// The webhook route at `path`.
pub fn router<A: Adapters>(path: &str, app: Arc<App<A>>, secret: SecretString, gate: Arc<Gate>) -> axum::Router {
    let route = Arc::new(Route { app, secret, gate });
    axum::Router::new().route(path, post(receive::<A>)).with_state(route)
}

async fn receive<A: Adapters>(State(route): State<Arc<Route<A>>>, headers: HeaderMap, body: Bytes) -> Response {
    let given = headers.get(SECRET_HEADER).map(HeaderValue::as_bytes).unwrap_or_default();
    if !same_secret(given, route.secret.expose_secret().as_bytes()) {
        tracing::warn!(event = "WEBHOOK_SECRET_MISMATCH", "an update without the webhook's secret was refused");
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(_pass) = route.gate.try_enter() else {
        metrics::counter!("atlas_updates_total", "outcome" => "deferred").increment(1);
        return try_again();
    };
    let update = match incoming::parse(&body) {
        Ok(Some(update)) => update,
        Ok(None) => {
            metrics::counter!("atlas_updates_total", "outcome" => "ignored").increment(1);
            return StatusCode::OK.into_response();
        }
        Err(e) => {
            tracing::warn!(event = "WEBHOOK_BODY_REFUSED", error = %e, bytes = body.len(), "not an update; answered 200");
            metrics::counter!("atlas_updates_total", "outcome" => "malformed").increment(1);
            return StatusCode::OK.into_response();
        }
    };
    let handled = process(&route.app, &update).await;
    if handled.wants_redelivery() { try_again() } else { StatusCode::OK.into_response() }
}

/// 503 with a short Retry-After: Telegram's server honours it (and backs off on its own).
fn try_again() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")]).into_response()
}

/// Compares the given secret with ours in time that does not depend on where they differ.
fn same_secret(given: &[u8], ours: &[u8]) -> bool {
    if given.len() != ours.len() {
        return false;
    }
    given.iter().zip(ours).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cres", b"s3cret"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
    }
}
