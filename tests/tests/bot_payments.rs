//! Money that came in is never stranded: a crypto invoice is made once and shown again, can be
//! checked from any message that shows it, is counted when it turns out paid at cancel time, and
//! counts toward the balance when its order was closed; a Stars payment that the store cannot
//! count now is handed back to be delivered again rather than lost.

use atlas::bot::text::Msg;
use atlas::domain::{Money, Payable, PurchaseId};
use atlas::ports::store::Subscriptions;
use atlas::runtime::intake::Handled;
use atlas_tests::bot::{BotHarness, texts};
use atlas_tests::{assert_ledger_invariants, count, uid};

const ADMIN: i64 = 1;
const USER: i64 = 700;

fn money(text: &str) -> Money {
    Money::parse(text).unwrap()
}

/// The user at the payment step of a 30-day Basic period (199.00).
async fn at_payment_step(bot: &BotHarness) {
    bot.send_text(USER, "/start").await;
    bot.press_msg(USER, &Msg::BtnBuy).await;
    bot.press(USER, "Basic").await;
    bot.press_msg(USER, &Msg::BtnPeriod { days: 30, price: money("199") }).await;
}

/// The same with 500.00 on the user's balance.
async fn funded_at_payment_step(bot: &BotHarness) {
    bot.send_text(USER, "/start").await;
    bot.fund(USER, "500").await;
    at_payment_step(bot).await;
}

async fn the_purchase(bot: &BotHarness) -> (Payable, String) {
    let (id, status): (i64, String) =
        sqlx::query_as("SELECT id, status FROM pending_purchases").fetch_one(bot.db.pool()).await.unwrap();
    (Payable::Purchase(PurchaseId::new(id).unwrap()), status)
}

/// "Pay with crypto" handled again (the first run's commit lost), and pressed again: the
/// invoice recorded by the first run is shown each time; Crypto Pay is asked once.
#[tokio::test]
async fn a_crypto_invoice_is_made_once_and_shown_again() {
    let bot = BotHarness::new(&[ADMIN]).await;
    at_payment_step(&bot).await;
    let (redelivered, pressed_again) = bot.press_losing_the_commit(USER, &Msg::BtnPayCrypto).await;
    let (payable, _) = the_purchase(&bot).await;
    assert_eq!(bot.crypto.made_for(payable), 1, "one invoice at the provider");
    for replies in [&redelivered, &pressed_again] {
        assert!(texts(replies).contains("https://pay.example/inv-1"), "{}", texts(replies));
    }
    assert_eq!(count(&bot.db, "SELECT count(*) FROM pending_purchases").await, 1);
    bot.crypto.pay(payable);
    let r = bot.press_msg(USER, &Msg::BtnCheckPayment).await;
    let sub = bot.db.store.subscription(uid(USER)).await.unwrap().expect("paid");
    assert_eq!(texts(&r), bot.says(USER, &Msg::Paid { until: sub.expires_at }));
}

/// Cancel pressed after the user paid: the payment is counted instead of the order cancelled.
#[tokio::test]
async fn cancel_counts_an_invoice_that_was_paid_meanwhile() {
    let bot = BotHarness::new(&[ADMIN]).await;
    at_payment_step(&bot).await;
    bot.press_msg(USER, &Msg::BtnPayCrypto).await;
    let (payable, _) = the_purchase(&bot).await;
    bot.crypto.pay(payable);
    let r = bot.press_msg(USER, &Msg::BtnCancel).await;
    let sub = bot.db.store.subscription(uid(USER)).await.unwrap().expect("paid");
    assert!(texts(&r).starts_with(&bot.says(USER, &Msg::Paid { until: sub.expires_at })), "{}", texts(&r));
    assert!(!texts(&r).contains(&bot.says(USER, &Msg::Cancelled)));
    assert_eq!(the_purchase(&bot).await.1, "paid");
    assert_ledger_invariants(&bot.db).await.unwrap();
}

