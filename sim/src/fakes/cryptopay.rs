//! A fake Crypto Pay API: `createInvoice` (fiat invoices; a new invoice on every call, as the
//! real one has no idempotent create) and `getInvoices` (by `invoice_ids`), behind the
//! `Crypto-Pay-API-Token` header, in Crypto Pay's `{ok, result}` / `{ok:false, error}`
//! envelope. A test pays or expires an invoice and gets the signed `invoice_paid` webhook body
//! to deliver.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use atlas::providers::cryptopay::{TOKEN_HEADER, sign};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::Fault;

#[derive(Clone, Debug)]
pub struct FakeInvoice {
    pub id: i64,
    pub status: &'static str,
    pub fiat: String,
    pub amount: String,
    pub payload: String,
}

#[derive(Default)]
struct Books {
    invoices: BTreeMap<i64, FakeInvoice>,
    /// Every call: the method and its JSON body.
    calls: Vec<(String, Value)>,
    faults: VecDeque<Fault>,
}

#[derive(Clone)]
pub struct FakeCryptoPay {
    token: Arc<str>,
    books: Arc<Mutex<Books>>,
}

impl FakeCryptoPay {
    pub fn new(token: &str) -> FakeCryptoPay {
        FakeCryptoPay { token: token.into(), books: Arc::default() }
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn router(&self) -> axum::Router {
        axum::Router::new().route("/api/{method}", post(call)).with_state(self.clone())
    }

    pub fn invoices(&self) -> Vec<FakeInvoice> {
        self.books().invoices.values().cloned().collect()
    }

    pub fn calls(&self) -> Vec<(String, Value)> {
        self.books().calls.clone()
    }

    pub fn inject(&self, fault: Fault) {
        self.books().faults.push_back(fault);
    }

    /// The payer pays invoice `id`.
    pub fn pay(&self, id: i64) {
        self.books().invoices.get_mut(&id).expect("a known invoice").status = "paid";
    }

    /// Invoice `id` expires unpaid.
    pub fn expire(&self, id: i64) {
        self.books().invoices.get_mut(&id).expect("a known invoice").status = "expired";
    }

    /// Crypto Pay's `invoice_paid` webhook for invoice `id`: the raw body and its signature.
    pub fn webhook(&self, update_id: i64, id: i64) -> (String, String) {
        let invoice = self.books().invoices[&id].clone();
        let body = json!({"update_id": update_id, "update_type": "invoice_paid",
            "request_date": "2026-12-01T00:00:00.000Z", "payload": invoice_json(&invoice)})
        .to_string();
        let signature = sign(&self.token, body.as_bytes());
        (body, signature)
    }
}

fn invoice_json(invoice: &FakeInvoice) -> Value {
    let mut json = json!({"invoice_id": invoice.id, "hash": format!("IV{}", invoice.id), "currency_type": "fiat",
        "fiat": invoice.fiat, "amount": invoice.amount, "status": invoice.status,
        "bot_invoice_url": format!("https://t.me/CryptoBot?start=IV{}", invoice.id),
        "payload": invoice.payload, "created_at": "2026-12-01T00:00:00.000Z", "allow_comments": false,
        "allow_anonymous": true});
    if invoice.status == "paid" {
        json["paid_asset"] = json!("USDT");
        json["paid_amount"] = json!("2.15");
        json["paid_at"] = json!("2026-12-01T00:01:00.000Z");
    }
    json
}

fn refuse(status: StatusCode, name: &str) -> Response {
    (status, axum::Json(json!({"ok": false, "error": {"code": status.as_u16(), "name": name}}))).into_response()
}

async fn call(
    State(fake): State<FakeCryptoPay>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) != Some(&*fake.token) {
        return refuse(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    let Ok(params) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "PARAMS_INVALID");
    };
    let fault = {
        let mut books = fake.books();
        books.calls.push((method.clone(), params.clone()));
        books.faults.pop_front()
    };
    match fault {
        Some(Fault::ServerError) => return StatusCode::BAD_GATEWAY.into_response(),
        Some(Fault::Malformed) => return (StatusCode::OK, "not json").into_response(),
        Some(Fault::Hang(pause)) => tokio::time::sleep(pause).await,
        None => {}
    }
    let mut books = fake.books();
    match method.as_str() {
        "createInvoice" => {
            let text = |name: &str| params.get(name).and_then(Value::as_str).map(str::to_owned);
            let (Some(fiat), Some(amount)) = (text("fiat"), text("amount")) else {
                return refuse(StatusCode::BAD_REQUEST, "PARAMS_INVALID");
            };
            let id = books.invoices.keys().last().copied().unwrap_or(100) + 1;
            let invoice =
                FakeInvoice { id, status: "active", fiat, amount, payload: text("payload").unwrap_or_default() };
            let answer = invoice_json(&invoice);
            books.invoices.insert(id, invoice);
            axum::Json(json!({"ok": true, "result": answer})).into_response()
        }
        "getInvoices" => {
            let ids: Vec<i64> = params
                .get("invoice_ids")
                .and_then(Value::as_str)
                .map(|s| s.split(',').filter_map(|id| id.trim().parse().ok()).collect())
                .unwrap_or_default();
            let items: Vec<Value> = ids.iter().filter_map(|id| books.invoices.get(id)).map(invoice_json).collect();
            axum::Json(json!({"ok": true, "result": {"items": items}})).into_response()
        }
        _ => refuse(StatusCode::NOT_FOUND, "METHOD_NOT_FOUND"),
    }
}
