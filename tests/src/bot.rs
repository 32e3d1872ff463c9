//! Driving the real bot in-process: the real intake function and router on real PostgreSQL and
//! real Redis, with a recording Messenger and recording providers. Updates are written as the
//! Bot API's JSON and parsed with teloxide's types, as a live update would be.
//!
//! ```ignore
//! let bot = BotHarness::new(&[ADMIN]).await;
//! bot.send_text(USER, "/start").await;
//! bot.press(USER, "Withdraw").await;
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atlas::bot::incoming;
use atlas::bot::text::{Msg, label, render};
use atlas::coord::connector::{RedisConnector, RedisTarget, TcpDialer};
use atlas::coord::keys::KeySpace;
use atlas::coord::limits::Flood;
use atlas::coord::redis::RedisCoordination;
use atlas::domain::{
    Language, Money, Payable, PaymentProviderKind, Percent, ProviderPaymentId, ShopPolicy, SubscriptionId, UserId,
};
use atlas::ports::messenger::{MessengerError, OutgoingMessage, StarsInvoice};
use atlas::ports::payments::{Invoice, InvoiceStatus, PaymentProviderError};
use atlas::ports::vpn::{PanelKey, VpnError};
use atlas::ports::{Clock, Messenger, PaymentProvider, VpnProvider};
use atlas::runtime::intake::{Handled, process};
use atlas::runtime::live::SystemClock;
use atlas::runtime::wiring::{Adapters, App, Parts, Rules, assemble};
use atlas::store::PgStore;
use chrono::{DateTime, Utc};

use crate::redis_support::{fresh_keys, ids, instance, raw};
use crate::{TestDb, uid};
use redis::AsyncCommands as _;

/// What the bot sent through the Messenger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    Message { to: UserId, message: OutgoingMessage },
    Invoice { to: UserId, invoice: StarsInvoice },
    CallbackAnswered { id: String },
    PreCheckout { id: String, refusal: Option<String> },
    Refund { to: UserId, charge_id: String },
}

impl Sent {
    /// Whom it was sent to (answers to queries go to no one in particular).
    pub fn to(&self) -> Option<UserId> {
        match self {
            Sent::Message { to, .. } | Sent::Invoice { to, .. } => Some(*to),
            Sent::Refund { to, .. } => Some(*to),
            Sent::CallbackAnswered { .. } | Sent::PreCheckout { .. } => None,
        }
    }
}

/// The Messenger of the tests: records everything, in order.
#[derive(Clone, Default)]
pub struct RecordingMessenger {
    pub sent: Arc<Mutex<Vec<Sent>>>,
    /// While set, every message times out undelivered (an instance cut off before it could reply).
    pub unreachable: Arc<std::sync::atomic::AtomicBool>,
    /// Users who blocked the bot: sending to them fails as Telegram's 403 does.
    pub blocked: Arc<Mutex<Vec<i64>>>,
    /// While set, every message is refused with Telegram's 429 (certainly not sent).
    pub slow_down: Arc<std::sync::atomic::AtomicBool>,
    /// Sends attempted to users who blocked the bot.
    pub refused: Arc<Mutex<Vec<i64>>>,
}

impl RecordingMessenger {
    fn push(&self, sent: Sent) {
        self.sent.lock().unwrap().push(sent);
    }

    fn delivers(&self) -> Result<(), MessengerError> {
        if self.unreachable.load(Ordering::Relaxed) { Err(MessengerError::Timeout) } else { Ok(()) }
    }
}

impl Messenger for RecordingMessenger {
    async fn send(&self, to: UserId, message: OutgoingMessage) -> Result<i32, MessengerError> {
        assert!(message.text.chars().count() <= 4096, "a message over Telegram's limit: {}", message.text);
        for button in message.keyboard.iter().flatten() {
            assert!(button.callback_data.len() <= 64, "callback data over 64 bytes: {}", button.callback_data);
        }
        self.delivers()?;
        if self.slow_down.load(Ordering::Relaxed) {
            return Err(MessengerError::RetryAfter(Duration::from_secs(1)));
        }
        if self.blocked.lock().unwrap().contains(&to.get()) {
            self.refused.lock().unwrap().push(to.get());
            return Err(MessengerError::ChatUnreachable);
        }
        self.push(Sent::Message { to, message });
        Ok(1)
    }

