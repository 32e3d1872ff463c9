//! The whole bot in the simulation: the run function of `atlas-bot run` (webhook route, workers,
//! the real Telegram client and provider clients) on a turmoil host, talking HTTP over simulated
//! TCP to the fake Bot API, the fake Outline panel and the fake Crypto Pay, with the sim Redis and
//! the store model. A user buys a period in crypto through Telegram JSON; the payment arrives by
//! Crypto Pay's signed webhook; the activation worker makes the key at the panel.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use atlas::net::client::HttpClient;
use atlas::ports::Clock;
use atlas::providers::cryptopay::SIGNATURE_HEADER;
use atlas_sim::bot::hosts::{self, Fakes, InstanceSpec};
use atlas_sim::bot_api::{FakeBotApi, Redelivery, updates};
use atlas_sim::clock::SimClock;
use atlas_sim::fakes::cryptopay::FakeCryptoPay;
use atlas_sim::fakes::outline::FakeOutline;
use atlas_sim::net::SimNetwork;
use atlas_sim::scenario::{BotIntake, Mode, Routing};
use atlas_sim::store_host::{STORE_HOST, SimStore, StoreLink};
use atlas_sim::world::{Shared, add_redis, builder};
use bytes::Bytes;
use hyper::Method;

const USER: i64 = 700;

/// One instance of the bot behind the balancer: coordination on the sim Redis, or the old
/// design in its memory.
fn bot(link: StoreLink, index: usize, legacy: bool) -> impl std::future::Future<Output = turmoil::Result> {
    let spec = InstanceSpec {
        index,
        seed: 7,
        mode: if legacy { Mode::Legacy } else { Mode::Redis },
        skew_ms: 0,
        intake: BotIntake::Webhook,
        updates_in_flight_max: 64,
        lease: Duration::from_secs(10),
        reissue_lock: None,
        stopping: Default::default(),
    };
    hosts::instance(link, spec)
}

/// `chat` presses the button labelled `label` in its latest message that has one, once it is there.
async fn press(api: &FakeBotApi, chat: i64, label: &str) -> Result<(), String> {
    for _ in 0..600 {
        if let Some(data) = api.button(chat, label) {
            // Unique within a run, and the same in a replay.
            let n = api.calls().len();
            api.push(updates::callback(chat, "en", &format!("q{n}"), &data));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("no button {label} for {chat}; told {:#?}", api.texts_to(chat)))
}

/// Waits (in simulated time) until `check` holds.
async fn until(what: &str, mut check: impl FnMut() -> bool) -> Result<(), String> {
    for _ in 0..600 {
        if check() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("never: {what}"))
}

/// The hosts every run has: the sim Redis, the store, the fake Bot API, Outline panel and
/// Crypto Pay, and the balancer in front of the instances `names`.
struct World<'a> {
    sim: turmoil::Sim<'a>,
    shared: Shared,
    telegram: FakeBotApi,
    outline: FakeOutline,
    crypto: FakeCryptoPay,
}

fn world<'a>(seed: u64, duration: Duration, names: &[&str]) -> World<'a> {
    let mut sim = builder(seed, duration, Duration::from_millis(10), Default::default()).build();
    let shared = Shared::default();
    add_redis(&mut sim, shared.redis.clone());
    let link = shared.store.clone();
    sim.host(STORE_HOST, move || atlas_sim::store_host::serve(link.clone()));
    let redelivery = Redelivery {
        first: Duration::from_millis(200),
        max: Duration::from_secs(2),
        answer_timeout: Duration::from_secs(30),
        ..Redelivery::default()
    };
    let fakes = Fakes::new(redelivery);
    hosts::add_fakes(&mut sim, &fakes);
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let Fakes { telegram, outline, crypto } = fakes;
    let api = telegram.clone();
    sim.host(hosts::BALANCER_HOST, move || hosts::balancer(names.clone(), Routing::RoundRobin, api.clone()));
    World { sim, shared, telegram, outline, crypto }
}

/// One run of the purchase: what the user was told, and every Bot API call the bot made.
fn purchase(seed: u64) -> (Vec<String>, Vec<String>) {
    let World { mut sim, shared, telegram, outline, crypto } = world(seed, Duration::from_secs(120), &["bot"]);
    let link = shared.store.clone();
    sim.host("bot", move || bot(link.clone(), 0, false));
    let told: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = told.clone();
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let made = calls.clone();
    sim.client("user", async move {
        let says = |needle: &'static str| {
            let api = telegram.clone();
            move || api.texts_to(USER).iter().any(|t| t.contains(needle))
        };
        telegram.push(updates::text(USER, "en", "/start"));
        until("welcomed", says("Welcome")).await?;
        press(&telegram, USER, "Buy").await?;
        until("tariffs", says("Choose a plan")).await?;
        press(&telegram, USER, "Basic").await?;
        until("periods", says("choose a period")).await?;
        press(&telegram, USER, "30 days").await?;
        until("methods", says("How do you want to pay")).await?;
        press(&telegram, USER, "Crypto").await?;
        until("the invoice", says("in crypto here")).await?;
        let invoice = crypto.invoices()[0].id;
        crypto.pay(invoice);
        // Crypto Pay delivers its webhook twice: counted once.
        let client = HttpClient::new(SimNetwork, None).unwrap();
        for update_id in [1, 1] {
            let (body, signature) = crypto.webhook(update_id, invoice);
            let headers = [("content-type", "application/json".to_owned()), (SIGNATURE_HEADER, signature)];
            let hook = hosts::url("http://balancer:8080/crypto-pay/webhook");
            let answer =
                client.request(Method::POST, &hook, &headers, Bytes::from(body), Duration::from_secs(10)).await?;
            assert_eq!(answer.status, 200);
        }
        until("paid", says("Payment received")).await?;
        until("the key", says("Your key is ready")).await?;
        assert_eq!(outline.keys().len(), 1, "one key at the panel");
        *seen.lock().unwrap() = telegram.texts_to(USER);
        *made.lock().unwrap() = telegram.calls().iter().map(|c| format!("{} {}", c.method, c.body)).collect();
        Ok(())
    });
    sim.run().unwrap();
    let told = told.lock().unwrap().clone();
    let calls = calls.lock().unwrap().clone();
    (told, calls)
}

