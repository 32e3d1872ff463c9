//! A fake Telegram Bot API server: what the bot's live Telegram adapter talks to in the
//! end-to-end tests (on a real TCP port) and in the whole-bot simulation (on a turmoil
//! listener). It speaks the real Bot API JSON — every answer parses into teloxide's types, which
//! is how the bot reads it — keeps updates for a poller (getUpdates with offsets and long
//! polling, a second concurrent getUpdates ends the first with 409) or pushes them to a webhook
//! with Telegram's semantics (one update in flight per chat queue, in order; redelivery with
//! backoff on a non-2xx answer or a timeout), injects 429s, 5xx and hangs on request, and records
//! every call.
//!
//! The server's behaviour follows `../shared/spec/providers.md` §4 (Telegram's open-source
//! server): update queues keyed by chat for messages and by user for callback and pre-checkout
//! queries; 409 texts as Telegram words them.

mod routes;
pub mod updates;
mod webhook;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

pub use webhook::deliver_webhooks;

/// An update the bot handed back to Telegram, to be delivered again: whose, which button press
/// (for a callback query), and when.
#[derive(Clone, Debug)]
pub struct HandedBack {
    pub user: i64,
    pub query: Option<String>,
    /// The charge id, when the update was a Stars payment.
    pub payment: Option<String>,
    pub at: Duration,
}

impl HandedBack {
    fn of(update: &Value) -> HandedBack {
        let query = update["callback_query"]["id"].as_str().map(str::to_owned);
        let payment = charge_of(update).map(str::to_owned);
        let user = user_of(update).unwrap_or(0);
        HandedBack { user, query, payment, at: turmoil::sim_elapsed().unwrap_or_default() }
    }
}

/// The charge id of a Stars payment an update carries.
fn charge_of(update: &Value) -> Option<&str> {
    update["message"]["successful_payment"]["telegram_payment_charge_id"].as_str()
}

/// The user an update comes from (a message's sender, a button's presser).
pub fn user_of(update: &Value) -> Option<i64> {
    ["message", "callback_query", "pre_checkout_query", "my_chat_member"]
        .iter()
        .find_map(|kind| update.get(*kind)?["from"]["id"].as_i64())
}

/// The bot the fake answers for (`getMe`).
pub const BOT_ID: i64 = 123_456_789;
pub const BOT_USERNAME: &str = "atlas_test_bot";

/// One call the bot made: the method (as named in the URL) and its JSON body.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub body: Value,
    /// When it came, in simulated time (zero outside a simulation).
    pub at: Duration,
    /// The instance that made it (`None` outside a simulation).
    pub from: Option<usize>,
}

/// A fault the next call of a method meets instead of its answer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// HTTP 429 with `retry_after` seconds.
    TooManyRequests { retry_after: u64 },
    /// HTTP 500.
    ServerError,
    /// No answer for this long (the client's timeout decides what happens), then the real one.
    Hang(Duration),
}

/// How a webhook is pushed to.
#[derive(Clone, Debug)]
pub struct Webhook {
    pub url: url::Url,
    pub secret: Option<String>,
    pub max_connections: usize,
}

/// The webhook's delivery timings (Telegram's: 1 s doubling to a minute or two; tests shorten).
#[derive(Clone, Copy, Debug)]
pub struct Redelivery {
    pub first: Duration,
    pub max: Duration,
    /// How long the server waits for the bot's answer to one update.
    pub answer_timeout: Duration,
    /// The share (percent) of accepted updates delivered once more, as Telegram does when the
    /// bot's 2xx is lost on the way back; which ones is fixed by `seed`.
    pub duplicate_percent: u8,
    pub seed: u64,
}

impl Default for Redelivery {
    fn default() -> Self {
        Redelivery {
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
            answer_timeout: Duration::from_secs(60),
            duplicate_percent: 0,
            seed: 0,
        }
    }
}