    async fn answer_callback(&self, callback_id: &str, _toast: Option<&str>) -> Result<(), MessengerError> {
        self.push(Sent::CallbackAnswered { id: callback_id.to_owned() });
        Ok(())
    }

    async fn send_invoice(&self, to: UserId, invoice: StarsInvoice) -> Result<i32, MessengerError> {
        self.delivers()?;
        self.push(Sent::Invoice { to, invoice });
        Ok(1)
    }

    async fn answer_pre_checkout(&self, query_id: &str, refusal: Option<&str>) -> Result<(), MessengerError> {
        self.push(Sent::PreCheckout { id: query_id.to_owned(), refusal: refusal.map(str::to_owned) });
        Ok(())
    }

    async fn refund_stars(&self, user: UserId, charge_id: &str) -> Result<(), MessengerError> {
        self.delivers()?;
        self.push(Sent::Refund { to: user, charge_id: charge_id.to_owned() });
        Ok(())
    }
}

/// A VPN panel that keeps its keys in memory: created by label (idempotent), revoked by id.
#[derive(Clone, Default)]
pub struct FakePanel {
    /// Panel key id -> (subscription, alive).
    pub keys: Arc<Mutex<BTreeMap<String, (SubscriptionId, bool)>>>,
    /// While set, every create fails as a panel that is down.
    pub failing: Arc<std::sync::atomic::AtomicBool>,
    /// While set, every create fails without reaching the panel (none configured, or its calls
    /// paused by the circuit breaker).
    pub unavailable: Arc<std::sync::atomic::AtomicBool>,
    /// Every create asked for, in order.
    pub creates: Arc<Mutex<Vec<String>>>,
}

impl FakePanel {
    /// The keys alive at the panel.
    pub fn alive(&self) -> Vec<String> {
        self.keys.lock().unwrap().iter().filter(|(_, (_, alive))| *alive).map(|(id, _)| id.clone()).collect()
    }
}

impl VpnProvider for FakePanel {
    async fn create_key(&self, subscription: SubscriptionId, label: &str) -> Result<PanelKey, VpnError> {
        if self.unavailable.load(Ordering::Relaxed) {
            return Err(VpnError::Unavailable("paused".into()));
        }
        self.creates.lock().unwrap().push(label.to_owned());
        if self.failing.load(Ordering::Relaxed) {
            // A panel that is down answers late (a timeout): concurrent workers overlap.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return Err(VpnError::Timeout);
        }
        self.keys.lock().unwrap().entry(label.to_owned()).or_insert((subscription, true));
        Ok(PanelKey { panel_key_id: label.to_owned(), access_uri: format!("ss://{label}@vpn.example:443") })
    }

    async fn revoke_key(&self, panel_key_id: &str) -> Result<(), VpnError> {
        self.keys.lock().unwrap().remove(panel_key_id);
        Ok(())
    }

    async fn list_keys(&self) -> Result<Vec<String>, VpnError> {
        Ok(self.keys.lock().unwrap().iter().filter(|(_, (_, alive))| *alive).map(|(id, _)| id.clone()).collect())
    }
}

/// A crypto provider in memory that behaves as Crypto Pay does: every create makes a new invoice
/// (there is no idempotent create); a test marks one paid.
#[derive(Clone, Default)]
pub struct FakeCrypto {
    /// Every invoice made, in order.
    pub invoices: Arc<Mutex<Vec<FakeInvoice>>>,
    /// While set, every call fails as an unreachable provider's would.
    pub unreachable: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Clone, Debug)]
pub struct FakeInvoice {
    pub id: String,
    pub payable: Payable,
    pub amount: Money,
    pub paid: bool,
    /// Expired at the provider (unpaid): it can no longer be paid.
    pub expired: bool,
}

