//! Every user conversation from start to finish, through the real intake function and router on
//! real PostgreSQL and Redis, in both languages, with what each left in the store.

use std::sync::atomic::Ordering;
use std::time::Duration;

use atlas::bot::text::{Msg, Word};
use atlas::coord::policy::LockVerdict;
use atlas::domain::{Language, Money, Payable, Percent, PurchaseId, TopUpId};
use atlas::ports::coordination::LockName;
use atlas::ports::store::{Accounts, Subscriptions};
use atlas::services::reissue::reissue_key;
use atlas_tests::bot::{BotHarness, texts};
use atlas_tests::{assert_ledger_invariants, create_promo, uid};

const ADMIN: i64 = 1;

fn money(text: &str) -> Money {
    Money::parse(text).unwrap()
}

/// WithdrawStates from start to finish: amount → confirm → requisites → final confirm; the
/// admin is told at once and approves; the user hears of it.
async fn withdraw_in(language: Language) {
    let bot = BotHarness::new(&[ADMIN]).await;
    let user = 100;
    bot.set_language(user, language);
    bot.send_text(ADMIN, "/start").await;
    bot.send_text(user, "/start").await;
    bot.fund(user, "1000").await;
    let r = bot.press_msg(user, &Msg::BtnWithdraw).await;
    assert_eq!(texts(&r), bot.says(user, &Msg::WithdrawAskAmount { balance: money("1000"), min: money("100") }));
    let r = bot.send_text(user, "250.50").await;
    assert_eq!(texts(&r), bot.says(user, &Msg::WithdrawConfirmAmount { amount: money("250.50") }));
    let r = bot.press_msg(user, &Msg::BtnConfirm).await;
    assert_eq!(texts(&r), bot.says(user, &Msg::WithdrawAskRequisites));
    let r = bot.send_text(user, "  4276 1234 5678 9012 ").await;
    let card = "4276 1234 5678 9012".to_owned();
    let confirm = Msg::WithdrawFinalConfirm { amount: money("250.50"), requisites: card.clone() };
    assert_eq!(texts(&r), bot.says(user, &confirm));
    let r = bot.press_msg(user, &Msg::BtnConfirm).await;
    assert!(texts(&r).contains("749.50"), "{}", texts(&r));
    assert_eq!(bot.balance(user).await, 74_950, "the amount is held at once");
    // The admin got the request with its buttons, and approves it.
    let note = bot.last(ADMIN).expect("the admin was told");
    assert!(note.text.contains(&card) && note.text.contains("250.50"), "{}", note.text);
    let r = bot.press_msg(ADMIN, &Msg::BtnApprove).await;
    assert!(!texts(&r).is_empty());
    let told = bot.last(user).unwrap().text;
    assert!(told.contains("250.50"), "{told}");
    assert_eq!(bot.balance(user).await, 74_950);
    let status: String =
        sqlx::query_scalar("SELECT status FROM withdrawal_requests").fetch_one(bot.db.pool()).await.unwrap();
    assert_eq!(status, "approved");
    assert_ledger_invariants(&bot.db).await.unwrap();
}

