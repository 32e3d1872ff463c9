//! The operator's endpoints, on the same server as the webhook: `/healthz` (the process
//! answers), `/readyz` (Redis and PostgreSQL answer, every migration is applied, and the
//! instance is not shutting down) and `/metrics` (Prometheus text).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use super::gate::Gate;
use super::wiring::{Adapters, App};
use crate::ports::store::Health as _;

struct Probe<A: Adapters> {
    app: Arc<App<A>>,
    gate: Arc<Gate>,
    metrics: Option<PrometheusHandle>,
}

pub fn router<A: Adapters>(app: Arc<App<A>>, gate: Arc<Gate>, metrics: Option<PrometheusHandle>) -> axum::Router {
    let probe = Arc::new(Probe { app, gate, metrics });
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready::<A>))
        .route("/metrics", get(render::<A>))
        .with_state(probe)
}

async fn ready<A: Adapters>(State(probe): State<Arc<Probe<A>>>) -> Response {
    if probe.gate.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let (redis, store) = tokio::join!(probe.app.coordination.ping(), probe.app.store.ready());
    let mut problems = Vec::new();
    if let Err(e) = redis {
        problems.push(format!("redis: {e}"));
    }
    if let Err(e) = store {
        problems.push(format!("postgres: {e}"));
    }
    if problems.is_empty() {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, problems.join("\n")).into_response()
    }
}

async fn render<A: Adapters>(State(probe): State<Arc<Probe<A>>>) -> Response {
    match &probe.metrics {
        Some(handle) => handle.render().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