impl FakeCrypto {
    /// The user pays the first invoice made for `payable` (the link they were shown first).
    pub fn pay(&self, payable: Payable) {
        let mut invoices = self.invoices.lock().unwrap();
        let invoice = invoices.iter_mut().find(|i| i.payable == payable).expect("an invoice for it");
        invoice.paid = true;
    }

    /// The invoices made for `payable` expire unpaid at the provider.
    pub fn expire(&self, payable: Payable) {
        for invoice in self.invoices.lock().unwrap().iter_mut().filter(|i| i.payable == payable && !i.paid) {
            invoice.expired = true;
        }
    }

    /// How many invoices were made for `payable`.
    pub fn made_for(&self, payable: Payable) -> usize {
        self.invoices.lock().unwrap().iter().filter(|i| i.payable == payable).count()
    }
}

impl PaymentProvider for FakeCrypto {
    fn kind(&self) -> PaymentProviderKind {
        PaymentProviderKind::Crypto
    }

    async fn create_invoice(
        &self,
        payable: Payable,
        amount: Money,
        _description: &str,
    ) -> Result<Invoice, PaymentProviderError> {
        let mut invoices = self.invoices.lock().unwrap();
        let id = format!("inv-{}", invoices.len() + 1);
        invoices.push(FakeInvoice { id: id.clone(), payable, amount, paid: false, expired: false });
        Ok(Invoice { pay_url: format!("https://pay.example/{id}"), invoice_id: id })
    }

    async fn invoice_status(&self, invoice_id: &str) -> Result<InvoiceStatus, PaymentProviderError> {
        if self.unreachable.load(Ordering::Relaxed) {
            return Err(PaymentProviderError::Timeout);
        }
        let invoices = self.invoices.lock().unwrap();
        Ok(match invoices.iter().find(|i| i.id == invoice_id) {
            Some(FakeInvoice { amount, paid: true, .. }) => InvoiceStatus::Paid {
                payment_id: ProviderPaymentId::parse(&format!("pay-{invoice_id}")).unwrap(),
                amount: *amount,
            },
            Some(FakeInvoice { expired: true, .. }) => InvoiceStatus::Expired,
            Some(_) => InvoiceStatus::Pending,
            None => InvoiceStatus::Expired,
        })
    }
}

/// Real time moved by the test: `advance` jumps the wall clock (expiries, windows in the store).
#[derive(Default)]
pub struct TestClock {
    system: SystemClock,
    offset_ms: AtomicI64,
}

impl TestClock {
    pub fn advance(&self, by: Duration) {
        self.offset_ms.fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        self.system.now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    fn monotonic(&self) -> Duration {
        self.system.monotonic()
    }
}

/// The tests' world.
pub struct TestWorld;

impl Adapters for TestWorld {
    type Store = PgStore;
    type Coordination = RedisCoordination<TcpDialer>;
    type Vpn = FakePanel;
    type Messenger = RecordingMessenger;
    type Crypto = FakeCrypto;
}

/// The shop's rules in the tests.
pub fn rules(admins: &[i64]) -> Rules {
    Rules {
        shop: ShopPolicy {
            trial_days: 3,
            withdrawal_min: Money::parse("100").unwrap(),
            referral_percent: Percent::new(10).unwrap(),
            purchase_ttl: Duration::from_secs(3600),
            star_price: Money::parse("1.50").unwrap(),
        },
        admins: admins.iter().map(|a| UserId::new(*a).unwrap()).collect(),
        support_contact: "@atlas_support".into(),
        bot_username: Some("atlas_test_bot".into()),
        reissue_lock_ttl: atlas::services::reissue::REISSUE_LOCK_TTL,
    }
}

/// One instance of the bot and the fakes around it.
pub struct BotHarness {
    pub db: TestDb,
    pub keys: KeySpace,
    pub app: App<TestWorld>,
    pub messenger: RecordingMessenger,
    pub panel: FakePanel,
    pub crypto: FakeCrypto,
    pub clock: Arc<TestClock>,
    admins: Vec<i64>,
    redis: Option<String>,
    next_update: Arc<AtomicI64>,
    languages: Arc<Mutex<BTreeMap<i64, Language>>>,
    /// The language of users not in `languages`.
    default_language: Arc<Mutex<Language>>,
}

/// A user's view of one update's replies.
pub type Replies = Vec<OutgoingMessage>;

impl BotHarness {
    pub async fn new(admins: &[i64]) -> BotHarness {
        BotHarness::with_redis(admins, None).await
    }

