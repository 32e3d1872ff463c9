//! The live Telegram adapter (`atlas::telegram`) against the fake Bot API on real TCP: what it
//! sends, and how it meets Telegram's refusals (429 with `retry_after`, 5xx, a blocked user, a
//! wrong token, a message Telegram cannot parse).

use std::sync::Arc;
use std::time::Duration;

use atlas::domain::UserId;
use atlas::net::client::HttpClient;
use atlas::net::server::serve;
use atlas::net::{Listener as _, TcpListener, TcpNetwork};
use atlas::ports::Messenger;
use atlas::ports::messenger::{Button, MessengerError, OutgoingMessage, StarsInvoice};
use atlas::runtime::live::SystemClock;
use atlas::telegram::api::BotApi;
use atlas::telegram::messenger::TelegramMessenger;
use atlas_sim::bot_api::{FakeBotApi, Fault, Redelivery};
use secrecy::SecretString;

const TOKEN: &str = "123456789:TEST-token_value";

async fn fake() -> (FakeBotApi, url::Url) {
    let api = FakeBotApi::new(TOKEN, Redelivery::default());
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(serve(listener, api.router(), std::future::pending(), Duration::from_secs(1)));
    (api, base)
}

fn messenger(base: &url::Url, token: &str) -> TelegramMessenger<TcpNetwork> {
    let http = HttpClient::new(TcpNetwork, None).unwrap();
    let api = BotApi::new(http, base.clone(), SecretString::from(token.to_owned()));
    TelegramMessenger::new(Arc::new(api), Arc::new(SystemClock::new()))
}

fn uid(n: i64) -> UserId {
    UserId::new(n).unwrap()
}

fn message(text: &str) -> OutgoingMessage {
    OutgoingMessage {
        text: text.into(),
        keyboard: vec![vec![Button { label: "Buy & pay".into(), callback_data: "buy".into() }]],
    }
}

#[tokio::test]
async fn messages_invoices_and_answers_go_out_as_the_bot_api_wants_them() {
    let (api, base) = fake().await;
    let m = messenger(&base, TOKEN);
    let id = m.send(uid(42), message("<b>Hello</b> &amp; welcome")).await.unwrap();
    assert_eq!(id, 1);
    let sent = &api.calls_of("sendMessage")[0];
    assert_eq!(sent["chat_id"], 42);
    assert_eq!(sent["parse_mode"], "HTML");
    assert_eq!(sent["reply_markup"]["inline_keyboard"][0][0]["callback_data"], "buy");
    assert_eq!(sent["reply_markup"]["inline_keyboard"][0][0]["text"], "Buy & pay");
    let invoice =
        StarsInvoice { title: "Atlas VPN".into(), description: "30 days".into(), payload: "p:5".into(), stars: 133 };
    assert_eq!(m.send_invoice(uid(42), invoice).await.unwrap(), 2);
    let sent = &api.calls_of("sendInvoice")[0];
    assert_eq!((sent["currency"].as_str(), sent["prices"][0]["amount"].as_u64()), (Some("XTR"), Some(133)));
    assert_eq!(sent["provider_token"], "");
    // Telegram answers only queries and refunds only payments it delivered.
    use atlas_sim::bot_api::updates;
    api.push(updates::callback(42, "en", "cb-1", "buy"));
    api.push(updates::pre_checkout(42, "en", "pc-1", "p:5", 133));
    api.push(updates::paid(42, "en", "p:5", 133, "charge-1"));
    m.answer_callback("cb-1", None).await.unwrap();
    m.answer_pre_checkout("pc-1", Some("no longer payable")).await.unwrap();
    let answer = &api.calls_of("answerPreCheckoutQuery")[0];
    assert_eq!((answer["ok"].as_bool(), answer["error_message"].as_str()), (Some(false), Some("no longer payable")));
    // A refund, and the same refund again (Telegram: CHARGE_ALREADY_REFUNDED): both done.
    m.refund_stars(uid(42), "charge-1").await.unwrap();
    m.refund_stars(uid(42), "charge-1").await.unwrap();
    let refunds = api.calls_of("refundStarPayment");
    assert_eq!(refunds.len(), 2);
    assert_eq!(
        (refunds[0]["user_id"].as_i64(), refunds[0]["telegram_payment_charge_id"].as_str()),
        (Some(42), Some("charge-1"))
    );
}

#[tokio::test]
async fn refusals_are_honoured_retried_or_reported() {
    let (api, base) = fake().await;
    let m = messenger(&base, TOKEN);
    // A 429 is waited out, then the message goes.
    api.inject("sendMessage", Fault::TooManyRequests { retry_after: 1 });
    let started = tokio::time::Instant::now();
    m.send(uid(1), message("after a pause")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "retry_after was honoured");
    // A 5xx is repeated.
    api.inject("sendMessage", Fault::ServerError);
    m.send(uid(2), message("after a failure")).await.unwrap();
    assert_eq!(api.texts_to(2), ["after a failure"]);
    // A wait longer than the send budget is reported at once, not waited.
    api.inject("sendMessage", Fault::TooManyRequests { retry_after: 600 });
    let started = tokio::time::Instant::now();
    let refused = m.send(uid(3), message("much later")).await;
    assert!(matches!(refused, Err(MessengerError::RetryAfter(_))), "{refused:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A user who blocked the bot: reported, and not tried again.
    api.block(4);
    let before = api.calls_of("sendMessage").len();
    assert!(matches!(m.send(uid(4), message("hello?")).await, Err(MessengerError::ChatUnreachable)));
    assert_eq!(api.calls_of("sendMessage").len(), before + 1);
    // A text Telegram cannot parse is a refusal, not repeated.
    let broken = m.send(uid(5), message("Tom & Jerry")).await;
    assert!(matches!(broken, Err(MessengerError::Unexpected(_))), "{broken:?}");
    // A wrong token is refused; the token is in no error.
    let wrong = messenger(&base, "123456789:WRONG").send(uid(6), message("hi")).await.unwrap_err();
    assert!(!format!("{wrong:?} {wrong}").contains("WRONG"), "{wrong}");
}
