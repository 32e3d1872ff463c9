//! The financial events an operator audits by: each money movement of a conversation is logged
//! as a named event inside the span of its update, with that update's correlation id; what a
//! user typed as requisites never reaches a log line.

use std::io::Write;
use std::sync::{Arc, Mutex};

use atlas::bot::text::Msg;
use atlas::domain::{Money, Payable, PurchaseId};
use atlas_tests::bot::BotHarness;
use atlas_tests::{count, create_promo};

const ADMIN: i64 = 1;
const USER: i64 = 800;
const FRIEND: i64 = 801;
const CARD: &str = "4276 5555 6666 7777";

/// Log lines, as the bot writes them, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap()).lines().map(str::to_owned).collect()
    }
}

fn money(text: &str) -> Money {
    Money::parse(text).unwrap()
}

#[tokio::test]
async fn every_money_movement_is_a_named_event_with_its_correlation_id() {
    let bot = BotHarness::new(&[ADMIN]).await;
    create_promo(&bot.db, "TEN", 10, None, None).await;
    // From here on, every line comes from handling an update.
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    bot.send_text(ADMIN, "/start").await;
    bot.send_text(USER, "/start").await;
    bot.send_text(FRIEND, &format!("/start ref_{USER}")).await;
    // An admin credits the friend, who buys with a promo code from the balance (the referrer
    // earns), then pays a second period in crypto.
    bot.send_text(ADMIN, "/admin").await;
    bot.press_msg(ADMIN, &Msg::BtnAdminCredit).await;
    bot.send_text(ADMIN, &FRIEND.to_string()).await;
    bot.send_text(ADMIN, "1000").await;
    bot.press_msg(ADMIN, &Msg::BtnConfirm).await;
    bot.press_msg(FRIEND, &Msg::BtnPromo).await;
    bot.send_text(FRIEND, "TEN").await;
    bot.press(FRIEND, "Basic").await;
    bot.press_msg(FRIEND, &Msg::BtnPeriod { days: 30, price: money("199") }).await;
    bot.press_msg(FRIEND, &Msg::BtnPayBalance { balance: money("1000") }).await;
    bot.press_msg(FRIEND, &Msg::BtnBuy).await;
    bot.press(FRIEND, "Basic").await;
    bot.press_msg(FRIEND, &Msg::BtnPeriod { days: 30, price: money("199") }).await;
    bot.press_msg(FRIEND, &Msg::BtnPayCrypto).await;
    let purchase: i64 =
        sqlx::query_scalar("SELECT max(id) FROM pending_purchases").fetch_one(bot.db.pool()).await.unwrap();
    bot.crypto.pay(Payable::Purchase(PurchaseId::new(purchase).unwrap()));
    bot.press_msg(FRIEND, &Msg::BtnCheckPayment).await;
    // A top-up in Stars, its payment delivered twice.
    bot.press_msg(FRIEND, &Msg::BtnTopUp).await;
    bot.send_text(FRIEND, "30").await;
    bot.press_msg(FRIEND, &Msg::BtnPayStars { stars: 20 }).await;
    let invoice = bot.invoices(FRIEND).pop().unwrap();
    for _ in 0..2 {
        bot.deliver(FRIEND, &bot.payment_json(bot.next_id(), FRIEND, &invoice.payload, 20, "stars-1")).await;
    }
    // The friend withdraws; the admin approves.
    bot.press_msg(FRIEND, &Msg::BtnWithdraw).await;
    bot.send_text(FRIEND, "200").await;
    bot.press_msg(FRIEND, &Msg::BtnConfirm).await;
    bot.send_text(FRIEND, CARD).await;
    bot.press_msg(FRIEND, &Msg::BtnConfirm).await;
    bot.press_msg(ADMIN, &Msg::BtnApprove).await;
    // A new promo code; the friend's key reissued by the admin.
    bot.press_msg(ADMIN, &Msg::BtnAdmin).await;
    bot.press_msg(ADMIN, &Msg::BtnAdminNewPromo).await;
    bot.send_text(ADMIN, "SPRING").await;
    bot.press_msg(ADMIN, &Msg::BtnUnit { unit: atlas::bot::text::Word("never") }).await;
    bot.press_msg(ADMIN, &Msg::BtnUnlimited).await;
    bot.send_text(ADMIN, "5").await;
    bot.press_msg(ADMIN, &Msg::BtnConfirm).await;
    bot.press_msg(ADMIN, &Msg::BtnAdmin).await;
    bot.press_msg(ADMIN, &Msg::BtnAdminReissue).await;
    bot.send_text(ADMIN, &FRIEND.to_string()).await;

    let lines = captured.lines();
    for event in [
        "BALANCE_INCREASED",
        "BALANCE_DECREASED",
        "PROMOCODE_CONSUMED",
        "REFERRAL_REWARD_GRANTED",
        "PAYMENT_RECEIVED",
        "WITHDRAWAL_REQUEST_CREATED",
        "WITHDRAWAL_APPROVED",
        "PROMOCODE_CREATED",
        "KEY_REISSUED",
    ] {
        let named = format!("event=\"{event}\"");
        let found: Vec<&String> = lines.iter().filter(|l| l.contains(&named)).collect();
        assert!(!found.is_empty(), "no {event} in the log");
        for line in found {
            assert!(line.contains("correlation_id=upd:"), "{event} without its update's correlation id: {line}");
        }
    }
    let received = lines.iter().filter(|l| l.contains("event=\"PAYMENT_RECEIVED\"")).count() as i64;
    assert_eq!(received, count(&bot.db, "SELECT count(*) FROM payments").await, "one PAYMENT_RECEIVED per payment");
    let digits: String = CARD.chars().filter(char::is_ascii_digit).collect();
    for line in &lines {
        assert!(!line.contains(CARD) && !line.contains(&digits), "requisites in the log: {line}");
    }
}
