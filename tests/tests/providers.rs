//! The live provider clients against fake servers speaking the documented APIs: the Outline
//! panel over TLS with its certificate pinned, Crypto Pay with its token and its signed webhook.
//! Idempotent re-runs, a crash between the provider call and the commit, faults (5xx, hangs,
//! malformed bodies) and bad input (a wrong signature, a wrong amount or currency, an unknown
//! invoice): nothing is created twice and nothing is credited that should not be.

use std::sync::Arc;
use std::time::Duration;

use atlas::bot::text::Msg;
use atlas::domain::{KeyLabel, Money, Payable, PurchaseStatus};
use atlas::net::client::HttpClient;
use atlas::net::{TcpListener, TcpNetwork};
use atlas::ports::payments::InvoiceStatus;
use atlas::ports::store::{Purchases, Subscriptions};
use atlas::ports::vpn::VpnError;
use atlas::ports::{Clock, PaymentProvider, VpnProvider};
use atlas::providers::cryptopay::SIGNATURE_HEADER;
use atlas::runtime::payment_webhook;
use atlas::workers::{Lease, activation};
use atlas_sim::fakes::Fault;
use atlas_tests::bot::BotHarness;
use atlas_tests::providers::{Providers, serve};
use atlas_tests::{assert_ledger_invariants, count, uid};
use bytes::Bytes;
use hyper::{Method, StatusCode};

fn clock(bot: &BotHarness) -> Arc<dyn Clock> {
    bot.clock.clone()
}

#[tokio::test]
async fn outline_keys_are_made_once_by_our_id_over_a_pinned_certificate() {
    let bot = BotHarness::new(&[]).await;
    let p = Providers::start().await;
    let panel = p.outline_client(clock(&bot), 1);
    let sub = atlas::domain::SubscriptionId::new(7).unwrap();
    let label = KeyLabel::Activation { subscription: sub, generation: 0 }.to_string();
    let first = panel.create_key(sub, &label).await.unwrap();
    // Asked again (a retry, another instance): the same key, not a second one.
    let again = panel.create_key(sub, &label).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(first.panel_key_id, label);
    assert!(first.access_uri.starts_with("ss://"));
    assert_eq!(p.outline.keys(), vec![label.clone()]);
    assert_eq!(panel.list_keys().await.unwrap(), vec![label.clone()]);
    panel.revoke_key(&label).await.unwrap();
    panel.revoke_key(&label).await.unwrap();
    assert!(p.outline.keys().is_empty());
    // A client pinned to another certificate never talks to this server.
    let calls = p.outline.calls().len();
    let mut wrong = p.pin;
    wrong[0] ^= 1;
    let http = HttpClient::pinned(TcpNetwork, wrong).unwrap();
    let resilience =
        atlas::providers::resilience::Resilience::new("panel", clock(&bot), atlas_tests::redis_support::ids(2));
    let impostor = atlas::providers::outline::OutlineClient::new(http, p.outline_url.clone(), resilience)
        .with_timeout(Duration::from_millis(500));
    assert!(impostor.create_key(sub, "activate-7-1").await.is_err());
    assert_eq!(p.outline.calls().len(), calls, "no request reached the server");
}

#[tokio::test]
async fn outline_faults_are_retried_a_bounded_number_of_times() {
    let bot = BotHarness::new(&[]).await;
    let p = Providers::start().await;
    let panel = p.outline_client(clock(&bot), 1);
    let sub = atlas::domain::SubscriptionId::new(7).unwrap();
    // A 500 and then a hang past the timeout: the third attempt succeeds, one key.
    p.outline.inject(Fault::ServerError);
    p.outline.inject(Fault::Hang(Duration::from_millis(800)));
    let key = panel.create_key(sub, "activate-7-0").await.unwrap();
    assert_eq!(p.outline.keys(), vec![key.panel_key_id]);
    let methods: Vec<String> = p.outline.calls().into_iter().map(|(m, _)| m).collect();
    assert_eq!(methods, ["PUT", "PUT", "PUT"]);
    // A create whose answer was lost made its key: the retry finds it (409, then a read).
    p.outline.add("activate-7-5");
    let found = panel.create_key(sub, "activate-7-5").await.unwrap();
    assert_eq!(found.panel_key_id, "activate-7-5");
    let methods: Vec<String> = p.outline.calls().into_iter().map(|(m, _)| m).collect();
    assert_eq!(methods[3..], ["PUT", "GET"]);
    // Three failures in a row: the call gives up with a clear error.
    for _ in 0..3 {
        p.outline.inject(Fault::ServerError);
    }
    assert!(matches!(panel.create_key(sub, "activate-7-1").await, Err(VpnError::Refused(_))));
    // A malformed answer is not retried and is not taken for a key.
    p.outline.inject(Fault::Malformed);
    assert!(matches!(panel.list_keys().await, Err(VpnError::Unexpected(_))));
    // A hang on every attempt: a timeout.
    for _ in 0..3 {
        p.outline.inject(Fault::Hang(Duration::from_millis(800)));
    }
    assert!(matches!(panel.list_keys().await, Err(VpnError::Timeout)));
}

