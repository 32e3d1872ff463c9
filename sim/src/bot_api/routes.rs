//! The fake's Bot API methods: `POST /bot<token>/<method>` with a JSON body, answered with the
//! Bot API's `{ok, result}` envelope or its error shape.

use std::time::Duration;

use atlas::net::server::Peer;
use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};

use super::{BOT_ID, BOT_USERNAME, Call, FakeBotApi, Fault, Webhook};

/// The longest long poll the fake holds (Telegram allows 50 s).
const LONG_POLL_MAX: Duration = Duration::from_secs(50);

/// Telegram's limit on a message's text.
const TEXT_CHARS_MAX: usize = 4_096;

const TERMINATED: &str =
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running";
const WEBHOOK_ACTIVE: &str =
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first";

pub fn router(api: FakeBotApi) -> axum::Router {
    axum::Router::new().route("/{bot}/{method}", post(call).get(call)).with_state(api)
}

fn ok(result: Value) -> Response {
    (StatusCode::OK, Json(json!({"ok": true, "result": result}))).into_response()
}

fn refuse(code: u16, description: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(json!({"ok": false, "error_code": code, "description": description}))).into_response()
}

async fn call(
    State(api): State<FakeBotApi>,
    peer: Option<Extension<Peer>>,
    Path((bot, method)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if bot.strip_prefix("bot") != Some(&*api.token) {
        return refuse(401, "Unauthorized");
    }
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(body) => body,
            Err(_) => return refuse(400, "Bad Request: the body is not JSON"),
        }
    };
    let name = method.to_ascii_lowercase();
    let fault = {
        let mut state = api.state();
        state.calls.push(Call {
            method: method.clone(),
            body: body.clone(),
            at: turmoil::sim_elapsed().unwrap_or_default(),
            from: crate::faults::calling_instance(peer.map(|Extension(Peer(peer))| peer)),
        });
        state.faults.get_mut(&name).and_then(|faults| faults.pop_front())
    };
    match fault {
        Some(Fault::TooManyRequests { retry_after }) => {
            let description = format!("Too Many Requests: retry after {retry_after}");
            let answer = json!({"ok": false, "error_code": 429, "description": description,
                "parameters": {"retry_after": retry_after}});
            return (StatusCode::TOO_MANY_REQUESTS, Json(answer)).into_response();
        }
        Some(Fault::ServerError) => return refuse(500, "Internal Server Error"),
        Some(Fault::Hang(pause)) => tokio::time::sleep(pause).await,
        None => {}
    }
    match name.as_str() {
        "getme" => ok(json!({"id": BOT_ID, "is_bot": true, "first_name": "Atlas", "username": BOT_USERNAME,
            "can_join_groups": false, "can_read_all_group_messages": false, "supports_inline_queries": false,
            "has_main_web_app": false})),
        "getupdates" => get_updates(&api, &body).await,
        "setwebhook" => set_webhook(&api, &body),
        "deletewebhook" => {
            let mut state = api.state();
            state.webhook = None;
            if body["drop_pending_updates"].as_bool() == Some(true) {
                state.pending.clear();
            }
            ok(json!(true))
        }
        "getwebhookinfo" => {
            let state = api.state();
            let url = state.webhook.as_ref().map_or(String::new(), |w| w.url.to_string());
            let mut info = json!({"url": url, "has_custom_certificate": false,
                "pending_update_count": state.pending.len()});
            if let Some(webhook) = &state.webhook {
                info["max_connections"] = json!(webhook.max_connections);
            }
            if let Some(error) = &state.last_error {
                info["last_error_message"] = json!(error);
                info["last_error_date"] = json!(1_767_225_600);
            }
            ok(info)
        }
        "sendmessage" => send_message(&api, &body),
        "editmessagetext" | "editmessagereplymarkup" => {
            let chat = body["chat_id"].as_i64().unwrap_or(0);
            let text = body["text"].as_str().unwrap_or("(edited)");
            ok(message(chat, body["message_id"].as_i64().unwrap_or(1) as i32, json!({"text": text})))
        }
        "answercallbackquery" | "answerprecheckoutquery" => {
            if let Some(query) = body["callback_query_id"].as_str() {
                let mut state = api.state();
                let order = state.delivered_total + 1;
                state.answered_at.entry(query.to_owned()).or_insert(order);
            }
            if let Some(query) = body["callback_query_id"].as_str().or(body["pre_checkout_query_id"].as_str()) {
                api.tell_asker(query);
            }
            answer_query(&api, &name, &body)
        }
        "sendinvoice" => send_invoice(&api, &body),
        "refundstarpayment" => refund(&api, &body),
        _ => refuse(404, "Not Found: method not found"),
    }
}