/// PromoCodeInput from the menu, then a purchase from the balance with the discount; the
/// referrer who invited the buyer earns their share.
async fn promo_purchase_in(language: Language) {
    let bot = BotHarness::new(&[ADMIN]).await;
    let (referrer, buyer) = (200, 201);
    bot.set_language(buyer, language);
    bot.send_text(referrer, "/start").await;
    bot.send_text(buyer, &format!("/start ref_{referrer}")).await;
    bot.fund(buyer, "500").await;
    create_promo(&bot.db, "SPRING20", 20, Some(5), None).await;
    bot.press_msg(buyer, &Msg::BtnPromo).await;
    let r = bot.send_text(buyer, " spring20 ").await;
    let applied = bot.says(buyer, &Msg::PromoApplied { code: "SPRING20".into(), percent: Percent::new(20).unwrap() });
    assert!(texts(&r).starts_with(&applied), "{}", texts(&r));
    bot.press(buyer, "Basic").await;
    let r = bot.press_msg(buyer, &Msg::BtnPeriod { days: 30, price: money("199") }).await;
    let method = Msg::ChooseMethodPromo {
        title: "Basic".into(),
        days: 30,
        price: money("159.20"),
        full: money("199"),
        code: "SPRING20".into(),
        percent: Percent::new(20).unwrap(),
    };
    assert_eq!(texts(&r), bot.says(buyer, &method));
    let r = bot.press_msg(buyer, &Msg::BtnPayBalance { balance: money("500") }).await;
    assert!(texts(&r).contains("159.20"), "{}", texts(&r));
    assert_eq!(bot.balance(buyer).await, 50_000 - 15_920);
    assert_eq!(bot.balance(referrer).await, 1_592, "10% of what the referred user paid");
    let sub = bot.db.store.subscription(uid(buyer)).await.unwrap().expect("a subscription");
    assert!(!sub.is_trial);
    // The code was used once by this buyer: a second use is refused with its reason.
    bot.press_msg(buyer, &Msg::BtnPromo).await;
    let r = bot.send_text(buyer, "SPRING20").await;
    assert!(texts(&r).starts_with(&bot.says(buyer, &Msg::PromoUsed)), "{}", texts(&r));
    let stats = bot.db.store.referral_stats(uid(referrer)).await.unwrap();
    assert_eq!((stats.invited, stats.earned), (1, money("15.92")));
    assert_ledger_invariants(&bot.db).await.unwrap();
}

/// A purchase paid in crypto: the invoice is recorded before the link is shown; "check" says
/// pending until the provider says paid; then the period is on and the conversation over.
async fn purchase_paid_in_crypto(language: Language) {
    let bot = BotHarness::new(&[ADMIN]).await;
    bot.everyone_speaks(language);
    let user = 300;
    bot.send_text(user, "/start").await;
    bot.press_msg(user, &Msg::BtnBuy).await;
    bot.press(user, "Family").await;
    bot.press_msg(user, &Msg::BtnPeriod { days: 90, price: money("1098") }).await;
    let r = bot.press_msg(user, &Msg::BtnPayCrypto).await;
    assert!(texts(&r).contains("https://pay.example/inv-1"), "{}", texts(&r));
    let purchase: i64 = sqlx::query_scalar("SELECT id FROM pending_purchases").fetch_one(bot.db.pool()).await.unwrap();
    let invoice: Option<String> =
        sqlx::query_scalar("SELECT invoice_id FROM pending_purchases").fetch_one(bot.db.pool()).await.unwrap();
    assert_eq!(invoice.as_deref(), Some("inv-1"), "recorded before it was shown");
    let r = bot.press_msg(user, &Msg::BtnCheckPayment).await;
    assert_eq!(texts(&r), bot.says(user, &Msg::PaymentPending));
    // The user leaves for the menu to look at their balance, pays, then checks from the
    // invoice's message: the check is bound to the purchase, not to the conversation.
    bot.send_text(user, "/menu").await;
    bot.press_msg(user, &Msg::BtnBalance).await;
    bot.crypto.pay(Payable::Purchase(PurchaseId::new(purchase).unwrap()));
    let r = bot.press_msg(user, &Msg::BtnCheckPayment).await;
    let sub = bot.db.store.subscription(uid(user)).await.unwrap().expect("a subscription");
    assert_eq!(texts(&r), bot.says(user, &Msg::Paid { until: sub.expires_at }));
    // Checking again counts nothing more.
    let again = bot.press_msg(user, &Msg::BtnCheckPayment).await;
    assert_eq!(texts(&again), bot.says(user, &Msg::Paid { until: sub.expires_at }));
    assert_eq!(bot.db.store.subscription(uid(user)).await.unwrap().unwrap().expires_at, sub.expires_at);
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments").fetch_one(bot.db.pool()).await.unwrap();
    assert_eq!(payments, 1);
    assert_ledger_invariants(&bot.db).await.unwrap();
}