#[tokio::test]
async fn a_crash_between_the_panel_and_the_store_makes_no_second_key() {
    let bot = BotHarness::new(&[]).await;
    let p = Providers::start().await;
    bot.buy(1).await;
    // An instance took the subscription, created the key at the panel and died before recording
    // it; its claim runs out.
    let pending = bot.db.store.claim_activations(bot.clock.now(), 10).await.unwrap();
    let dying = p.outline_client(clock(&bot), 1);
    dying.create_key(pending[0].subscription, &pending[0].label.to_string()).await.unwrap();
    bot.clock.advance(atlas::domain::ACTIVATION_CLAIM);
    // Two instances run the activation worker afterwards, at the same moment.
    let (a, b) = (p.app(&bot, 2), p.app(&bot, 3));
    let (ta, tb) = tokio::join!(activation::tick(&a, Lease::None, 10), activation::tick(&b, Lease::None, 10));
    assert_eq!(ta.done + tb.done, 1, "{ta:?} {tb:?}");
    assert_eq!(p.outline.keys(), vec![pending[0].label.to_string()], "one key at the panel");
    let key = bot.db.store.current_key(pending[0].subscription).await.unwrap().unwrap();
    assert_eq!(key.panel_key_id, pending[0].label.to_string());
    assert_eq!(
        bot.messages(1)
            .iter()
            .filter(|m| m.text == bot.says(1, &Msg::KeyReady { uri: key.access_uri.clone() }))
            .count(),
        1
    );
}

#[tokio::test]
async fn crypto_pay_invoices_are_polled_and_only_roubles_count() {
    let bot = BotHarness::new(&[]).await;
    let p = Providers::start().await;
    let client = p.crypto_client(clock(&bot), 1);
    let payable = Payable::Purchase(atlas::domain::PurchaseId::new(5).unwrap());
    let invoice = client.create_invoice(payable, Money::parse("199").unwrap(), "30 days").await.unwrap();
    let created = &p.crypto.calls()[0].1;
    assert_eq!(created["payload"], "p:5");
    assert_eq!(created["fiat"], "RUB");
    assert_eq!(created["currency_type"], "fiat");
    assert_eq!(created["expires_in"], 3600);
    assert!(invoice.pay_url.starts_with("https://"));
    assert_eq!(client.invoice_status(&invoice.invoice_id).await.unwrap(), InvoiceStatus::Pending);
    let id: i64 = invoice.invoice_id.parse().unwrap();
    p.crypto.pay(id);
    let paid = client.invoice_status(&invoice.invoice_id).await.unwrap();
    assert!(matches!(paid, InvoiceStatus::Paid { amount, .. } if amount == Money::parse("199").unwrap()));
    // An invoice Crypto Pay does not list cannot be paid.
    assert_eq!(client.invoice_status("999999").await.unwrap(), InvoiceStatus::Expired);
    // A wrong token is refused, not taken for "no invoices".
    let wrong = atlas::providers::cryptopay::CryptoPayClient::new(
        HttpClient::new(TcpNetwork, None).unwrap(),
        p.crypto_url.clone(),
        secrecy::SecretString::from("1:wrong".to_owned()),
        Duration::from_secs(3600),
        atlas::providers::resilience::Resilience::new("c", clock(&bot), atlas_tests::redis_support::ids(2)),
    );
    assert!(wrong.invoice_status(&invoice.invoice_id).await.is_err());
    // A 502 is retried; a body that is not JSON is an error, never a status.
    p.crypto.inject(Fault::ServerError);
    assert!(matches!(client.invoice_status(&invoice.invoice_id).await.unwrap(), InvoiceStatus::Paid { .. }));
    p.crypto.inject(Fault::Malformed);
    assert!(client.invoice_status(&invoice.invoice_id).await.is_err());
}

/// Opens a crypto purchase through the store and its invoice through the client.
async fn crypto_purchase(bot: &BotHarness, p: &Providers, user: i64) -> (Payable, i64) {
    let (payable, invoice) = bot.crypto_order(user, &p.crypto_client(clock(bot), 9)).await;
    (payable, invoice.invoice_id.parse().unwrap())
}