#[test]
fn a_crypto_purchase_through_telegram_json_in_the_simulation() {
    let (told, _) = purchase(1);
    assert_eq!(told.iter().filter(|t| t.contains("Payment received")).count(), 1, "{told:#?}");
    assert_eq!(told.iter().filter(|t| t.contains("Your key is ready")).count(), 1, "{told:#?}");
}

/// The same seed, the same run: every Bot API call the bot made, in order, with its body.
#[test]
fn the_whole_bot_replays_exactly() {
    let (told, calls) = purchase(3);
    assert!(calls.len() > 10, "{calls:#?}");
    assert_eq!(purchase(3), (told, calls));
}

/// Two instances behind a balancer; the one that served the withdrawal's first steps is killed
/// in the middle of it (and started again later): the user finishes on the other and the admin
/// approves. Returns the user's balance and ledger sum, or what the user never saw.
fn withdrawal_across_a_killed_instance(legacy: bool) -> Result<(i64, i64), String> {
    const ADMIN: i64 = 1;
    let World { mut sim, shared, telegram, .. } = world(5, Duration::from_secs(300), &["bot1", "bot2"]);
    for (index, name) in [(1, "bot1"), (2, "bot2")] {
        let link = shared.store.clone();
        sim.host(name, move || bot(link.clone(), index, legacy));
    }
    let crash = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let crash_now = crash.clone();
    let link = shared.store.clone();
    let user = atlas::domain::UserId::new(USER).unwrap();
    sim.client("user", async move {
        use atlas::ports::store::Accounts as _;
        let store = SimStore::direct_on(link);
        let now = SimClock::default().now();
        store.register_user(user, atlas::domain::Language::En, None, None, now).await?;
        let payment = atlas::ports::store::ProviderPayment {
            provider: atlas::domain::PaymentProviderKind::Crypto,
            payment_id: atlas::domain::ProviderPaymentId::parse("fund-1").unwrap(),
            amount: atlas::domain::Money::parse("1000").unwrap(),
        };
        store.top_up(user, payment, now).await?;
        let told = |chat: i64, needle: &'static str| {
            let api = telegram.clone();
            move || api.texts_to(chat).iter().any(|t| t.contains(needle))
        };
        telegram.push(updates::text(ADMIN, "en", "/start"));
        telegram.push(updates::text(USER, "en", "/start"));
        until("welcomed", told(USER, "Welcome")).await?;
        press(&telegram, USER, "Withdraw").await?;
        until("asked how much", told(USER, "How much")).await?;
        telegram.push(updates::text(USER, "en", "250"));
        until("the amount", told(USER, "250.00")).await?;
        // An instance dies in the middle of the withdrawal.
        crash_now.store(true, std::sync::atomic::Ordering::Relaxed);
        press(&telegram, USER, "Confirm").await?;
        until("asked for requisites", told(USER, "card")).await?;
        telegram.push(updates::text(USER, "en", "4276 1234 5678 9012"));
        until("the requisites", told(USER, "4276 1234 5678 9012")).await?;
        press(&telegram, USER, "Confirm").await?;
        until("the request", told(USER, "Withdrawal request #")).await?;
        until("the admin's notice", told(ADMIN, "4276 1234 5678 9012")).await?;
        press(&telegram, ADMIN, "Approve").await?;
        until("paid out", told(USER, "has been paid out")).await?;
        Ok(())
    });
    let mut restart_at = None;
    loop {
        if crash.swap(false, std::sync::atomic::Ordering::Relaxed) {
            sim.crash("bot1");
            restart_at = Some(sim.elapsed() + Duration::from_secs(20));
        }
        if restart_at.is_some_and(|at| sim.elapsed() >= at) {
            sim.bounce("bot1");
            restart_at = None;
        }
        if sim.step().map_err(|e| e.to_string())? {
            break;
        }
    }
    let balance = shared.store.with_model(|m| m.balance_of(user).unwrap().minor());
    Ok((balance, shared.store.with_model(|m| m.ledger_sum(user))))
}

#[test]
fn a_withdrawal_survives_its_instance_killed_in_the_middle() {
    let (balance, ledger) = withdrawal_across_a_killed_instance(false).unwrap();
    assert_eq!(balance, 75_000, "one withdrawal of 250 held and paid");
    assert_eq!(ledger, balance, "the ledger adds up");
}

/// The audit's hazard through the bot itself: with the old design (each process keeps its own
/// conversation state) the user's next step lands on the other instance, which does not know it.
#[test]
fn with_the_legacy_design_the_conversation_is_lost_across_instances() {
    let lost = withdrawal_across_a_killed_instance(true).unwrap_err();
    assert!(lost.contains("never"), "{lost}");
}
