//! `atlas-bot run`, the real binary, on real PostgreSQL and Redis against the fake Bot API:
//! conversations through Telegram JSON by webhook and by polling, several instances, a killed
//! poller, a foreign poller, SIGTERM with an update in flight, one update at two instances, the
//! promo limit across instances, the operator's endpoints, and no secret in any log line.

use std::time::Duration;

use atlas::net::TcpNetwork;
use atlas::net::client::HttpClient;
use atlas::ports::store::Accounts as _;
use atlas_sim::bot_api::{Fault, updates};
use atlas_tests::e2e::{Bot, DB_PASSWORD, Mode, Shop, TOKEN_SECRET, WEBHOOK_SECRET};
use atlas_tests::{create_promo, uid};
use bytes::Bytes;
use hyper::Method;

const ADMIN: i64 = 1;
const USER: i64 = 700;

/// Credits `user` through the store, as a paid top-up would.
async fn fund(shop: &Shop, user: i64, amount: &str) {
    let store = &shop.db.store;
    store.register_user(uid(user), atlas::domain::Language::En, None, None, chrono::Utc::now()).await.unwrap();
    let payment = atlas::ports::store::ProviderPayment {
        provider: atlas::domain::PaymentProviderKind::Crypto,
        payment_id: atlas::domain::ProviderPaymentId::parse(&format!("fund-{user}-{amount}")).unwrap(),
        amount: atlas::domain::Money::parse(amount).unwrap(),
    };
    store.top_up(uid(user), payment, chrono::Utc::now()).await.unwrap();
}

/// POSTs an update straight to a bot's webhook route, as Telegram (or a load balancer) would.
async fn post_update(bot: &Bot, update: &serde_json::Value, secret: &str) -> u16 {
    let client = HttpClient::new(TcpNetwork, None).unwrap();
    let url = url::Url::parse(&format!("http://{}/telegram/hook", bot.addr)).unwrap();
    let headers =
        [("content-type", "application/json".to_owned()), ("x-telegram-bot-api-secret-token", secret.to_owned())];
    let body = Bytes::from(update.to_string());
    client.request(Method::POST, &url, &headers, body, Duration::from_secs(30)).await.unwrap().status.as_u16()
}

fn assert_no_secret(bot: &Bot) {
    for line in bot.log() {
        assert!(!line.contains(TOKEN_SECRET), "the bot token leaked: {line}");
        assert!(!line.contains(DB_PASSWORD), "the database password leaked: {line}");
        assert!(!line.contains(WEBHOOK_SECRET), "the webhook secret leaked: {line}");
    }
}

/// By webhook: a whole withdrawal through Telegram JSON; the operator's endpoints; SIGTERM ends
/// the process with status 0; no secret in any log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_by_webhook_then_a_clean_stop() {
    let shop = Shop::new(Mode::Webhook, &[ADMIN]).await;
    let mut bot = shop.start().await;
    let webhook = shop.telegram.webhook().expect("the bot set its webhook");
    assert_eq!(webhook.url.path(), "/telegram/hook");
    assert_eq!(webhook.secret.as_deref(), Some(WEBHOOK_SECRET));
    fund(&shop, USER, "1000").await;
    shop.send_text(ADMIN, "/start");
    shop.send_text(USER, "/start");
    shop.told(USER, "Welcome").await;
    shop.shown(USER, "Withdraw").await;
    shop.press(USER, "Withdraw");
    shop.told(USER, "How much").await;
    shop.send_text(USER, "250");
    shop.told(USER, "250.00").await;
    shop.press(USER, "Confirm");
    shop.told(USER, "card").await;
    shop.send_text(USER, "4276 1234 5678 9012");
    shop.told(USER, "4276 1234 5678 9012").await;
    shop.press(USER, "Confirm");
    shop.told(USER, "Withdrawal request #1").await;
    shop.told(ADMIN, "4276 1234 5678 9012").await;
    // The admin approves from the notice's button; the user hears of it.
    shop.press(ADMIN, "Approve");
    shop.told(ADMIN, "approved").await;
    shop.told(USER, "has been paid out").await;
    shop.settled().await;
    let held: i64 = sqlx::query_scalar("SELECT balance FROM users WHERE telegram_id = $1")
        .bind(USER)
        .fetch_one(shop.db.pool())
        .await
        .unwrap();
    assert_eq!(held, 75_000);
    assert_eq!(bot.get("/healthz").await.0, 200);
    assert_eq!(bot.get("/readyz").await, (200, "ready".to_owned()));
    let (status, metrics) = bot.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("atlas_updates_total{outcome=\"committed\"}"), "{metrics}");
    for name in [
        "atlas_telegram_calls_total",
        "atlas_update_seconds",
        "atlas_redis_call_seconds",
        "atlas_postgres_call_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    // A forged update (without the secret) is refused and handled not.
    assert_eq!(post_update(&bot, &updates::text(USER, "en", "/start"), "wrong").await, 401);
    bot.terminate();
    assert_eq!(bot.exit_code().await, Some(0));
    assert!(shop.telegram.webhook().is_some(), "the webhook is never deleted on stop");
    assert_no_secret(&bot);
}