async fn post_webhook(url: &url::Url, body: &str, signature: &str) -> StatusCode {
    let http = HttpClient::new(TcpNetwork, None).unwrap();
    let headers = [("content-type", "application/json".to_owned()), (SIGNATURE_HEADER, signature.to_owned())];
    let response =
        http.request(Method::POST, url, &headers, Bytes::from(body.to_owned()), Duration::from_secs(5)).await.unwrap();
    response.status
}

#[tokio::test]
async fn the_invoice_paid_webhook_credits_once_and_refuses_forgeries() {
    let bot = BotHarness::new(&[]).await;
    let p = Providers::start().await;
    let app = Arc::new(p.app(&bot, 1));
    let token = secrecy::SecretString::from(atlas_tests::providers::CRYPTO_TOKEN.to_owned());
    let router = payment_webhook::router("/crypto-pay/webhook", app.clone(), token);
    let addr = serve(TcpListener::bind("127.0.0.1:0".parse().unwrap()).await.unwrap(), router);
    let url = url::Url::parse(&format!("http://{addr}/crypto-pay/webhook")).unwrap();
    let (payable, invoice) = crypto_purchase(&bot, &p, 1).await;
    p.crypto.pay(invoice);
    let (body, signature) = p.crypto.webhook(1, invoice);
    // A wrong or missing signature: refused, nothing credited.
    assert_eq!(post_webhook(&url, &body, "00").await, StatusCode::UNAUTHORIZED);
    let tampered = body.replace("\"amount\":\"199", "\"amount\":\"1");
    assert_eq!(post_webhook(&url, &tampered, &signature).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        count(&bot.db, "SELECT count(*) FROM payments WHERE provider = 'crypto' AND purpose = 'purchase'").await,
        0
    );
    // Delivered three times (Crypto Pay retries; its update_id is not unique): counted once.
    for update_id in [1, 1, 2] {
        let (body, signature) = p.crypto.webhook(update_id, invoice);
        assert_eq!(post_webhook(&url, &body, &signature).await, StatusCode::OK);
    }
    assert_eq!(
        count(&bot.db, "SELECT count(*) FROM payments WHERE provider = 'crypto' AND purpose = 'purchase'").await,
        1
    );
    let Payable::Purchase(id) = payable else { unreachable!() };
    assert_eq!(bot.db.store.purchase(id).await.unwrap().unwrap().status, PurchaseStatus::Paid);
    let until = bot.db.store.subscription(uid(1)).await.unwrap().unwrap().expires_at;
    let paid = bot.says(1, &Msg::Paid { until });
    assert_eq!(bot.messages(1).iter().filter(|m| m.text == paid).count(), 1, "told once");
    assert_ledger_invariants(&bot.db).await.unwrap();
}

#[tokio::test]
async fn a_webhook_for_a_wrong_amount_currency_or_order_credits_nothing() {
    let bot = BotHarness::new(&[]).await;
    let p = Providers::start().await;
    let app = Arc::new(p.app(&bot, 1));
    let token = atlas_tests::providers::CRYPTO_TOKEN;
    let router = payment_webhook::router("/hook", app.clone(), secrecy::SecretString::from(token.to_owned()));
    let addr = serve(TcpListener::bind("127.0.0.1:0".parse().unwrap()).await.unwrap(), router);
    let url = url::Url::parse(&format!("http://{addr}/hook")).unwrap();
    let (_, invoice) = crypto_purchase(&bot, &p, 1).await;
    p.crypto.pay(invoice);
    let (body, _) = p.crypto.webhook(1, invoice);
    let sign = |body: &str| atlas::providers::cryptopay::sign(token, body.as_bytes());
    // Signed by Crypto Pay, but not a payment we can count: 200 (never retried), nothing credited.
    for forged in [
        body.replace("\"amount\":\"199", "\"amount\":\"1"),
        body.replace("\"fiat\":\"RUB\"", "\"fiat\":\"USD\""),
        body.replace("\"payload\":\"p:", "\"payload\":\"p:9"),
        body.replace("\"payload\":\"p:", "\"payload\":\"x:"),
        body.replace("\"status\":\"paid\"", "\"status\":\"active\""),
        "{\"update_type\":\"invoice_paid\"}".to_owned(),
    ] {
        assert_eq!(post_webhook(&url, &forged, &sign(&forged)).await, StatusCode::OK, "{forged}");
    }
    assert_eq!(count(&bot.db, "SELECT count(*) FROM payments").await, 1, "only the funding payment");
    assert_ledger_invariants(&bot.db).await.unwrap();
}