    /// A bot whose Redis is at `redis_url` instead (e.g. a port nothing listens on).
    pub async fn with_redis(admins: &[i64], redis_url: Option<&str>) -> BotHarness {
        let db = TestDb::new().await;
        let keys = fresh_keys();
        let (messenger, panel, crypto) = (RecordingMessenger::default(), FakePanel::default(), FakeCrypto::default());
        let clock = Arc::new(TestClock::default());
        let redis = redis_url.map(str::to_owned);
        let app = build(&db, &keys, &messenger, &panel, &crypto, &clock, admins, 1, redis.as_deref(), PRESSING_FAST);
        BotHarness {
            db,
            keys,
            app,
            messenger,
            panel,
            crypto,
            clock,
            admins: admins.to_vec(),
            redis,
            next_update: Arc::new(AtomicI64::new(1_000)),
            languages: Arc::default(),
            default_language: Arc::new(Mutex::new(Language::En)),
        }
    }

    /// A second instance of the bot: its own coordination connection and memory, the same
    /// PostgreSQL, Redis key space, Telegram and providers.
    pub fn second_instance(&self) -> App<TestWorld> {
        self.instance_with_flood(PRESSING_FAST)
    }

    /// Another instance of the bot (as [`BotHarness::second_instance`]) whose flood limit is
    /// `flood` (the live one: `Flood::default()`).
    pub fn instance_with_flood(&self, flood: Flood) -> App<TestWorld> {
        let redis = self.redis.as_deref();
        build(
            &self.db,
            &self.keys,
            &self.messenger,
            &self.panel,
            &self.crypto,
            &self.clock,
            &self.admins,
            2,
            redis,
            flood,
        )
    }

    /// The language a user's Telegram client reports (default: [`BotHarness::everyone_speaks`]).
    pub fn set_language(&self, user: i64, language: Language) {
        self.languages.lock().unwrap().insert(user, language);
    }

    /// The language of every user not given one by `set_language` (English at first).
    pub fn everyone_speaks(&self, language: Language) {
        *self.default_language.lock().unwrap() = language;
    }

    pub fn next_id(&self) -> i64 {
        self.next_update.fetch_add(1, Ordering::Relaxed)
    }

    fn from(&self, user: i64) -> String {
        let code = self.language(user).code();
        format!(
            r#"{{"id":{user},"is_bot":false,"first_name":"User{user}","username":"user{user}","language_code":"{code}"}}"#
        )
    }

    pub fn text_json(&self, id: i64, user: i64, text: &str) -> String {
        format!(
            r#"{{"update_id":{id},"message":{{"message_id":{id},"date":1767225600,"chat":{{"id":{user},"type":"private","first_name":"U"}},"from":{},"text":{}}}}}"#,
            self.from(user),
            serde_json::to_string(text).unwrap()
        )
    }

    pub fn sticker_json(&self, id: i64, user: i64) -> String {
        format!(
            r#"{{"update_id":{id},"message":{{"message_id":{id},"date":1767225600,"chat":{{"id":{user},"type":"private","first_name":"U"}},"from":{},"sticker":{{"file_id":"f","file_unique_id":"u","type":"regular","width":512,"height":512,"is_animated":false,"is_video":false}}}}}}"#,
            self.from(user)
        )
    }

    /// Telegram's `my_chat_member`: the user blocked the bot (`kicked`) or came back (`member`).
    pub fn membership_json(&self, id: i64, user: i64, status: &str) -> String {
        let mut update = atlas_sim::bot_api::updates::membership(user, self.language(user).code(), status);
        update["update_id"] = serde_json::json!(id);
        update.to_string()
    }