#[derive(Default)]
struct State {
    next_update_id: i64,
    /// Updates not yet confirmed (polling) or not yet delivered (webhook), by id.
    pending: BTreeMap<i64, Value>,
    webhook: Option<Webhook>,
    /// Each getUpdates takes a new ticket; a waiting one whose ticket is no longer the newest
    /// was terminated by another.
    poll_ticket: u64,
    calls: Vec<Call>,
    /// Messages delivered to each chat (the bodies of answered sendMessage calls), in order.
    delivered_messages: BTreeMap<i64, Vec<Value>>,
    /// Messages delivered so far, over all chats: each message's and each first answer to a
    /// callback query's place in one order.
    delivered_total: u64,
    /// For each delivered message of a chat, `delivered_total` when it was delivered.
    delivered_order: BTreeMap<i64, Vec<u64>>,
    /// For each callback query answered, `delivered_total` at its first answer.
    answered_at: BTreeMap<String, u64>,
    /// Who pressed each callback or pre-checkout query (to wake that user when it is answered).
    query_chat: BTreeMap<String, i64>,
    /// Woken when a message is delivered to that chat, or a query of its user answered (the
    /// simulated user of that chat waits on it; one Notify for every chat woke every waiting
    /// user at every message).
    told: BTreeMap<i64, Arc<Notify>>,
    /// Updates the bot handed back (a webhook answer that was not 2xx or never came; an update a
    /// poller fetched again because it did not confirm it): they come again.
    handed_back: Vec<HandedBack>,
    /// Updates getUpdates has returned, to see one returned again.
    fetched: std::collections::BTreeSet<i64>,
    faults: BTreeMap<String, VecDeque<Fault>>,
    /// Users who blocked the bot: sends to them answer 403.
    blocked: Vec<i64>,
    next_message_id: BTreeMap<i64, i32>,
    /// Updates the webhook answered with 2xx, in order (a duplicated one twice).
    delivered: Vec<i64>,
    /// Updates delivered a second time on purpose (`Redelivery::duplicate_percent`), by id.
    duplicated: BTreeMap<i64, HandedBack>,
    /// Stars payments refunded (by charge id).
    refunded: std::collections::BTreeSet<String>,
    /// Stars payments delivered in updates: charge id -> the user who paid.
    charges: BTreeMap<String, i64>,
    /// Webhook answers that were not 2xx (or no answer), for the tests to see redelivery.
    failed_deliveries: u64,
    last_error: Option<String>,
}

impl State {
    /// The queries and the Stars payment an update delivers: what the bot may answer and refund.
    fn note_delivered(&mut self, update: &Value) {
        let query = ["callback_query", "pre_checkout_query"].iter().find_map(|k| update.get(*k)?["id"].as_str());
        if let (Some(query), Some(chat)) = (query, user_of(update)) {
            self.query_chat.insert(query.to_owned(), chat);
        }
        if let (Some(charge), Some(payer)) = (charge_of(update), user_of(update)) {
            self.charges.insert(charge.to_owned(), payer);
        }
    }
}

/// The fake server's state, shared by its routes and its webhook pusher.
#[derive(Clone)]
pub struct FakeBotApi {
    token: Arc<str>,
    state: Arc<Mutex<State>>,
    /// Woken when an update arrives (long polls and the webhook pusher wait on it).
    arrived: Arc<Notify>,
    redelivery: Redelivery,
}