/// SIGTERM while an update is being handled: it finishes (its reply goes out), then the process
/// exits with status 0; new updates meanwhile are answered 503 for Telegram to deliver again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_update_in_flight_finish() {
    let shop = Shop::new(Mode::Webhook, &[ADMIN]).await;
    let mut bot = shop.start().await;
    shop.telegram.inject("sendMessage", Fault::Hang(Duration::from_secs(2)));
    shop.send_text(USER, "/start");
    shop.called("sendMessage").await;
    bot.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = bot.get("/readyz").await;
    assert_eq!(status, 503, "draining is not ready");
    assert_eq!(post_update(&bot, &updates::text(USER + 1, "en", "/start"), WEBHOOK_SECRET).await, 503);
    assert_eq!(bot.exit_code().await, Some(0));
    assert!(shop.telegram.texts_to(USER).iter().any(|t| t.contains("Welcome")), "the update in flight finished");
    assert!(shop.telegram.texts_to(USER + 1).is_empty(), "the late update was left for redelivery");
}

/// The same update POSTed to two instances at once: handled once, the user answered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_update_at_two_instances_is_handled_once() {
    let shop = Shop::new(Mode::Webhook, &[ADMIN]).await;
    let (a, b) = (shop.start().await, shop.start().await);
    let mut update = updates::text(USER, "en", "/start");
    update["update_id"] = serde_json::json!(77);
    let (sa, sb) = tokio::join!(post_update(&a, &update, WEBHOOK_SECRET), post_update(&b, &update, WEBHOOK_SECRET));
    assert!([sa, sb].contains(&200), "{sa} {sb}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let welcomes = shop.telegram.texts_to(USER).iter().filter(|t| t.contains("Welcome")).count();
    assert_eq!(welcomes, 1, "{sa} {sb}");
}

/// Promo attempts spread over two instances: 10 a minute in all, the rest told when to retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_promo_limit_holds_across_instances() {
    let shop = Shop::new(Mode::Webhook, &[ADMIN]).await;
    let (a, b) = (shop.start().await, shop.start().await);
    create_promo(&shop.db, "REAL", 10, None, None).await;
    let mut id = 1_000;
    let mut post = async |bot: &Bot, update: serde_json::Value| {
        id += 1;
        let mut update = update;
        update["update_id"] = serde_json::json!(id);
        shop.telegram.note_delivered(&update);
        assert_eq!(post_update(bot, &update, WEBHOOK_SECRET).await, 200);
    };
    post(&a, updates::text(USER, "en", "/start")).await;
    post(&a, updates::callback(USER, "en", "q1", "pr")).await;
    // The conversation waits for a code after each refusal: 14 codes, alternately at each
    // instance (16 updates in all stay within the flood limit of 20 per 10 s).
    for n in 0..14 {
        let bot = if n % 2 == 0 { &a } else { &b };
        post(bot, updates::text(USER, "en", "NOSUCHCODE")).await;
    }
    let told = shop.telegram.texts_to(USER);
    let not_found = told.iter().filter(|t| t.contains("no such promo code") || t.contains("not found")).count();
    let limited = told.iter().filter(|t| t.contains("Too many attempts")).count();
    assert_eq!((not_found, limited), (10, 4), "{told:#?}");
}