/// A purchase paid in Telegram Stars: the invoice in Stars, the pre-checkout answered (yes while
/// payable), the payment counted once by its charge id even when Telegram delivers it twice.
async fn purchase_paid_in_stars_counts_each_charge_once(language: Language) {
    let bot = BotHarness::new(&[ADMIN]).await;
    bot.everyone_speaks(language);
    let user = 310;
    bot.send_text(user, "/start").await;
    bot.press_msg(user, &Msg::BtnBuy).await;
    bot.press(user, "Basic").await;
    bot.press_msg(user, &Msg::BtnPeriod { days: 30, price: money("199") }).await;
    let r = bot.press_msg(user, &Msg::BtnPayStars { stars: 133 }).await;
    assert_eq!(texts(&r), bot.says(user, &Msg::InvoiceStars { stars: 133 }));
    let invoice = bot.invoices(user).pop().expect("a Stars invoice");
    assert_eq!(invoice.stars, 133);
    let json = bot.pre_checkout_json(bot.next_id(), user, &invoice.payload, 133);
    bot.deliver(user, &json).await;
    assert_eq!(bot.pre_checkout_answers().last().unwrap().1, None, "a payable invoice is allowed");
    // Someone else's pre-checkout of this invoice, and a wrong price, are refused.
    let json = bot.pre_checkout_json(bot.next_id(), 999, &invoice.payload, 133);
    bot.deliver(999, &json).await;
    assert!(bot.pre_checkout_answers().last().unwrap().1.is_some());
    let json = bot.pre_checkout_json(bot.next_id(), user, &invoice.payload, 1);
    bot.deliver(user, &json).await;
    assert!(bot.pre_checkout_answers().last().unwrap().1.is_some());
    let paid = bot.payment_json(bot.next_id(), user, &invoice.payload, 133, "charge-1");
    let r = bot.deliver(user, &paid).await;
    let sub = bot.db.store.subscription(uid(user)).await.unwrap().expect("a subscription");
    assert_eq!(texts(&r), bot.says(user, &Msg::Paid { until: sub.expires_at }));
    // The same payment delivered again (a new update id, the same charge): counted once.
    let again = bot.payment_json(bot.next_id(), user, &invoice.payload, 133, "charge-1");
    bot.deliver(user, &again).await;
    let after = bot.db.store.subscription(uid(user)).await.unwrap().unwrap();
    assert_eq!(after.expires_at, sub.expires_at, "the period was extended once");
    // A second, different payment of the same invoice is money received: it goes to the balance.
    let second = bot.payment_json(bot.next_id(), user, &invoice.payload, 133, "charge-2");
    let r = bot.deliver(user, &second).await;
    assert_eq!(texts(&r), bot.says(user, &Msg::PaidToBalance { amount: money("199") }));
    assert_eq!(bot.balance(user).await, 19_900);
    assert_ledger_invariants(&bot.db).await.unwrap();
}