    pub fn callback_json(&self, id: i64, user: i64, data: &str) -> String {
        format!(
            r#"{{"update_id":{id},"callback_query":{{"id":"cb{id}","chat_instance":"ci","from":{},"data":{}}}}}"#,
            self.from(user),
            serde_json::to_string(data).unwrap()
        )
    }

    pub fn pre_checkout_json(&self, id: i64, user: i64, payload: &str, stars: u32) -> String {
        format!(
            r#"{{"update_id":{id},"pre_checkout_query":{{"id":"pc{id}","from":{},"currency":"XTR","total_amount":{stars},"invoice_payload":{}}}}}"#,
            self.from(user),
            serde_json::to_string(payload).unwrap()
        )
    }

    pub fn payment_json(&self, id: i64, user: i64, payload: &str, stars: u32, charge: &str) -> String {
        format!(
            r#"{{"update_id":{id},"message":{{"message_id":{id},"date":1767225600,"chat":{{"id":{user},"type":"private","first_name":"U"}},"from":{},"successful_payment":{{"currency":"XTR","total_amount":{stars},"invoice_payload":{},"telegram_payment_charge_id":"{charge}","provider_payment_charge_id":""}}}}}}"#,
            self.from(user),
            serde_json::to_string(payload).unwrap()
        )
    }

    /// Delivers one update (Bot API JSON) to `app` and returns what the intake said and every
    /// message the bot sent to `user` while handling it.
    pub async fn deliver_to(&self, app: &App<TestWorld>, user: i64, json: &str) -> (Handled, Replies) {
        let update = incoming::parse(json.as_bytes()).expect("valid Bot API JSON").expect("an update the bot handles");
        let before = self.messenger.sent.lock().unwrap().len();
        let handled = process(app, &update).await;
        let replies = self.messenger.sent.lock().unwrap()[before..]
            .iter()
            .filter_map(|s| match s {
                Sent::Message { to, message } if to.get() == user => Some(message.clone()),
                _ => None,
            })
            .collect();
        (handled, replies)
    }

    pub async fn deliver(&self, user: i64, json: &str) -> Replies {
        let (handled, replies) = self.deliver_to(&self.app, user, json).await;
        assert!(
            matches!(handled, Handled::Committed | Handled::Answered),
            "not handled normally ({handled:?}): {json}"
        );
        replies
    }

    pub async fn send_text(&self, user: i64, text: &str) -> Replies {
        let json = self.text_json(self.next_id(), user, text);
        self.deliver(user, &json).await
    }

    pub async fn press_data(&self, user: i64, data: &str) -> Replies {
        let json = self.callback_json(self.next_id(), user, data);
        self.deliver(user, &json).await
    }

    /// Presses the button labelled with `label` (a part of it) on the newest message to `user`
    /// that has one.
    pub async fn press(&self, user: i64, label: &str) -> Replies {
        let data = self.button(user, label).unwrap_or_else(|| {
            panic!("no button {label:?} for user {user}; last message: {:?}", self.last(user).map(|m| m.text))
        });
        self.press_data(user, &data).await
    }

    /// The callback data of the newest button labelled `label` sent to `user`.
    pub fn button(&self, user: i64, label: &str) -> Option<String> {
        self.messages(user).iter().rev().find_map(|m| {
            m.keyboard.iter().flatten().find(|b| b.label.contains(label)).map(|b| b.callback_data.clone())
        })
    }

    pub fn messages(&self, user: i64) -> Vec<OutgoingMessage> {
        self.sent_to(user, |sent| match sent {
            Sent::Message { message, .. } => Some(message.clone()),
            _ => None,
        })
    }

    /// What was sent to `user`, picked by `pick`, in order.
    fn sent_to<T>(&self, user: i64, pick: impl Fn(&Sent) -> Option<T>) -> Vec<T> {
        let sent = self.messenger.sent.lock().unwrap();
        sent.iter().filter(|s| s.to() == UserId::new(user)).filter_map(pick).collect()
    }

    pub fn last(&self, user: i64) -> Option<OutgoingMessage> {
        self.messages(user).pop()
    }