/// By polling, two instances: one polls; killed with SIGKILL in the middle of a withdrawal, the
/// other takes over within the lease and the user finishes; no update is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_poller_is_replaced_and_the_withdrawal_goes_on() {
    let shop = Shop::new(Mode::Polling, &[ADMIN]).await;
    let (a, b) = (shop.start().await, shop.start().await);
    fund(&shop, USER, "1000").await;
    shop.send_text(USER, "/start");
    shop.told(USER, "Welcome").await;
    let poller_is_a = a.log().iter().any(|l| l.contains("polling for updates"));
    let (mut poller, standby) = if poller_is_a { (a, b) } else { (b, a) };
    shop.shown(USER, "Withdraw").await;
    shop.press(USER, "Withdraw");
    shop.told(USER, "How much").await;
    shop.send_text(USER, "300");
    shop.told(USER, "300.00").await;
    poller.kill();
    shop.press(USER, "Confirm");
    shop.told(USER, "card").await;
    standby.wait_for_log("polling for updates").await;
    shop.send_text(USER, "4276 1234 5678 9012");
    shop.told(USER, "4276 1234 5678 9012").await;
    shop.press(USER, "Confirm");
    shop.told(USER, "Withdrawal request #1").await;
    shop.settled().await;
    let requests: i64 =
        sqlx::query_scalar("SELECT count(*) FROM withdrawal_requests").fetch_one(shop.db.pool()).await.unwrap();
    assert_eq!(requests, 1);
    let asked_amount = shop.telegram.texts_to(USER).iter().filter(|t| t.contains("How much")).count();
    assert_eq!(asked_amount, 1, "no update was handled twice");
    drop(poller);
}

/// Another process polling the same bot: the poller meets a 409, logs
/// POLLING_CONFLICT_DETECTED and the process exits with status 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_poller_stops_the_bot_with_status_1() {
    let shop = Shop::new(Mode::Polling, &[ADMIN]).await;
    let mut bot = shop.start().await;
    bot.wait_for_log("polling for updates").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = HttpClient::new(TcpNetwork, None).unwrap();
    let url = shop.api_url.join(&format!("/bot{}/getUpdates", atlas_tests::e2e::TOKEN)).unwrap();
    let body = Bytes::from(r#"{"timeout":1}"#);
    let headers = [("content-type", "application/json".to_owned())];
    let _ = client.request(Method::POST, &url, &headers, body, Duration::from_secs(5)).await;
    assert_eq!(bot.exit_code().await, Some(1));
    assert!(bot.log().iter().any(|l| l.contains("POLLING_CONFLICT_DETECTED")), "{:#?}", bot.log());
}

/// A purchase in Telegram Stars through the real binary: the invoice, the pre-checkout answered
/// at once, the payment counted; and a user who blocked the bot is marked and left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stars_purchase_and_a_user_who_blocked_the_bot() {
    let shop = Shop::new(Mode::Webhook, &[ADMIN]).await;
    let _bot = shop.start().await;
    shop.to_payment_choice(USER).await;
    shop.press(USER, "Stars");
    let invoice = shop.called("sendInvoice").await;
    let payload = invoice["payload"].as_str().unwrap().to_owned();
    let stars = invoice["prices"][0]["amount"].as_u64().unwrap() as u32;
    shop.telegram.push(updates::pre_checkout(USER, "en", "pc-1", &payload, stars));
    assert_eq!(shop.called("answerPreCheckoutQuery").await["ok"], true);
    shop.telegram.push(updates::paid(USER, "en", &payload, stars, "charge-e2e"));
    shop.told(USER, "Payment received").await;
    let paid: i64 = sqlx::query_scalar("SELECT count(*) FROM payments").fetch_one(shop.db.pool()).await.unwrap();
    assert_eq!(paid, 1);
    // The user blocks the bot: Telegram says so, and the bot records it without a word.
    let before = shop.telegram.calls_of("sendMessage").len();
    shop.telegram.push(updates::membership(USER, "en", "kicked"));
    shop.settled().await;
    let blocked: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT blocked_at FROM users WHERE telegram_id = $1")
            .bind(USER)
            .fetch_one(shop.db.pool())
            .await
            .unwrap();
    assert!(blocked.is_some());
    assert_eq!(shop.telegram.calls_of("sendMessage").len(), before);
}