/// An order cancelled before it was paid: its invoice, paid anyway and checked from its message,
/// goes to the balance; before it is paid, the check says the order was cancelled.
#[tokio::test]
async fn a_paid_invoice_of_a_cancelled_order_goes_to_the_balance() {
    let bot = BotHarness::new(&[ADMIN]).await;
    at_payment_step(&bot).await;
    bot.press_msg(USER, &Msg::BtnPayCrypto).await;
    let r = bot.send_text(USER, "/cancel").await;
    assert!(texts(&r).starts_with(&bot.says(USER, &Msg::Cancelled)));
    let (payable, status) = the_purchase(&bot).await;
    assert_eq!(status, "cancelled");
    let r = bot.press_msg(USER, &Msg::BtnCheckPayment).await;
    assert_eq!(texts(&r), bot.says(USER, &Msg::InvoiceCancelled));
    bot.crypto.pay(payable);
    let r = bot.press_msg(USER, &Msg::BtnCheckPayment).await;
    assert_eq!(texts(&r), bot.says(USER, &Msg::PaidToBalance { amount: money("199") }));
    assert_eq!(bot.balance(USER).await, 19_900);
    assert!(bot.db.store.subscription(uid(USER)).await.unwrap().is_none());
    // Checked again: counted once, and said as the first time.
    let r = bot.press_msg(USER, &Msg::BtnCheckPayment).await;
    assert_eq!(texts(&r), bot.says(USER, &Msg::PaidToBalance { amount: money("199") }));
    assert_eq!(bot.balance(USER).await, 19_900);
    assert_ledger_invariants(&bot.db).await.unwrap();
}

/// Somebody else's check button (forged data naming another user's purchase) reveals and
/// counts nothing.
#[tokio::test]
async fn another_users_check_button_is_refused() {
    let bot = BotHarness::new(&[ADMIN]).await;
    at_payment_step(&bot).await;
    bot.press_msg(USER, &Msg::BtnPayCrypto).await;
    let (payable, _) = the_purchase(&bot).await;
    bot.crypto.pay(payable);
    bot.send_text(701, "/start").await;
    let r = bot.press_data(701, &format!("chk:{}", payable.payload())).await;
    assert!(texts(&r).starts_with(&bot.says(701, &Msg::StaleButton)), "{}", texts(&r));
    assert!(!texts(&r).contains("pay.example"));
    assert_eq!(the_purchase(&bot).await.1, "pending");
    assert_eq!(count(&bot.db, "SELECT count(*) FROM payments").await, 0);
}

/// A Stars payment arrives while the store cannot count it: the update is handed back (not
/// marked handled) and nothing is said; delivered again once the store is back, it is counted
/// once.
#[tokio::test]
async fn a_stars_payment_the_store_cannot_count_is_delivered_again() {
    let bot = BotHarness::new(&[ADMIN]).await;
    at_payment_step(&bot).await;
    bot.press_msg(USER, &Msg::BtnPayStars { stars: 133 }).await;
    let invoice = bot.invoices(USER).pop().unwrap();
    let paid = bot.payment_json(bot.next_id(), USER, &invoice.payload, 133, "charge-1");
    sqlx::query("ALTER TABLE payments RENAME TO payments_away").execute(bot.db.pool()).await.unwrap();
    let (handled, replies) = bot.deliver_to(&bot.app, USER, &paid).await;
    assert_eq!(handled, Handled::Retry);
    assert!(handled.wants_redelivery());
    assert!(replies.is_empty(), "{}", texts(&replies));
    sqlx::query("ALTER TABLE payments_away RENAME TO payments").execute(bot.db.pool()).await.unwrap();
    let r = bot.deliver(USER, &paid).await;
    let sub = bot.db.store.subscription(uid(USER)).await.unwrap().expect("paid");
    assert_eq!(texts(&r), bot.says(USER, &Msg::Paid { until: sub.expires_at }));
    assert_eq!(count(&bot.db, "SELECT count(*) FROM payments").await, 1);
    assert_ledger_invariants(&bot.db).await.unwrap();
}

