//! The whole bot in the simulation: the run function of `atlas-bot run` (webhook route, workers,
//! the real Telegram client and provider clients) on a turmoil host, talking HTTP over simulated
//! TCP to the fake Bot API, the fake Outline panel and the fake Crypto Pay, with the sim Redis and
//! the store model. A user buys a period in crypto through Telegram JSON; the payment arrives by
//! Crypto Pay's signed webhook; the activation worker makes the key at the panel.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use atlas::coord::AnyCoordination;
use atlas::coord::legacy::LegacyCoordination;
use atlas::net::client::HttpClient;
use atlas::ports::{Clock, Ids, SeededIds};
use atlas::providers::cryptopay::{CryptoPayClient, SIGNATURE_HEADER};
use atlas::providers::outline::OutlineClient;
use atlas::providers::resilience::Resilience;
use atlas::runtime::run::{RunConfig, run};
use atlas::runtime::settings::Intake;
use atlas::runtime::wiring::{Adapters, Parts};
use atlas::runtime::workers::WorkerConfig;
use atlas::telegram::api::BotApi;
use atlas::telegram::messenger::TelegramMessenger;
use atlas_sim::bot_api::{FakeBotApi, Redelivery, deliver_webhooks, updates};
use atlas_sim::clock::SimClock;
use atlas_sim::dialer::SimDialer;
use atlas_sim::fakes::cryptopay::FakeCryptoPay;
use atlas_sim::fakes::outline::FakeOutline;
use atlas_sim::net::{SimListener, SimNetwork};
use atlas_sim::store_host::{STORE_HOST, SimStore, StoreLink};
use atlas_sim::world::{Shared, add_redis, builder, redis_coordination};
use bytes::Bytes;
use hyper::Method;
use secrecy::SecretString;

const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_";
const CRYPTO_TOKEN: &str = "777:SimCryptoPayToken";
const WEBHOOK_SECRET: &str = "sim-webhook-secret";
const USER: i64 = 700;

/// The bot's adapters in this world: the live Telegram and provider clients over simulated TCP.
struct WholeBot;

impl Adapters for WholeBot {
    type Store = SimStore;
    type Coordination = AnyCoordination<SimDialer>;
    type Vpn = OutlineClient<SimNetwork>;
    type Messenger = TelegramMessenger<SimNetwork>;
    type Crypto = CryptoPayClient<SimNetwork>;
}

fn url(text: &str) -> url::Url {
    url::Url::parse(text).unwrap()
}

/// The shop's rules of these runs: the seed's, with user 1 an admin.
fn rules() -> atlas::runtime::wiring::Rules {
    let mut rules = atlas_sim::seed::rules();
    rules.admins = vec![atlas::domain::UserId::new(1).unwrap()];
    rules
}

/// One instance of the bot: coordination on the sim Redis, or the old design in its memory.
async fn bot(link: StoreLink, instance: u64, webhook: &str, legacy: bool) -> turmoil::Result {
    let clock: Arc<dyn Clock> = Arc::new(SimClock::default());
    // A restarted process draws new tokens, as one seeded from the OS would.
    let started = atlas_sim::clock::sim_now().as_millis() as u64;
    let ids: Arc<dyn Ids> = Arc::new(SeededIds::new(7 ^ (instance << 32) ^ started));
    let http = || HttpClient::new(SimNetwork, None).unwrap();
    let telegram = Arc::new(BotApi::new(http(), url("http://telegram:8081"), SecretString::from(TOKEN.to_owned())));
    let resilience = |name| Resilience::new(name, clock.clone(), ids.clone());
    let parts: Parts<WholeBot> = Parts {
        store: SimStore::new(link, instance as usize, Default::default()),
        coordination: if legacy {
            AnyCoordination::Legacy(LegacyCoordination::new(clock.clone(), ids.clone()))
        } else {
            AnyCoordination::Redis(redis_coordination(clock.clone(), ids.clone(), Duration::from_secs(10)))
        },
        vpn: OutlineClient::new(http(), url("http://outline:8443/secretpath"), resilience("the VPN panel")),
        messenger: TelegramMessenger::new(telegram.clone(), clock.clone()),
        crypto: CryptoPayClient::new(
            http(),
            url("http://cryptopay:80/"),
            SecretString::from(CRYPTO_TOKEN.to_owned()),
            Duration::from_secs(3600),
            resilience("Crypto Pay"),
        ),
        clock: clock.clone(),
        ids,
    };
    let config = RunConfig {
        intake: Intake::Webhook {
            url: url(webhook),
            secret: SecretString::from(WEBHOOK_SECRET.to_owned()),
            max_connections: 4,
        },
        updates_in_flight_max: 64,
        shutdown_timeout: Duration::from_secs(5),
        workers: WorkerConfig { interval: Duration::from_secs(1), ..WorkerConfig::default() },
        payment_webhook: Some(("/crypto-pay/webhook".into(), SecretString::from(CRYPTO_TOKEN.to_owned()))),
    };
    let listener = SimListener::bind(8080).await?;
    run(parts, rules(), telegram, None, config, listener, std::future::pending()).await?;
    Ok(())
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

/// The hosts every run has: the sim Redis, the store, and the fake Bot API, Outline panel and
/// Crypto Pay, each serving its router on a simulated port.
struct World<'a> {
    sim: turmoil::Sim<'a>,
    shared: Shared,
    telegram: FakeBotApi,
    outline: FakeOutline,
    crypto: FakeCryptoPay,
}