impl FakeBotApi {
    /// A fake for the bot with `token` (requests with another token answer 401).
    pub fn new(token: &str, redelivery: Redelivery) -> FakeBotApi {
        let state = State { next_update_id: 10_000, ..State::default() };
        FakeBotApi {
            token: token.into(),
            state: Arc::new(Mutex::new(state)),
            arrived: Arc::new(Notify::new()),
            redelivery,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The routes of the Bot API, to serve on any listener (`atlas::net::server::serve`).
    pub fn router(&self) -> axum::Router {
        routes::router(self.clone())
    }

    /// Queues an update (an object without `update_id`; the fake numbers it) and returns its id.
    pub fn push(&self, mut update: Value) -> i64 {
        let id = {
            let mut state = self.state();
            state.next_update_id += 1;
            let id = state.next_update_id;
            update["update_id"] = Value::from(id);
            state.note_delivered(&update);
            state.pending.insert(id, update);
            id
        };
        self.arrived.notify_waiters();
        id
    }

    /// Notes the queries and the payment in an update delivered to the bot some other way (a
    /// test posting to the webhook itself): the bot may answer and refund them.
    pub fn note_delivered(&self, update: &Value) {
        self.state().note_delivered(update);
    }

    /// Queues the very same update again (same id): a redelivery Telegram makes on its own.
    pub fn push_again(&self, update_id: i64, update: Value) {
        let mut update = update;
        update["update_id"] = Value::from(update_id);
        let mut state = self.state();
        state.note_delivered(&update);
        state.pending.insert(update_id, update);
        drop(state);
        self.arrived.notify_waiters();
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// What `look` finds in the first call of `method` it finds something in, read in place.
    pub fn find_call<T>(&self, method: &str, look: impl FnMut(&Value) -> Option<T>) -> Option<T> {
        bodies_of(&self.state(), method).find_map(look)
    }

    /// Every call, taken out (at the end of a run, for its checkers: no copy of them all).
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state().calls)
    }

    /// The calls of one method to `chat`.
    pub fn calls_to(&self, method: &str, chat: i64) -> Vec<Value> {
        bodies_of(&self.state(), method).filter(|body| body["chat_id"].as_i64() == Some(chat)).cloned().collect()
    }

    /// The calls of one method.
    pub fn calls_of(&self, method: &str) -> Vec<Value> {
        bodies_of(&self.state(), method).cloned().collect()
    }

    /// The texts delivered to `chat` (refused calls are not), in order.
    pub fn texts_to(&self, chat: i64) -> Vec<String> {
        self.messages_to(chat).into_iter().filter_map(|body| body["text"].as_str().map(str::to_owned)).collect()
    }

    /// The messages delivered to `chat` (sendMessage bodies), in order.
    pub fn messages_to(&self, chat: i64) -> Vec<Value> {
        self.messages_after(chat, 0)
    }

    /// How many messages were delivered to `chat`.
    pub fn message_count(&self, chat: i64) -> usize {
        self.state().delivered_messages.get(&chat).map_or(0, Vec::len)
    }

    /// What `look` finds in the messages delivered to `chat` after its first `since`, read in
    /// place (the users of a run look at every delivery: copying them each time was a tenth of
    /// a whole-bot run).
    pub fn look_after<T>(&self, chat: i64, since: usize, look: impl FnOnce(&[Value]) -> T) -> T {
        let state = self.state();
        let all = state.delivered_messages.get(&chat).map_or(&[][..], Vec::as_slice);
        look(all.get(since..).unwrap_or_default())
    }

    /// How many messages delivered to `chat` contain `needle`.
    pub fn count_containing(&self, chat: i64, needle: &str) -> usize {
        self.look_after(chat, 0, |all| {
            all.iter().filter(|m| m["text"].as_str().is_some_and(|t| t.contains(needle))).count()
        })
    }

    /// The messages delivered to `chat` after its first `since`.
    pub fn messages_after(&self, chat: i64, since: usize) -> Vec<Value> {
        self.state()
            .delivered_messages
            .get(&chat)
            .map_or_else(Vec::new, |all| all.get(since..).unwrap_or_default().to_vec())
    }

    /// How many of `chat`'s messages were delivered before callback query `query` was first
    /// answered (`None` while it is not): the messages from there on answer that press or later
    /// updates, never an earlier one (the bot answers a press when it starts handling it).
    pub fn messages_before_answer(&self, chat: i64, query: &str) -> Option<usize> {
        let state = self.state();
        let at = *state.answered_at.get(query)?;
        Some(state.delivered_order.get(&chat).map_or(0, |order| order.iter().filter(|o| **o < at).count()))
    }

    /// Resolves at the next message delivered to `chat`, or the next answer to a query of its
    /// user (create it before looking, so that none is missed in between).
    pub fn told(&self, chat: i64) -> tokio::sync::futures::OwnedNotified {
        self.state().told.entry(chat).or_default().clone().notified_owned()
    }

    /// Wakes whoever waits on `chat`.
    fn tell(&self, chat: i64) {
        let notify = self.state().told.get(&chat).cloned();
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    /// Wakes the user who pressed `query`.
    fn tell_asker(&self, query: &str) {
        let chat = self.state().query_chat.get(query).copied();
        if let Some(chat) = chat {
            self.tell(chat);
        }
    }

    /// Callback data of the buttons of the last message delivered to `chat` whose button label
    /// contains `label`.
    pub fn button(&self, chat: i64, label: &str) -> Option<String> {
        self.messages_to(chat).iter().rev().find_map(|body| {
            let rows = body["reply_markup"]["inline_keyboard"].as_array()?;
            rows.iter()
                .flat_map(|row| row.as_array().cloned().unwrap_or_default())
                .find(|b| b["text"].as_str().is_some_and(|t| t.contains(label)))
                .and_then(|b| b["callback_data"].as_str().map(str::to_owned))
        })
    }

    /// The next call of `method` meets `fault`.
    pub fn inject(&self, method: &str, fault: Fault) {
        self.state().faults.entry(method.to_ascii_lowercase()).or_default().push_back(fault);
    }

    /// `user` blocks the bot: sending to them answers 403.
    pub fn block(&self, user: i64) {
        self.state().blocked.push(user);
    }

    /// The updates Telegram delivered again after a 2xx (its answer lost on the way).
    pub fn duplicates(&self) -> Vec<HandedBack> {
        self.state().duplicated.values().cloned().collect()
    }

    /// A balancer in front of the bot sent `update` (a webhook body) on to another instance after
    /// the one it gave it to did not answer in time: a delivery again, as handed back.
    pub fn sent_on(&self, update: &[u8]) {
        if let Ok(update) = serde_json::from_slice::<Value>(update) {
            self.state().handed_back.push(HandedBack::of(&update));
        }
    }

    /// The updates the bot handed back, in order.
    pub fn handed_back(&self) -> Vec<HandedBack> {
        self.state().handed_back.clone()
    }

    /// The Stars payments refunded, by charge id.
    pub fn refunded(&self) -> Vec<String> {
        self.state().refunded.iter().cloned().collect()
    }

    /// Updates not yet confirmed or delivered.
    pub fn pending(&self) -> usize {
        self.state().pending.len()
    }

    /// Update ids the webhook accepted (2xx), in order.
    pub fn delivered(&self) -> Vec<i64> {
        self.state().delivered.clone()
    }

    /// Webhook deliveries made, answered with 2xx or not.
    pub fn deliveries(&self) -> u64 {
        let state = self.state();
        state.delivered.len() as u64 + state.failed_deliveries
    }

    /// Webhook deliveries that failed (non-2xx or no answer) and were retried.
    pub fn failed_deliveries(&self) -> u64 {
        self.state().failed_deliveries
    }

    /// The webhook as the bot set it.
    pub fn webhook(&self) -> Option<Webhook> {
        self.state().webhook.clone()
    }
}

/// The queue an update belongs to: one update in flight per queue (Telegram's webhook keeps
/// each in order). Messages queue by chat, callback and pre-checkout queries by user, apart.
pub fn queue_of(update: &Value) -> i64 {
    let user = |v: &Value| v["from"]["id"].as_i64().unwrap_or(0);
    if let Some(message) = update.get("message") {
        return message["chat"]["id"].as_i64().unwrap_or(0);
    }
    if let Some(query) = update.get("callback_query") {
        return user(query) + (3 << 33);
    }
    if let Some(query) = update.get("pre_checkout_query") {
        return user(query) + (4 << 33);
    }
    if let Some(member) = update.get("my_chat_member") {
        return member["chat"]["id"].as_i64().unwrap_or(0);
    }
    0
}

/// The bodies of the calls of `method`, in order.
fn bodies_of<'s>(state: &'s State, method: &'s str) -> impl Iterator<Item = &'s Value> {
    state.calls.iter().filter(move |c| c.method.eq_ignore_ascii_case(method)).map(|c| &c.body)
}