/// SIGTERM in polling mode while an update is being handled: the batch is finished (the reply
/// goes out), the lease is resigned, the process exits 0, and a standby does not handle the
/// update again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_polling_finishes_the_batch_in_hand() {
    let shop = Shop::new(Mode::Polling, &[ADMIN]).await;
    let mut poller = shop.start().await;
    poller.wait_for_log("polling for updates").await;
    let standby = shop.start().await;
    shop.telegram.inject("sendMessage", Fault::Hang(Duration::from_secs(2)));
    shop.send_text(USER, "/start");
    shop.called("sendMessage").await;
    poller.terminate();
    assert_eq!(poller.exit_code().await, Some(0));
    standby.wait_for_log("polling for updates").await;
    shop.send_text(USER + 1, "/start");
    shop.told(USER + 1, "Welcome").await;
    let welcomes = shop.telegram.texts_to(USER).iter().filter(|t| t.contains("Welcome")).count();
    assert_eq!(welcomes, 1, "finished once, not handled again by the standby");
}

/// A webhook set by another deployment: the poller does not delete it; it stops the bot with
/// POLLING_CONFLICT_DETECTED and status 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_of_another_deployment_stops_the_poller() {
    let shop = Shop::new(Mode::Polling, &[ADMIN]).await;
    let client = HttpClient::new(TcpNetwork, None).unwrap();
    let url = shop.api_url.join(&format!("/bot{}/setWebhook", atlas_tests::e2e::TOKEN)).unwrap();
    let body = Bytes::from(r#"{"url":"https://elsewhere.example/hook"}"#);
    let headers = [("content-type", "application/json".to_owned())];
    client.request(Method::POST, &url, &headers, body, Duration::from_secs(5)).await.unwrap();
    let mut bot = shop.start().await;
    assert_eq!(bot.exit_code().await, Some(1));
    assert!(bot.log().iter().any(|l| l.contains("POLLING_CONFLICT_DETECTED")), "{:#?}", bot.log());
    assert!(shop.telegram.webhook().is_some(), "the other deployment's webhook is left alone");
}

/// A purchase paid in crypto: the invoice is made at Crypto Pay, the `invoice_paid` webhook is
/// delivered twice to two instances, the payment is counted once, and the activation worker makes
/// the key at the Outline panel (over TLS, its certificate pinned), which the user then sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crypto_purchase_paid_by_webhook_gets_its_key_from_the_panel() {
    let shop = Shop::new(Mode::Webhook, &[ADMIN]).await;
    let (a, b) = (shop.start().await, shop.start().await);
    shop.to_payment_choice(USER).await;
    shop.press(USER, "Crypto");
    shop.told(USER, "in crypto here").await;
    let invoices = shop.providers.crypto.invoices();
    assert_eq!(invoices.len(), 1, "one invoice made");
    shop.providers.crypto.pay(invoices[0].id);
    let (body, signature) = shop.providers.crypto.webhook(1, invoices[0].id);
    let client = HttpClient::new(TcpNetwork, None).unwrap();
    let deliver = async |bot: &Bot| {
        let url = url::Url::parse(&format!("http://{}/crypto-pay/webhook", bot.addr)).unwrap();
        let headers = [
            ("content-type", "application/json".to_owned()),
            (atlas::providers::cryptopay::SIGNATURE_HEADER, signature.clone()),
        ];
        let body = Bytes::from(body.clone());
        client.request(Method::POST, &url, &headers, body, Duration::from_secs(30)).await.unwrap().status.as_u16()
    };
    let (sa, sb) = tokio::join!(deliver(&a), deliver(&b));
    assert_eq!((sa, sb), (200, 200));
    shop.told(USER, "Payment received").await;
    let paid: i64 = sqlx::query_scalar("SELECT count(*) FROM payments WHERE provider = 'crypto'")
        .fetch_one(shop.db.pool())
        .await
        .unwrap();
    assert_eq!(paid, 1, "counted once");
    // The key is made at the panel by whichever instance's activation worker got there first.
    let ready = shop.told(USER, "Your key is ready").await;
    assert_eq!(shop.providers.outline.keys().len(), 1);
    assert!(ready.contains("ss://"), "{ready}");
    let told = shop.telegram.texts_to(USER);
    assert_eq!(told.iter().filter(|t| t.contains("Payment received")).count(), 1, "{told:#?}");
    assert_eq!(told.iter().filter(|t| t.contains("Your key is ready")).count(), 1, "{told:#?}");
    for bot in [&a, &b] {
        assert_no_secret(bot);
        for line in bot.log() {
            assert!(!line.contains(atlas_tests::providers::OUTLINE_PREFIX), "the panel's secret path leaked: {line}");
            assert!(!line.contains(atlas_tests::providers::CRYPTO_TOKEN), "the Crypto Pay token leaked: {line}");
        }
    }
}