    /// The user's language in this harness (what their Telegram client reports).
    pub fn language(&self, user: i64) -> Language {
        let default = *self.default_language.lock().unwrap();
        self.languages.lock().unwrap().get(&user).copied().unwrap_or(default)
    }

    /// Presses the button whose label is `msg` in the user's language.
    pub async fn press_msg(&self, user: i64, msg: &Msg) -> Replies {
        let label = atlas::bot::text::label(self.language(user), msg);
        self.press(user, &label).await
    }

    /// `msg` as the user reads it.
    pub fn says(&self, user: i64, msg: &Msg) -> String {
        render(self.language(user), msg)
    }

    /// Registers the user (if needed) and credits `amount` to their balance through a real
    /// provider top-up.
    pub async fn fund(&self, user: i64, amount: &str) {
        use atlas::ports::store::Accounts;
        let id = UserId::new(user).unwrap();
        self.db.store.register_user(id, Language::En, None, None, self.clock.now()).await.unwrap();
        let payment_id = format!("fund-{user}-{}", self.next_id());
        let payment = atlas::ports::store::ProviderPayment {
            provider: PaymentProviderKind::Crypto,
            payment_id: ProviderPaymentId::parse(&payment_id).unwrap(),
            amount: Money::parse(amount).unwrap(),
        };
        self.db.store.top_up(id, payment, self.clock.now()).await.unwrap();
    }

    /// `user` (registered, funded) buys 30 days of the basic tariff from the balance.
    pub async fn buy(&self, user: i64) {
        use atlas::ports::store::Purchases;
        self.fund(user, "500").await;
        self.db.store.purchase_from_balance(basic_30_days(user), self.clock.now()).await.unwrap();
    }

    /// `user` (registered) opens a crypto purchase of 30 days of the basic tariff, its invoice made
    /// by `crypto` and recorded, as the conversation does.
    pub async fn crypto_order(&self, user: i64, crypto: &impl PaymentProvider) -> (Payable, Invoice) {
        use atlas::ports::store::Purchases;
        self.fund(user, "1").await;
        let (ttl, kind) = (Duration::from_secs(3600), PaymentProviderKind::Crypto);
        let request = basic_30_days(user);
        let pending = self.db.store.create_pending_purchase(request, kind, ttl, self.clock.now()).await.unwrap();
        let payable = Payable::Purchase(pending.purchase_id);
        let invoice = crypto.create_invoice(payable, pending.amount, "test").await.unwrap();
        self.db.store.attach_invoice(payable, &invoice).await.unwrap();
        (payable, invoice)
    }

    /// The user's balance in minor units, read from PostgreSQL.
    pub async fn balance(&self, user: i64) -> i64 {
        crate::balance(&self.db, UserId::new(user).unwrap()).await
    }

    /// Presses `button` (in the latest message that has it) on an instance that dies after its
    /// store calls, before its replies went out and before its commit reached Redis: the
    /// update marker is gone and the conversation record is the one from before. Returns the
    /// update, for a redelivery.
    pub async fn press_and_die(&self, user: i64, button: &Msg) -> String {
        let mut redis = raw().await;
        let fsm_key = self.keys.fsm(uid(user));
        let state_before: Vec<(String, Vec<u8>)> = redis.hgetall(&fsm_key).await.unwrap();
        let data =
            self.button(user, &label(self.language(user), button)).unwrap_or_else(|| panic!("no {button:?} button"));
        let id = self.next_id();
        let json = self.callback_json(id, user, &data);
        self.messenger.unreachable.store(true, Ordering::Relaxed);
        let (_, replies) = self.deliver_to(&self.app, user, &json).await;
        assert!(replies.is_empty(), "the dying instance's replies never arrive");
        self.messenger.unreachable.store(false, Ordering::Relaxed);
        let _: () = redis.del(self.keys.update(uid(user), id)).await.unwrap();
        let _: () = redis.hset_multiple(&fsm_key, &state_before).await.unwrap();
        json
    }

