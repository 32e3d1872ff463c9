//! A fake Outline server (management API under a secret path prefix): keys created under the
//! caller's id (`PUT /access-keys/{id}`: 201, or 409 when the id exists), read, listed
//! (`{"accessKeys": [...]}`) and deleted (204, or 404). Any other path is 404, as Outline answers
//! a wrong prefix.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use atlas::net::server::Peer;
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::Fault;

#[derive(Default)]
struct Panel {
    /// Key id -> its access URL.
    keys: BTreeMap<String, String>,
    /// Every call: method and key id ("" for the list).
    calls: Vec<(String, String)>,
    /// Every key created (201), in order.
    created: Vec<Made>,
    faults: VecDeque<Fault>,
}

/// A key the panel created: its id, when (simulated time; zero outside a simulation) and the
/// instance that asked (`None` outside a simulation).
#[derive(Clone, Debug)]
pub struct Made {
    pub id: String,
    pub at: std::time::Duration,
    pub by: Option<usize>,
}

#[derive(Clone)]
pub struct FakeOutline {
    prefix: Arc<str>,
    panel: Arc<Mutex<Panel>>,
}

impl FakeOutline {
    /// A panel whose API lives under `/<prefix>`.
    pub fn new(prefix: &str) -> FakeOutline {
        FakeOutline { prefix: prefix.into(), panel: Arc::default() }
    }

    fn panel(&self) -> std::sync::MutexGuard<'_, Panel> {
        self.panel.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn router(&self) -> axum::Router {
        let base = format!("/{}/access-keys", self.prefix);
        axum::Router::new()
            .route(&base, get(list))
            .route(&format!("{base}/{{id}}"), get(read).put(create).delete(delete))
            .with_state(self.clone())
    }

    /// The ids of the keys alive, in order.
    pub fn keys(&self) -> Vec<String> {
        self.panel().keys.keys().cloned().collect()
    }

    /// Puts a key there, as an operator (or another tool) would.
    pub fn add(&self, id: &str) {
        self.panel().keys.insert(id.to_owned(), access_url(id));
    }

    /// Every key the panel created, in order (a 409 for an existing id creates nothing), with
    /// when and for which instance.
    pub fn made(&self) -> Vec<Made> {
        self.panel().created.clone()
    }

    /// Every call made, as (method, key id).
    pub fn calls(&self) -> Vec<(String, String)> {
        self.panel().calls.clone()
    }

    /// The next call meets `fault`.
    pub fn inject(&self, fault: Fault) {
        self.panel().faults.push_back(fault);
    }

    async fn enter(&self, method: &str, id: &str) -> Option<Response> {
        let fault = {
            let mut panel = self.panel();
            panel.calls.push((method.to_owned(), id.to_owned()));
            panel.faults.pop_front()
        };
        match fault {
            Some(Fault::ServerError) => Some(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
            Some(Fault::Malformed) => Some((StatusCode::OK, "<html>proxy error</html>").into_response()),
            Some(Fault::Hang(pause)) => {
                tokio::time::sleep(pause).await;
                None
            }
            None => None,
        }
    }
}

fn access_url(id: &str) -> String {
    format!("ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTpzZWNyZXQ@vpn.example:443/?outline=1#{id}")
}

fn key_json(id: &str, url: &str) -> serde_json::Value {
    json!({"id": id, "name": id, "password": "secret", "port": 443, "method": "chacha20-ietf-poly1305",
        "accessUrl": url})
}

async fn create(State(fake): State<FakeOutline>, peer: Option<Extension<Peer>>, Path(id): Path<String>) -> Response {
    if let Some(fault) = fake.enter("PUT", &id).await {
        return fault;
    }
    let mut panel = fake.panel();
    if panel.keys.contains_key(&id) {
        return (StatusCode::CONFLICT, axum::Json(json!({"code": "Conflict", "message": "Access key already exists"})))
            .into_response();
    }
    let url = access_url(&id);
    panel.keys.insert(id.clone(), url.clone());
    let by = crate::faults::calling_instance(peer.map(|Extension(Peer(peer))| peer));
    panel.created.push(Made { id: id.clone(), at: turmoil::sim_elapsed().unwrap_or_default(), by });
    (StatusCode::CREATED, axum::Json(key_json(&id, &url))).into_response()
}

async fn read(State(fake): State<FakeOutline>, Path(id): Path<String>) -> Response {
    if let Some(fault) = fake.enter("GET", &id).await {
        return fault;
    }
    match fake.panel().keys.get(&id) {
        Some(url) => axum::Json(key_json(&id, url)).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn list(State(fake): State<FakeOutline>) -> Response {
    if let Some(fault) = fake.enter("GET", "").await {
        return fault;
    }
    let keys: Vec<_> = fake.panel().keys.iter().map(|(id, url)| key_json(id, url)).collect();
    axum::Json(json!({ "accessKeys": keys })).into_response()
}

async fn delete(State(fake): State<FakeOutline>, Path(id): Path<String>) -> Response {
    if let Some(fault) = fake.enter("DELETE", &id).await {
        return fault;
    }
    match fake.panel().keys.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
