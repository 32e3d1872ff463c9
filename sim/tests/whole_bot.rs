//! The whole bot in the simulation: the run function of `atlas-bot run` (webhook route, workers,
//! the real Telegram client and provider clients) on a turmoil host, talking HTTP over simulated
//! TCP to the fake Bot API, the fake Outline panel and the fake Crypto Pay, with the sim Redis and
//! the store model. A user buys a period in crypto through Telegram JSON; the payment arrives by
//! Crypto Pay's signed webhook; the activation worker makes the key at the panel.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use atlas::coord::redis::RedisCoordination;
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
    type Coordination = RedisCoordination<SimDialer>;
    type Vpn = OutlineClient<SimNetwork>;
    type Messenger = TelegramMessenger<SimNetwork>;
    type Crypto = CryptoPayClient<SimNetwork>;
}

fn url(text: &str) -> url::Url {
    url::Url::parse(text).unwrap()
}

async fn bot(link: StoreLink) -> turmoil::Result {
    let clock: Arc<dyn Clock> = Arc::new(SimClock::default());
    let ids: Arc<dyn Ids> = Arc::new(SeededIds::new(7));
    let http = || HttpClient::new(SimNetwork, None).unwrap();
    let telegram = Arc::new(BotApi::new(http(), url("http://telegram:8081"), SecretString::from(TOKEN.to_owned())));
    let resilience = |name| Resilience::new(name, clock.clone(), ids.clone());
    let parts: Parts<WholeBot> = Parts {
        store: SimStore::new(link, 0, Default::default()),
        coordination: redis_coordination(clock.clone(), ids.clone(), Duration::from_secs(10)),
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
            url: url("http://bot:8080/telegram/hook"),
            secret: SecretString::from(WEBHOOK_SECRET.to_owned()),
            max_connections: 4,
        },
        updates_in_flight_max: 64,
        shutdown_timeout: Duration::from_secs(5),
        workers: WorkerConfig { interval: Duration::from_secs(1), ..WorkerConfig::default() },
        payment_webhook: Some(("/crypto-pay/webhook".into(), SecretString::from(CRYPTO_TOKEN.to_owned()))),
    };
    let listener = SimListener::bind(8080).await?;
    run(parts, atlas_sim::seed::rules(), telegram, None, config, listener, std::future::pending()).await?;
    Ok(())
}

/// Waits (in simulated time) until `check` holds.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..600 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never: {what}");
}

/// One run of the purchase: what the user was told, and every Bot API call the bot made.
fn purchase(seed: u64) -> (Vec<String>, Vec<String>) {
    let mut sim = builder(seed, Duration::from_secs(120), Duration::from_millis(10), Default::default()).build();
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
            let listener = SimListener::bind(8081).await?;
            let pusher = api.clone();
            tokio::spawn(deliver_webhooks(pusher, HttpClient::new(SimNetwork, None).unwrap(), std::future::pending()));
            atlas::net::server::serve(listener, api.router(), std::future::pending::<()>(), Duration::ZERO).await;
            Ok(())
        }
    });
    let outline = FakeOutline::new("secretpath");
    let panel = outline.clone();
    sim.host("outline", move || {
        let panel = panel.clone();
        async move {
            let listener = SimListener::bind(8443).await?;
            atlas::net::server::serve(listener, panel.router(), std::future::pending::<()>(), Duration::ZERO).await;
            Ok(())
        }
    });
    let crypto = FakeCryptoPay::new(CRYPTO_TOKEN);
    let books = crypto.clone();
    sim.host("cryptopay", move || {
        let books = books.clone();
        async move {
            let listener = SimListener::bind(80).await?;
            atlas::net::server::serve(listener, books.router(), std::future::pending::<()>(), Duration::ZERO).await;
            Ok(())
        }
    });
    let link = shared.store.clone();
    sim.host("bot", move || bot(link.clone()));
    let told: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = told.clone();
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let made = calls.clone();
    sim.client("user", async move {
        let says = |needle: &'static str| {
            let api = telegram.clone();
            move || api.texts_to(USER).iter().any(|t| t.contains(needle))
        };
        let mut queries = 0;
        let mut press = |label: &str| {
            queries += 1;
            let data = telegram.button(USER, label).unwrap_or_else(|| panic!("no button {label}"));
            telegram.push(updates::callback(USER, "en", &format!("q{queries}"), &data));
        };
        telegram.push(updates::text(USER, "en", "/start"));
        until("welcomed", says("Welcome")).await;
        press("Buy");
        until("tariffs", says("Choose a plan")).await;
        press("Basic");
        until("periods", says("choose a period")).await;
        press("30 days");
        until("methods", says("How do you want to pay")).await;
        press("Crypto");
        until("the invoice", says("in crypto here")).await;
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
        until("paid", says("Payment received")).await;
        until("the key", says("Your key is ready")).await;
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