/// Serves `router` on `port` of the current simulated host.
async fn serving(port: u16, router: axum::Router) -> turmoil::Result {
    let listener = SimListener::bind(port).await?;
    atlas::net::server::serve(listener, router, std::future::pending::<()>(), Duration::ZERO).await;
    Ok(())
}

fn world<'a>(seed: u64, duration: Duration) -> World<'a> {
    let mut sim = builder(seed, duration, Duration::from_millis(10), Default::default()).build();
    let shared = Shared::default();
    add_redis(&mut sim, shared.redis.clone());
    let link = shared.store.clone();
    sim.host(STORE_HOST, move || atlas_sim::store_host::serve(link.clone()));
    let redelivery = Redelivery {
        first: Duration::from_millis(200),
        max: Duration::from_secs(2),
        answer_timeout: Duration::from_secs(30),
    };
    let telegram = FakeBotApi::new(TOKEN, redelivery);
    let api = telegram.clone();
    sim.host("telegram", move || {
        let api = api.clone();
        async move {
            let pusher = HttpClient::new(SimNetwork, None).unwrap();
            tokio::spawn(deliver_webhooks(api.clone(), pusher, std::future::pending()));
            serving(8081, api.router()).await
        }
    });
    let outline = FakeOutline::new("secretpath");
    let panel = outline.clone();
    sim.host("outline", move || serving(8443, panel.router()));
    let crypto = FakeCryptoPay::new(CRYPTO_TOKEN);
    let books = crypto.clone();
    sim.host("cryptopay", move || serving(80, books.router()));
    World { sim, shared, telegram, outline, crypto }
}

/// One run of the purchase: what the user was told, and every Bot API call the bot made.
fn purchase(seed: u64) -> (Vec<String>, Vec<String>) {
    let World { mut sim, shared, telegram, outline, crypto } = world(seed, Duration::from_secs(120));
    let link = shared.store.clone();
    sim.host("bot", move || bot(link.clone(), 0, "http://bot:8080/telegram/hook", false));
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
            let hook = url("http://bot:8080/crypto-pay/webhook");
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

/// A load balancer in front of the instances: each request to the next instance in turn, and to
/// another one when an instance does not answer (as a health-checking balancer would).
async fn balancer(instances: Vec<&'static str>) -> turmoil::Result {
    use axum::extract::{Request, State};
    use axum::response::IntoResponse;
    struct Lb {
        instances: Vec<&'static str>,
        next: std::sync::atomic::AtomicUsize,
        client: HttpClient<SimNetwork>,
    }
    async fn forward(State(lb): State<Arc<Lb>>, request: Request) -> axum::response::Response {
        let (parts, body) = request.into_parts();
        let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else {
            return hyper::StatusCode::BAD_REQUEST.into_response();
        };
        let headers: Vec<(&'static str, String)> = ["content-type", "x-telegram-bot-api-secret-token"]
            .into_iter()
            .filter_map(|name| Some((name, parts.headers.get(name)?.to_str().ok()?.to_owned())))
            .collect();
        let first = lb.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for k in 0..lb.instances.len() {
            let host = lb.instances[(first + k) % lb.instances.len()];
            let to = url(&format!("http://{host}:8080{}", parts.uri.path()));
            if let Ok(answer) =
                lb.client.request(parts.method.clone(), &to, &headers, body.clone(), Duration::from_secs(20)).await
            {
                return (answer.status, answer.body).into_response();
            }
        }
        hyper::StatusCode::BAD_GATEWAY.into_response()
    }
    let lb = Arc::new(Lb { instances, next: Default::default(), client: HttpClient::new(SimNetwork, None).unwrap() });
    let router = axum::Router::new().fallback(forward).with_state(lb);
    atlas::net::server::serve(SimListener::bind(8080).await?, router, std::future::pending::<()>(), Duration::ZERO)
        .await;
    Ok(())
}

/// Two instances behind a balancer; the one that served the withdrawal's first steps is killed
/// in the middle of it (and started again later): the user finishes on the other and the admin
/// approves. Returns the user's balance and ledger sum, or what the user never saw.
fn withdrawal_across_a_killed_instance(legacy: bool) -> Result<(i64, i64), String> {
    const ADMIN: i64 = 1;
    let World { mut sim, shared, telegram, .. } = world(5, Duration::from_secs(300));
    for (index, name) in [(1u64, "bot1"), (2, "bot2")] {
        let link = shared.store.clone();
        sim.host(name, move || bot(link.clone(), index, "http://lb:8080/telegram/hook", legacy));
    }
    sim.host("lb", || balancer(vec!["bot1", "bot2"]));
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