async fn get_updates(api: &FakeBotApi, body: &Value) -> Response {
    let offset = body["offset"].as_i64().unwrap_or(0);
    let limit = body["limit"].as_u64().unwrap_or(100).clamp(1, 100) as usize;
    let timeout = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0)).min(LONG_POLL_MAX);
    let ticket = {
        let mut state = api.state();
        if state.webhook.is_some() {
            return refuse(409, WEBHOOK_ACTIVE);
        }
        // Everything below the offset is confirmed, and gone.
        state.pending.retain(|id, _| *id >= offset);
        state.poll_ticket += 1;
        state.poll_ticket
    };
    // A newer getUpdates ends this one: wake the ones waiting so they notice.
    api.arrived.notify_waiters();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let arrived = api.arrived.notified();
        {
            let mut state = api.state();
            if state.poll_ticket != ticket {
                return refuse(409, TERMINATED);
            }
            let batch: Vec<Value> = state.pending.range(offset..).take(limit).map(|(_, u)| u.clone()).collect();
            if !batch.is_empty() || tokio::time::Instant::now() >= deadline {
                // Returned before and not confirmed since: the poller did not settle it (it
                // confirms up to its first unsettled update, and re-takes only the unsettled
                // ones of what comes again), so a second answer to it is at least once.
                for update in &batch {
                    let id = update["update_id"].as_i64().unwrap_or(0);
                    if !state.fetched.insert(id) {
                        state.handed_back.push(super::HandedBack::of(update));
                    }
                }
                return ok(Value::Array(batch));
            }
        }
        let _ = tokio::time::timeout_at(deadline, arrived).await;
    }
}

fn set_webhook(api: &FakeBotApi, body: &Value) -> Response {
    let Some(url) = body["url"].as_str().and_then(|u| url::Url::parse(u).ok()) else {
        return refuse(400, "Bad Request: bad webhook: an HTTPS URL must be provided for webhook");
    };
    let secret = body["secret_token"].as_str().map(str::to_owned);
    if secret.as_deref().is_some_and(|s| {
        s.is_empty() || s.len() > 256 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }) {
        return refuse(400, "Bad Request: secret token contains unallowed characters");
    }
    let max_connections = body["max_connections"].as_u64().unwrap_or(40).clamp(1, 100) as usize;
    api.state().webhook = Some(Webhook { url, secret, max_connections });
    api.arrived.notify_waiters();
    ok(json!(true))
}

fn send_message(api: &FakeBotApi, body: &Value) -> Response {
    let chat = body["chat_id"].as_i64().unwrap_or(0);
    let text = body["text"].as_str().unwrap_or_default();
    if let Some(refusal) = deliverable(api, chat) {
        return refusal;
    }
    if text.trim().is_empty() {
        return refuse(400, "Bad Request: message text is empty");
    }
    if text.chars().count() > TEXT_CHARS_MAX {
        return refuse(400, "Bad Request: message is too long");
    }
    if body["parse_mode"].as_str() == Some("HTML")
        && let Err(why) = super::updates::check_html(text)
    {
        return refuse(400, &format!("Bad Request: can't parse entities: {why}"));
    }
    if let Some(keyboard) = body["reply_markup"]["inline_keyboard"].as_array() {
        for button in keyboard.iter().flat_map(|row| row.as_array().cloned().unwrap_or_default()) {
            if button["callback_data"].as_str().is_some_and(|d| d.is_empty() || d.len() > 64) {
                return refuse(400, "Bad Request: BUTTON_DATA_INVALID");
            }
        }
    }
    let id = next_message_id(api, chat);
    {
        let mut state = api.state();
        state.delivered_total += 1;
        let order = state.delivered_total;
        state.delivered_messages.entry(chat).or_default().push(body.clone());
        state.delivered_order.entry(chat).or_default().push(order);
    }
    api.tell(chat);
    let mut content = json!({"text": text});
    if !body["reply_markup"].is_null() {
        content["reply_markup"] = body["reply_markup"].clone();
    }
    ok(message(chat, id, content))
}