/// Top-up of the balance: by crypto (checked) and by Stars (paid in the chat).
async fn top_up_by_crypto_and_by_stars(language: Language) {
    let bot = BotHarness::new(&[ADMIN]).await;
    bot.everyone_speaks(language);
    let user = 320;
    bot.send_text(user, "/start").await;
    bot.press_msg(user, &Msg::BtnTopUp).await;
    let r = bot.send_text(user, "5").await;
    assert!(texts(&r).starts_with(&bot.says(user, &Msg::TopUpTooSmall { min: money("10") })));
    bot.send_text(user, "300").await;
    bot.press_msg(user, &Msg::BtnPayCrypto).await;
    let topup: i64 = sqlx::query_scalar("SELECT id FROM topups").fetch_one(bot.db.pool()).await.unwrap();
    bot.crypto.pay(Payable::TopUp(TopUpId::new(topup).unwrap()));
    let r = bot.press_msg(user, &Msg::BtnCheckPayment).await;
    assert_eq!(texts(&r), bot.says(user, &Msg::TopUpCredited { amount: money("300"), balance: money("300") }));
    bot.press_msg(user, &Msg::BtnTopUp).await;
    bot.send_text(user, "15").await;
    bot.press_msg(user, &Msg::BtnPayStars { stars: 10 }).await;
    let invoice = bot.invoices(user).pop().unwrap();
    let paid = bot.payment_json(bot.next_id(), user, &invoice.payload, 10, "stars-topup-1");
    let r = bot.deliver(user, &paid).await;
    assert_eq!(texts(&r), bot.says(user, &Msg::TopUpCredited { amount: money("15"), balance: money("315") }));
    assert_eq!(bot.balance(user).await, 31_500);
    assert_ledger_invariants(&bot.db).await.unwrap();
}

/// A user's "new key" press whose replies were lost (its instance cut off before it could reply
/// or release the reissue lock) is answered, when Telegram delivers the press again, with the key
/// it made: no second key, and the cooldown does not count the press twice.
#[tokio::test]
async fn a_new_key_press_delivered_again_gets_the_key_it_made() {
    let bot = BotHarness::new(&[ADMIN]).await;
    let user = 331;
    bot.send_text(user, "/start").await;
    bot.press_msg(user, &Msg::BtnTrial).await;
    let sub = bot.db.store.subscription(uid(user)).await.unwrap().expect("a trial");
    let (coordination, clock) = (&bot.app.coordination, bot.app.clock.as_ref());
    let ttl = Duration::from_secs(30);
    reissue_key(coordination, &bot.app.store, &bot.app.vpn, clock, uid(user), ttl, None).await.unwrap();
    let first = bot.db.store.current_key(sub.id).await.unwrap();
    let json = bot.callback_json(bot.next_id(), user, "rk");
    bot.messenger.unreachable.store(true, Ordering::Relaxed);
    let (handled, replies) = bot.deliver_to(&bot.app, user, &json).await;
    bot.messenger.unreachable.store(false, Ordering::Relaxed);
    assert!(replies.is_empty() && handled.wants_redelivery(), "{handled:?}");
    let made = bot.db.store.current_key(sub.id).await.unwrap().expect("the first try made a key");
    assert_ne!(Some(made.clone()), first);
    let held = coordination.acquire_lock(LockName::KeyReissue(uid(user)), ttl).await;
    assert!(matches!(held, LockVerdict::Held(_)), "the first try's lock, never released");
    let r = bot.deliver(user, &json).await;
    assert_eq!(texts(&r), bot.says(user, &Msg::Reissued { uri: made.access_uri.clone() }));
    assert_eq!(bot.db.store.current_key(sub.id).await.unwrap(), Some(made), "no second key");
}