/// A stale button in the middle of a conversation is refused, and the conversation goes on.
#[tokio::test]
async fn a_stale_button_leaves_the_conversation_in_progress() {
    let bot = BotHarness::new(&[ADMIN]).await;
    bot.send_text(USER, "/start").await;
    bot.fund(USER, "500").await;
    bot.press_msg(USER, &Msg::BtnWithdraw).await;
    let r = bot.press_data(USER, "s:1:ok").await;
    assert!(texts(&r).starts_with(&bot.says(USER, &Msg::StaleButton)));
    let r = bot.send_text(USER, "150").await;
    assert_eq!(texts(&r), bot.says(USER, &Msg::WithdrawConfirmAmount { amount: money("150") }));
}

/// "From balance" pressed on an instance that died after the purchase landed (the user was told
/// nothing, and the step's buttons still work): another way to pay on the same message is
/// refused, nothing more is charged, and "From balance" pressed again says the purchase is done.
#[tokio::test]
async fn a_step_bought_from_the_balance_is_not_paid_again_another_way() {
    for other_way in [Msg::BtnPayCrypto, Msg::BtnPayStars { stars: 133 }] {
        let bot = BotHarness::new(&[ADMIN]).await;
        funded_at_payment_step(&bot).await;
        bot.press_and_die(USER, &Msg::BtnPayBalance { balance: money("500") }).await;
        assert_eq!(bot.balance(USER).await, 30_100, "the purchase landed");
        let before = atlas_tests::snapshot(&bot.db).await;
        let r = bot.press_msg(USER, &other_way).await;
        assert_eq!(texts(&r), bot.says(USER, &Msg::PurchasePaidAnotherWay), "{other_way:?}");
        assert_eq!(before, atlas_tests::snapshot(&bot.db).await, "{other_way:?} wrote something");
        assert!(bot.invoices(USER).is_empty(), "no Stars invoice");
        assert_eq!(count(&bot.db, "SELECT count(*) FROM pending_purchases WHERE method <> 'balance'").await, 0);
        let r = bot.press_msg(USER, &Msg::BtnPayBalance { balance: money("500") }).await;
        let sub = bot.db.store.subscription(uid(USER)).await.unwrap().expect("bought");
        let done = Msg::Purchased { until: sub.expires_at, amount: money("199"), balance: money("301") };
        assert_eq!(texts(&r), bot.says(USER, &done));
        assert_eq!(bot.balance(USER).await, 30_100, "charged once");
        assert_ledger_invariants(&bot.db).await.unwrap();
    }
}

/// The same through a promo code, whichever way the lost press paid: the code makes a new
/// payment step but not a new order, and a press there is refused (nothing charged, and no
/// invoice at a price the screen did not show), whichever way it pays.
#[tokio::test]
async fn a_promo_code_entered_after_a_lost_purchase_does_not_buy_again() {
    for (lost, balance_then) in [(Msg::BtnPayBalance { balance: money("500") }, "301"), (Msg::BtnPayCrypto, "500")] {
        let bot = BotHarness::new(&[ADMIN]).await;
        bot.send_text(USER, "/start").await;
        bot.fund(USER, "500").await;
        atlas_tests::create_promo(&bot.db, "TEN", 10, None, None).await;
        at_payment_step(&bot).await;
        bot.press_and_die(USER, &lost).await;
        bot.press_msg(USER, &Msg::BtnEnterPromo).await;
        bot.send_text(USER, "TEN").await;
        let before = atlas_tests::snapshot(&bot.db).await;
        for way in [Msg::BtnPayCrypto, Msg::BtnPayBalance { balance: money(balance_then) }] {
            let r = bot.press_msg(USER, &way).await;
            assert_eq!(texts(&r), bot.says(USER, &Msg::PurchasePaidAnotherWay), "{lost:?}, then {way:?}");
        }
        assert_eq!(before, atlas_tests::snapshot(&bot.db).await, "{lost:?}: a refusal wrote something");
        assert_eq!(count(&bot.db, "SELECT count(*) FROM pending_purchases").await, 1, "{lost:?}");
        assert!(bot.invoices(USER).is_empty(), "{lost:?}: no Stars invoice");
    }
}