fn send_invoice(api: &FakeBotApi, body: &Value) -> Response {
    let chat = body["chat_id"].as_i64().unwrap_or(0);
    if let Some(refusal) = deliverable(api, chat) {
        return refusal;
    }
    let prices = body["prices"].as_array().cloned().unwrap_or_default();
    if body["currency"] == "XTR"
        && (prices.len() != 1 || body["provider_token"].as_str().is_some_and(|t| !t.is_empty()))
    {
        return refuse(400, "Bad Request: STARS_INVOICE_INVALID");
    }
    let payload = body["payload"].as_str().unwrap_or_default();
    if payload.is_empty() || payload.len() > 128 {
        return refuse(400, "Bad Request: INVOICE_PAYLOAD_INVALID");
    }
    let total: u64 = prices.iter().filter_map(|p| p["amount"].as_u64()).sum();
    let id = next_message_id(api, chat);
    let invoice = json!({"title": body["title"], "description": body["description"], "start_parameter": "",
        "currency": body["currency"], "total_amount": total});
    ok(message(chat, id, json!({"invoice": invoice})))
}

/// `refundStarPayment`: once per charge paid by that user; a second refund is refused as
/// Telegram refuses it.
fn refund(api: &FakeBotApi, body: &Value) -> Response {
    let Some(charge) = body["telegram_payment_charge_id"].as_str().filter(|c| !c.is_empty()) else {
        return refuse(400, "Bad Request: CHARGE_ID_EMPTY");
    };
    let Some(user) = body["user_id"].as_i64() else {
        return refuse(400, "Bad Request: USER_ID_INVALID");
    };
    let mut state = api.state();
    // Only a charge that was paid, by that user (the exact wording is not documented).
    if state.charges.get(charge) != Some(&user) {
        return refuse(400, "Bad Request: CHARGE_NOT_FOUND");
    }
    if !state.refunded.insert(charge.to_owned()) {
        return refuse(400, "Bad Request: CHARGE_ALREADY_REFUNDED");
    }
    ok(json!(true))
}

/// An answer to a callback or pre-checkout query: only to one that was delivered, as Telegram
/// refuses any other id.
fn answer_query(api: &FakeBotApi, name: &str, body: &Value) -> Response {
    let id_field = if name == "answercallbackquery" { "callback_query_id" } else { "pre_checkout_query_id" };
    let known = body[id_field].as_str().is_some_and(|id| api.state().query_chat.contains_key(id));
    if !known {
        return refuse(400, "Bad Request: query is too old and response timeout expired or query ID is invalid");
    }
    if name == "answerprecheckoutquery"
        && body["ok"] == false
        && body["error_message"].as_str().is_none_or(str::is_empty)
    {
        return refuse(400, "Bad Request: ERROR_MESSAGE_EMPTY");
    }
    ok(json!(true))
}

/// A refusal when `chat` cannot be written to.
fn deliverable(api: &FakeBotApi, chat: i64) -> Option<Response> {
    if chat == 0 {
        return Some(refuse(400, "Bad Request: chat not found"));
    }
    api.state().blocked.contains(&chat).then(|| refuse(403, "Forbidden: bot was blocked by the user"))
}

fn next_message_id(api: &FakeBotApi, chat: i64) -> i32 {
    let mut state = api.state();
    let next = state.next_message_id.entry(chat).or_insert(0);
    *next += 1;
    *next
}

/// A message the bot sent, as the Bot API returns it.
fn message(chat: i64, id: i32, content: Value) -> Value {
    let mut message = json!({
        "message_id": id,
        "date": 1_767_225_600,
        "chat": {"id": chat, "type": "private", "first_name": "User"},
        "from": {"id": BOT_ID, "is_bot": true, "first_name": "Atlas", "username": BOT_USERNAME},
    });
    if let (Some(message), Some(content)) = (message.as_object_mut(), content.as_object()) {
        message.extend(content.clone());
    }
    message
}