/// The one trial, the subscription screen, a new key on request with its cooldown, auto-renewal.
async fn trial_subscription_key_and_auto_renewal(language: Language) {
    let bot = BotHarness::new(&[ADMIN]).await;
    bot.everyone_speaks(language);
    let user = 330;
    bot.send_text(user, "/start").await;
    let r = bot.press_msg(user, &Msg::BtnSubscription).await;
    assert_eq!(texts(&r), bot.says(user, &Msg::NoSubscription));
    let r = bot.press_msg(user, &Msg::BtnTrial).await;
    let sub = bot.db.store.subscription(uid(user)).await.unwrap().expect("a trial");
    assert!(sub.is_trial);
    assert_eq!(texts(&r), bot.says(user, &Msg::TrialActivated { days: 3, until: sub.expires_at }));
    let r = bot.press_msg(user, &Msg::BtnTrial).await;
    assert_eq!(texts(&r), bot.says(user, &Msg::TrialUsed));
    let r = bot.press_msg(user, &Msg::BtnSubscription).await;
    assert!(texts(&r).contains(&bot.says(user, &Msg::KeyPending)), "{}", texts(&r));
    // The key is made (here by a reissue; the activation worker does it for new subscriptions).
    atlas::services::reissue::reissue_key(
        &bot.app.coordination,
        &bot.app.store,
        &bot.app.vpn,
        bot.app.clock.as_ref(),
        uid(user),
        std::time::Duration::from_secs(30),
        None,
    )
    .await
    .unwrap();
    let r = bot.press_msg(user, &Msg::BtnSubscription).await;
    let key = bot.db.store.current_key(sub.id).await.unwrap().unwrap();
    assert!(texts(&r).contains(&format!("<code>{}</code>", key.access_uri)), "{}", texts(&r));
    let r = bot.press_msg(user, &Msg::BtnReissue).await;
    let fresh = bot.db.store.current_key(sub.id).await.unwrap().unwrap();
    assert_ne!(fresh, key);
    assert_eq!(texts(&r), bot.says(user, &Msg::Reissued { uri: fresh.access_uri.clone() }));
    assert!(!bot.panel.alive().contains(&key.panel_key_id), "the old key is revoked at the panel");
    // A second new key within the cooldown is refused with when to try again.
    let r = bot.press_data(user, "rk").await;
    assert_eq!(texts(&r), bot.says(user, &Msg::RateLimited { minutes: 10 }));
    let r = bot.press_msg(user, &Msg::BtnAutoRenew { state: Word("on") }).await;
    assert_eq!(texts(&r), bot.says(user, &Msg::AutoRenewSet { state: Word("on") }));
    assert!(bot.db.store.subscription(uid(user)).await.unwrap().unwrap().auto_renew);
}

/// Referral program, support, language switch.
#[tokio::test]
async fn referral_support_and_language() {
    let bot = BotHarness::new(&[ADMIN]).await;
    let user = 340;
    bot.send_text(user, "/start").await;
    bot.send_text(341, &format!("/start ref_{user}")).await;
    // Self-referral and re-referral are refused by the store: neither counts.
    bot.send_text(user, &format!("/start ref_{user}")).await;
    bot.send_text(341, "/start ref_1").await;
    let r = bot.press_msg(user, &Msg::BtnReferral).await;
    let link = format!("https://t.me/atlas_test_bot?start=ref_{user}");
    let expected = Msg::Referral { link, invited: 1, earned: Money::ZERO, percent: Percent::new(10).unwrap() };
    assert_eq!(texts(&r), bot.says(user, &expected));
    let r = bot.press_msg(user, &Msg::BtnSupport).await;
    assert!(texts(&r).contains("@atlas_support"));
    bot.press_msg(user, &Msg::BtnLanguage).await;
    let r = bot.press(user, "Русский").await;
    assert!(texts(&r).contains("Язык: русский"), "{}", texts(&r));
    assert_eq!(bot.db.store.user(uid(user)).await.unwrap().unwrap().language, Language::Ru);
    let r = bot.send_text(user, "/menu").await;
    assert!(texts(&r).contains("Главное меню"), "{}", texts(&r));
}

atlas_tests::in_both_languages! {
    withdraw_in => withdrawal_from_start_to_finish_in_english, withdrawal_from_start_to_finish_in_russian;
    promo_purchase_in => promo_code_then_purchase_from_balance_in_english, promo_code_then_purchase_from_balance_in_russian;
    purchase_paid_in_crypto => purchase_paid_in_crypto_in_english, purchase_paid_in_crypto_in_russian;
    purchase_paid_in_stars_counts_each_charge_once => purchase_paid_in_stars_in_english, purchase_paid_in_stars_in_russian;
    top_up_by_crypto_and_by_stars => top_up_in_english, top_up_in_russian;
    trial_subscription_key_and_auto_renewal => trial_subscription_and_key_in_english, trial_subscription_and_key_in_russian;
}