/// A step both unconfirmed (a purchase from the balance failed with an unknown outcome) and
/// opened for crypto by a press whose answer was lost: the balance press is refused, and the
/// step is no longer held for the balance, so crypto, pressed again, shows its invoice.
#[tokio::test]
async fn an_unconfirmed_step_opened_for_crypto_is_finished_in_crypto() {
    let bot = BotHarness::new(&[ADMIN]).await;
    funded_at_payment_step(&bot).await;
    bot.press_and_die(USER, &Msg::BtnPayCrypto).await;
    let away = "ALTER FUNCTION atlas_purchase_from_balance RENAME TO atlas_purchase_from_balance_away";
    sqlx::query(away).execute(bot.db.pool()).await.unwrap();
    let r = bot.press_msg(USER, &Msg::BtnPayBalance { balance: money("500") }).await;
    assert_eq!(texts(&r), bot.says(USER, &Msg::PurchaseUnconfirmed));
    let back = "ALTER FUNCTION atlas_purchase_from_balance_away RENAME TO atlas_purchase_from_balance";
    sqlx::query(back).execute(bot.db.pool()).await.unwrap();
    let r = bot.press_msg(USER, &Msg::BtnPayBalance { balance: money("500") }).await;
    assert_eq!(texts(&r), bot.says(USER, &Msg::PurchasePaidAnotherWay));
    let r = bot.press_msg(USER, &Msg::BtnPayCrypto).await;
    assert!(texts(&r).contains("https://pay.example/inv-1"), "{}", texts(&r));
    assert_eq!(bot.balance(USER).await, 50_000, "nothing charged");
}

/// The other way round: "Pay with crypto" opened the order on an instance that died; "From
/// balance" on the same message charges nothing (the crypto invoice may be paid yet).
#[tokio::test]
async fn a_step_opened_for_crypto_is_not_paid_from_the_balance() {
    let bot = BotHarness::new(&[ADMIN]).await;
    funded_at_payment_step(&bot).await;
    bot.press_and_die(USER, &Msg::BtnPayCrypto).await;
    let before = atlas_tests::snapshot(&bot.db).await;
    let r = bot.press_msg(USER, &Msg::BtnPayBalance { balance: money("500") }).await;
    assert_eq!(texts(&r), bot.says(USER, &Msg::PurchasePaidAnotherWay));
    assert_eq!(before, atlas_tests::snapshot(&bot.db).await, "the refusal wrote something");
    assert_eq!(bot.balance(USER).await, 50_000, "nothing charged");
}

