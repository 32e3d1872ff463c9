//! Crypto Pay's `invoice_paid` webhook, a route on `HTTP_LISTEN` (its URL is set in @CryptoBot's
//! app settings). The signature (HMAC-SHA-256 of the raw body under SHA-256 of the token) is
//! checked before anything is read; a paid invoice is counted through the same store operation
//! as the watcher and the user's "Check payment", once by its `invoice_id`, so a webhook
//! delivered twice, or after the watcher already counted it, credits nothing more. The answer is
//! 200 once the payment is counted, or was refused for good (not ours, a mismatch: logged); 503
//! when the store could not be asked, so Crypto Pay delivers again (for three days).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::SecretString;

use super::wiring::{Adapters, App};
use crate::domain::PaymentProviderKind;
use crate::ports::payments::InvoiceStatus;
use crate::ports::store::ProviderPayment;
use crate::providers::cryptopay::{SIGNATURE_HEADER, WebhookUpdate, signature_valid};
use crate::workers::payments::{Counted, settle};

struct Route<A: Adapters> {
    app: Arc<App<A>>,
    token: SecretString,
}

/// The webhook route at `path`, checking signatures with `token`.
pub fn router<A: Adapters>(path: &str, app: Arc<App<A>>, token: SecretString) -> axum::Router {
    axum::Router::new().route(path, post(receive::<A>)).with_state(Arc::new(Route { app, token }))
}

async fn receive<A: Adapters>(State(route): State<Arc<Route<A>>>, headers: HeaderMap, body: Bytes) -> Response {
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !signature_valid(&route.token, &body, signature) {
        tracing::warn!(event = "PAYMENT_WEBHOOK_SIGNATURE_INVALID", bytes = body.len(), "refused");
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let update: WebhookUpdate = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(e) => {
            tracing::warn!(event = "PAYMENT_WEBHOOK_MALFORMED", error = %e, "signed, but not an update we understand");
            return StatusCode::OK.into_response();
        }
    };
    if update.update_type != "invoice_paid" {
        return StatusCode::OK.into_response();
    }
    let invoice = update.payload;
    let invoice_id = invoice.invoice_id;
    let (payment_id, amount) = match invoice.status() {
        Ok(InvoiceStatus::Paid { payment_id, amount }) => (payment_id, amount),
        other => {
            tracing::warn!(event = "PAYMENT_NOT_ACCEPTED", invoice_id, reason = ?other, "an invoice_paid we do not count");
            return StatusCode::OK.into_response();
        }
    };
    let Some(payable) = invoice.payable() else {
        tracing::warn!(event = "PAYMENT_UNMATCHED", invoice_id, reason = "not our payload", "payment not counted");
        return StatusCode::OK.into_response();
    };
    let payment = ProviderPayment { provider: PaymentProviderKind::Crypto, payment_id, amount };
    match settle(&route.app, payable, payment).await {
        Counted::Now | Counted::Before | Counted::Refused => StatusCode::OK.into_response(),
        Counted::Failed => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}