/// Two admins reissue one user's key on two instances at the same moment: exactly one reissue
/// (the other admin is told one is in progress), the old key revoked at the panel, one new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_admins_reissuing_one_key_on_two_instances_make_one_key() {
    const ADMIN2: i64 = 2;
    let shop = Shop::new(Mode::Webhook, &[ADMIN, ADMIN2]).await;
    fund(&shop, USER, "500").await;
    let request = atlas::ports::store::PurchaseRequest {
        user: uid(USER),
        tariff: atlas::domain::TariffCode::parse("basic").unwrap(),
        days: 30,
        promo: None,
        idempotency_key: None,
    };
    atlas::ports::store::Purchases::purchase_from_balance(&shop.db.store, request, chrono::Utc::now()).await.unwrap();
    let (a, b) = (shop.start().await, shop.start().await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while shop.providers.outline.keys().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the first key was never made");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first_key = shop.providers.outline.keys()[0].clone();
    // Both admins open the reissue step.
    let mut id = 5_000;
    for (admin, bot) in [(ADMIN, &a), (ADMIN2, &b)] {
        for step in ["/start", "Admin", "Reissue a key"] {
            id += 1;
            let mut update = if step == "/start" {
                updates::text(admin, "en", step)
            } else {
                let data = shop.telegram.button(admin, step).expect("the button");
                updates::callback(admin, "en", &format!("q{id}"), &data)
            };
            update["update_id"] = serde_json::json!(id);
            shop.telegram.note_delivered(&update);
            assert_eq!(post_update(bot, &update, WEBHOOK_SECRET).await, 200);
        }
        shop.told(admin, "Send the user's Telegram id").await;
    }
    // The panel is slow to make the first new key, so the two reissues overlap.
    shop.providers.outline.inject(atlas_sim::fakes::Fault::Hang(Duration::from_millis(1500)));
    let mut first = updates::text(ADMIN, "en", &USER.to_string());
    first["update_id"] = serde_json::json!(6_001);
    let mut second = updates::text(ADMIN2, "en", &USER.to_string());
    second["update_id"] = serde_json::json!(6_002);
    let later = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        post_update(&b, &second, WEBHOOK_SECRET).await
    };
    let (sa, sb) = tokio::join!(post_update(&a, &first, WEBHOOK_SECRET), later);
    assert_eq!((sa, sb), (200, 200));
    shop.told(ADMIN, "A new key was issued").await;
    shop.told(ADMIN2, "already being made").await;
    let keys = shop.providers.outline.keys();
    assert_eq!(keys.len(), 1, "one key alive at the panel: {keys:?}");
    assert_ne!(keys[0], first_key, "the old key was revoked");
    assert!(keys[0].starts_with("reissue-"), "{keys:?}");
    let reissues =
        shop.providers.outline.calls().iter().filter(|(m, id)| m == "PUT" && id.starts_with("reissue-")).count();
    assert_eq!(reissues, 1, "one reissue reached the panel");
}