/// "Pay with crypto" pressed on an instance that died (the invoice made, never shown), then
/// "Pay with Stars" on the same message: the order is not opened a second way (both invoices
/// could be paid), and "Pay with crypto" pressed again shows the invoice the first press made.
/// A new order paid in Stars is counted once; payments that do not match are given back.
#[tokio::test]
async fn the_other_payment_method_of_the_same_step_is_refused() {
    let bot = BotHarness::new(&[ADMIN]).await;
    at_payment_step(&bot).await;
    bot.press_and_die(USER, &Msg::BtnPayCrypto).await;
    let r = bot.press_msg(USER, &Msg::BtnPayStars { stars: 133 }).await;
    assert_eq!(texts(&r), bot.says(USER, &Msg::PurchasePaidAnotherWay));
    assert!(bot.invoices(USER).is_empty(), "no Stars invoice");
    let r = bot.press_msg(USER, &Msg::BtnPayCrypto).await;
    assert!(texts(&r).contains("https://pay.example/inv-1"), "{}", texts(&r));
    let methods = || async {
        let m: Vec<String> = sqlx::query_scalar("SELECT method FROM pending_purchases ORDER BY id")
            .fetch_all(bot.db.pool())
            .await
            .unwrap();
        m
    };
    assert_eq!(methods().await, ["crypto"]);
    // A new order, paid in Stars.
    at_payment_step(&bot).await;
    bot.press_msg(USER, &Msg::BtnPayStars { stars: 133 }).await;
    assert_eq!(methods().await, ["crypto", "stars"]);
    let invoice = bot.invoices(USER).pop().unwrap();
    bot.deliver(USER, &bot.pre_checkout_json(bot.next_id(), USER, &invoice.payload, 133)).await;
    assert_eq!(bot.pre_checkout_answers().last().unwrap().1, None, "the Stars order may be paid");
    let r = bot.deliver(USER, &bot.payment_json(bot.next_id(), USER, &invoice.payload, 133, "charge-9")).await;
    let sub = bot.db.store.subscription(uid(USER)).await.unwrap().expect("paid");
    assert_eq!(texts(&r), bot.says(USER, &Msg::Paid { until: sub.expires_at }));
    // A second Stars payment of an order whose price it does not match: given back, not counted.
    let r = bot.deliver(USER, &bot.payment_json(bot.next_id(), USER, &invoice.payload, 7, "charge-10")).await;
    assert_eq!(texts(&r), bot.says(USER, &Msg::PaymentRefunded));
    let refunded = |charge: &str| {
        let sent = bot.messenger.sent.lock().unwrap();
        sent.iter()
            .filter(|s| matches!(s, atlas_tests::bot::Sent::Refund { charge_id, .. } if charge_id == charge))
            .count()
    };
    assert_eq!(refunded("charge-10"), 1);
    // A payment for a payload that is not ours: given back too.
    let r = bot.deliver(USER, &bot.payment_json(bot.next_id(), USER, "x:nothing", 133, "charge-11")).await;
    assert_eq!(texts(&r), bot.says(USER, &Msg::PaymentRefunded));
    assert_eq!(refunded("charge-11"), 1);
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments WHERE provider = 'stars'")
        .fetch_one(bot.db.pool())
        .await
        .unwrap();
    assert_eq!(payments, 1, "only the matching payment counted");
    // The crypto order's payload, paid in Stars, is refused before any money moves.
    let crypto = Payable::Purchase(PurchaseId::new(1).unwrap()).payload();
    bot.deliver(USER, &bot.pre_checkout_json(bot.next_id(), USER, &crypto, 133)).await;
    assert!(bot.pre_checkout_answers().last().unwrap().1.is_some(), "a crypto order is not paid in Stars");
}

/// Cancel while the provider cannot be asked: nothing is cancelled (the user may have paid),
/// the user is asked to try again, and the order waits; asked again, the payment is counted.
#[tokio::test]
async fn cancel_without_the_provider_cancels_nothing() {
    let bot = BotHarness::new(&[ADMIN]).await;
    at_payment_step(&bot).await;
    bot.press_msg(USER, &Msg::BtnPayCrypto).await;
    let (payable, _) = the_purchase(&bot).await;
    bot.crypto.pay(payable);
    bot.crypto.unreachable.store(true, std::sync::atomic::Ordering::Relaxed);
    let r = bot.press_msg(USER, &Msg::BtnCancel).await;
    assert_eq!(texts(&r), bot.says(USER, &Msg::TryLater));
    assert_eq!(the_purchase(&bot).await.1, "pending");
    bot.crypto.unreachable.store(false, std::sync::atomic::Ordering::Relaxed);
    let r = bot.send_text(USER, "/cancel").await;
    let sub = bot.db.store.subscription(uid(USER)).await.unwrap().expect("paid");
    assert!(texts(&r).starts_with(&bot.says(USER, &Msg::Paid { until: sub.expires_at })), "{}", texts(&r));
    assert_eq!(the_purchase(&bot).await.1, "paid");
}