    /// [`BotHarness::press_and_die`], then the same update redelivered (and lost again the same
    /// way), then the user, who saw nothing, presses the button again (a new update). Returns
    /// the replies of the redelivery and of the second press.
    pub async fn press_losing_the_commit(&self, user: i64, button: &Msg) -> (Replies, Replies) {
        let mut redis = raw().await;
        let fsm_key = self.keys.fsm(uid(user));
        let state_before: Vec<(String, Vec<u8>)> = redis.hgetall(&fsm_key).await.unwrap();
        let data = self.button(user, &label(self.language(user), button)).unwrap();
        let json = self.press_and_die(user, button).await;
        let update: serde_json::Value = serde_json::from_str(&json).unwrap();
        let id = update["update_id"].as_i64().unwrap();
        let redelivered = self.deliver(user, &json).await;
        let _: () = redis.del(self.keys.update(uid(user), id)).await.unwrap();
        let _: () = redis.hset_multiple(&fsm_key, &state_before).await.unwrap();
        let pressed_again = self.deliver(user, &self.callback_json(self.next_id(), user, &data)).await;
        (redelivered, pressed_again)
    }

    /// The Stars invoices sent to `user`.
    pub fn invoices(&self, user: i64) -> Vec<StarsInvoice> {
        self.sent_to(user, |sent| match sent {
            Sent::Invoice { invoice, .. } => Some(invoice.clone()),
            _ => None,
        })
    }

    pub fn pre_checkout_answers(&self) -> Vec<(String, Option<String>)> {
        self.messenger
            .sent
            .lock()
            .unwrap()
            .iter()
            .filter_map(|s| match s {
                Sent::PreCheckout { id, refusal } => Some((id.clone(), refusal.clone())),
                _ => None,
            })
            .collect()
    }
}

/// The tests press buttons faster than a person: the flood limit is tested on its own.
const PRESSING_FAST: Flood = Flood { max: 10_000, window: Duration::from_secs(10) };

#[allow(clippy::too_many_arguments)]
fn build(
    db: &TestDb,
    keys: &KeySpace,
    messenger: &RecordingMessenger,
    panel: &FakePanel,
    crypto: &FakeCrypto,
    clock: &Arc<TestClock>,
    admins: &[i64],
    seed: u64,
    redis_url: Option<&str>,
    flood: Flood,
) -> App<TestWorld> {
    let clock: Arc<dyn Clock> = clock.clone();
    let coordination = match redis_url {
        None => instance(keys, clock.clone(), seed),
        Some(url) => {
            let target = RedisTarget::from_url(&url::Url::parse(url).unwrap()).unwrap();
            let dialer = TcpDialer::new(&target, None).unwrap();
            let connector = RedisConnector::new(dialer, target.info.clone(), clock.clone(), ids(seed));
            RedisCoordination::new(connector, keys.clone(), clock.clone(), ids(seed))
        }
    };
    let parts = Parts {
        store: db.store.clone(),
        coordination: coordination.with_flood(flood),
        vpn: panel.clone(),
        messenger: messenger.clone(),
        crypto: crypto.clone(),
        clock,
        ids: ids(seed),
    };
    assemble(parts, rules(admins))
}

/// 30 days of the basic tariff for `user`, without a promo code or idempotency key.
fn basic_30_days(user: i64) -> atlas::ports::store::PurchaseRequest {
    atlas::ports::store::PurchaseRequest {
        user: UserId::new(user).unwrap(),
        tariff: atlas::domain::TariffCode::parse("basic").unwrap(),
        days: 30,
        promo: None,
        idempotency_key: None,
    }
}

/// The text of replies, joined (for `contains` checks).
pub fn texts(replies: &[OutgoingMessage]) -> String {
    replies.iter().map(|m| m.text.as_str()).collect::<Vec<_>>().join("\n---\n")
}

/// Two tests of one flow `async fn flow(language: Language)`: in English and in Russian.
#[macro_export]
macro_rules! in_both_languages {
    ($($flow:ident => $english:ident, $russian:ident;)+) => {$(
        #[tokio::test]
        async fn $english() {
            $flow(atlas::domain::Language::En).await;
        }

        #[tokio::test]
        async fn $russian() {
            $flow(atlas::domain::Language::Ru).await;
        }
    )+};
}
