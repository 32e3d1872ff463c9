//! The admin tools through the router: every admin conversation, the audit log, and the server's
//! check of the admin list on every step (a non-admin's forged buttons are refused and write
//! nothing).

use std::time::Duration;

use atlas::bot::text::{Msg, Word};
use atlas::coord::policy::LockVerdict;
use atlas::domain::{Language, Money, Percent};
use atlas::ports::coordination::LockName;
use atlas::ports::store::Subscriptions;
use atlas_tests::bot::{BotHarness, texts};
use atlas_tests::{assert_ledger_invariants, count, snapshot, uid};

const ADMIN: i64 = 1;
const ADMIN2: i64 = 2;
const USER: i64 = 500;

fn money(text: &str) -> Money {
    Money::parse(text).unwrap()
}

async fn audit_actions(bot: &BotHarness) -> Vec<(String, Option<i64>, Option<String>)> {
    sqlx::query_as("SELECT action, target_user_id, correlation_id FROM admin_audit_log ORDER BY id")
        .fetch_all(bot.db.pool())
        .await
        .unwrap()
}

/// AdminCreatePromocode, step by step, with a wrong answer at each typed step; then the code
/// works for a user; then it is disabled.
async fn an_admin_creates_and_disables_a_promo_code(language: Language) {
    let bot = BotHarness::new(&[ADMIN]).await;
    bot.everyone_speaks(language);
    bot.send_text(ADMIN, "/start").await;
    let r = bot.send_text(ADMIN, "/admin").await;
    assert_eq!(texts(&r), bot.says(ADMIN, &Msg::AdminMenu));
    bot.press_msg(ADMIN, &Msg::BtnAdminNewPromo).await;
    let r = bot.send_text(ADMIN, "no spaces allowed").await;
    assert!(texts(&r).starts_with(&bot.says(ADMIN, &Msg::AdminPromoCodeInvalid)));
    bot.send_text(ADMIN, "summer-24").await;
    bot.press_msg(ADMIN, &Msg::BtnUnit { unit: Word("days") }).await;
    let r = bot.send_text(ADMIN, "0").await;
    assert!(texts(&r).starts_with(&bot.says(ADMIN, &Msg::AdminPromoValueInvalid)));
    bot.send_text(ADMIN, "7").await;
    let r = bot.send_text(ADMIN, "many").await;
    assert!(texts(&r).starts_with(&bot.says(ADMIN, &Msg::AdminPromoMaxUsesInvalid)));
    bot.send_text(ADMIN, "2").await;
    let r = bot.send_text(ADMIN, "101").await;
    assert!(texts(&r).starts_with(&bot.says(ADMIN, &Msg::AdminPromoPercentInvalid)));
    let r = bot.send_text(ADMIN, "15%").await;
    assert!(texts(&r).contains("SUMMER-24") && texts(&r).contains("15"), "{}", texts(&r));
    let r = bot.press_msg(ADMIN, &Msg::BtnConfirm).await;
    assert!(texts(&r).starts_with(&bot.says(ADMIN, &Msg::AdminPromoCreated { code: "SUMMER-24".into() })));
    let (percent, max, expires): (i32, Option<i32>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT discount_percent, max_uses, expires_at FROM promo_codes WHERE code = 'SUMMER-24'")
            .fetch_one(bot.db.pool())
            .await
            .unwrap();
    assert_eq!((percent, max), (15, Some(2)));
    let days = (expires.unwrap() - bot.app.clock.now()).num_hours();
    assert!((167..=168).contains(&days), "valid for 7 days: {days} hours");
    // A user can use it.
    bot.send_text(USER, "/start").await;
    bot.press_msg(USER, &Msg::BtnPromo).await;
    let r = bot.send_text(USER, "summer-24").await;
    let applied = bot.says(USER, &Msg::PromoApplied { code: "SUMMER-24".into(), percent: Percent::new(15).unwrap() });
    assert!(texts(&r).starts_with(&applied));
    // Creating it again is refused; disabling it works once.
    bot.press_msg(ADMIN, &Msg::BtnAdmin).await;
    bot.press_msg(ADMIN, &Msg::BtnAdminNewPromo).await;
    bot.send_text(ADMIN, "SUMMER-24").await;
    bot.press_msg(ADMIN, &Msg::BtnUnit { unit: Word("never") }).await;
    bot.press_msg(ADMIN, &Msg::BtnUnlimited).await;
    bot.send_text(ADMIN, "5").await;
    let r = bot.press_msg(ADMIN, &Msg::BtnConfirm).await;
    assert!(texts(&r).starts_with(&bot.says(ADMIN, &Msg::AdminPromoExists { code: "SUMMER-24".into() })));
    bot.press_msg(ADMIN, &Msg::BtnAdmin).await;
    bot.press_msg(ADMIN, &Msg::BtnAdminDisablePromo).await;
    let r = bot.send_text(ADMIN, "summer-24").await;
    assert!(texts(&r).starts_with(&bot.says(ADMIN, &Msg::AdminPromoDisabled { code: "SUMMER-24".into() })));
    bot.press_msg(USER, &Msg::BtnPromo).await;
    let r = bot.send_text(USER, "SUMMER-24").await;
    assert!(texts(&r).starts_with(&bot.says(USER, &Msg::PromoDisabled)));
    let actions: Vec<String> = audit_actions(&bot).await.into_iter().map(|a| a.0).collect();
    assert!(actions.contains(&"promo_create".to_owned()) && actions.contains(&"promo_disable".to_owned()));
    assert!(audit_actions(&bot).await.iter().all(|a| a.2.as_deref().is_some_and(|c| c.starts_with("upd:"))));
}

/// Find a user by @username, credit them, debit them (AdminDebitBalance: amount → confirmation),
/// a debit above the balance refused; reissue their key; every action in the audit log.
async fn an_admin_finds_a_user_adjusts_the_balance_and_reissues_the_key(language: Language) {
    let bot = BotHarness::new(&[ADMIN]).await;
    bot.everyone_speaks(language);
    bot.send_text(ADMIN, "/start").await;
    bot.send_text(USER, "/start").await;
    bot.send_text(ADMIN, "/admin").await;
    bot.press_msg(ADMIN, &Msg::BtnAdminFind).await;
    let r = bot.send_text(ADMIN, "@nobody_here").await;
    assert!(texts(&r).starts_with(&bot.says(ADMIN, &Msg::AdminUserNotFound)));
    let r = bot.send_text(ADMIN, &format!("@USER{USER}")).await;
    assert!(texts(&r).contains(&format!("<code>{USER}</code> @user{USER}")), "{}", texts(&r));
    bot.press_msg(ADMIN, &Msg::BtnCredit).await;
    let r = bot.send_text(ADMIN, "-5").await;
    assert!(texts(&r).starts_with(&bot.says(ADMIN, &Msg::AmountNegative)));
    let r = bot.send_text(ADMIN, "300").await;
    let confirm = Msg::AdminConfirmAdjust { direction: Word("credit"), amount: money("300"), user: USER };
    assert_eq!(texts(&r), bot.says(ADMIN, &confirm));
    bot.press_msg(ADMIN, &Msg::BtnConfirm).await;
    assert_eq!(bot.balance(USER).await, 30_000);
    // AdminDebitBalance from the menu: the user, the amount, the confirmation.
    bot.press_msg(ADMIN, &Msg::BtnAdmin).await;
    bot.press_msg(ADMIN, &Msg::BtnAdminDebit).await;
    bot.send_text(ADMIN, &USER.to_string()).await;
    bot.send_text(ADMIN, "400").await;
    let before = snapshot(&bot.db).await;
    let r = bot.press_msg(ADMIN, &Msg::BtnConfirm).await;
    assert!(texts(&r).starts_with(&bot.says(ADMIN, &Msg::AdminAdjustInsufficient { balance: money("300") })));
    assert_eq!(before, snapshot(&bot.db).await, "a refused debit wrote something");
    bot.press_msg(ADMIN, &Msg::BtnAdminDebit).await;
    bot.send_text(ADMIN, &USER.to_string()).await;
    bot.send_text(ADMIN, "100").await;
    let r = bot.press_msg(ADMIN, &Msg::BtnConfirm).await;
    let done = Msg::AdminAdjusted { direction: Word("debit"), amount: money("100"), user: USER, balance: money("200") };
    assert!(texts(&r).starts_with(&bot.says(ADMIN, &done)));
    // The user buys a period, then the admin reissues their key.
    bot.press_msg(USER, &Msg::BtnBuy).await;
    bot.press(USER, "Basic").await;
    bot.press_msg(USER, &Msg::BtnPeriod { days: 30, price: money("199") }).await;
    bot.press_msg(USER, &Msg::BtnPayBalance { balance: money("200") }).await;
    bot.press_msg(ADMIN, &Msg::BtnAdmin).await;
    bot.press_msg(ADMIN, &Msg::BtnAdminReissue).await;
    let r = bot.send_text(ADMIN, &USER.to_string()).await;
    assert!(texts(&r).starts_with(&bot.says(ADMIN, &Msg::AdminReissued { user: USER })));
    let sub = bot.db.store.subscription(uid(USER)).await.unwrap().unwrap();
    let key = bot.db.store.current_key(sub.id).await.unwrap().expect("a key installed");
    // The user's old key stopped working: they are sent the new one.
    let told = bot.last(USER).expect("the user was told").text;
    assert_eq!(told, bot.says(USER, &Msg::ReissuedBySupport { uri: key.access_uri }));
    let actions: Vec<(String, Option<i64>)> = audit_actions(&bot).await.into_iter().map(|a| (a.0, a.1)).collect();
    for expected in [
        ("find_user", Some(USER)),
        ("admin_credit", Some(USER)),
        ("admin_debit", Some(USER)),
        ("reissue_key", Some(USER)),
    ] {
        assert!(actions.contains(&(expected.0.to_owned(), expected.1)), "{expected:?} missing from {actions:?}");
    }
    assert_ledger_invariants(&bot.db).await.unwrap();
}

/// A broadcast is composed, previewed and queued as a job once; statistics show the shop.
async fn an_admin_queues_a_broadcast_and_reads_the_statistics(language: Language) {
    let bot = BotHarness::new(&[ADMIN]).await;
    bot.everyone_speaks(language);
    bot.send_text(ADMIN, "/start").await;
    bot.send_text(USER, "/start").await;
    bot.send_text(ADMIN, "/admin").await;
    bot.press_msg(ADMIN, &Msg::BtnAdminBroadcast).await;
    let r = bot.send_text(ADMIN, "   ").await;
    assert!(texts(&r).starts_with(&bot.says(ADMIN, &Msg::AdminBroadcastEmpty)), "{}", texts(&r));
    let r = bot.send_text(ADMIN, &"ж".repeat(3_501)).await;
    assert!(texts(&r).starts_with(&bot.says(ADMIN, &Msg::AdminBroadcastTooLong { length: 3_501, max: 3_500 })));
    // The longest broadcast, in a script of two bytes a character, is kept as a draft.
    let r = bot.send_text(ADMIN, &"ж".repeat(3_500)).await;
    let confirm = bot.says(ADMIN, &Msg::BtnConfirm);
    assert!(r[0].keyboard.iter().flatten().any(|b| b.label == confirm), "the preview asks to confirm");
    bot.press_msg(ADMIN, &Msg::BtnCancel).await;
    // A draft that would not fit the conversation state is not shown with buttons that would
    // have nothing behind them; the step goes on.
    bot.press_msg(ADMIN, &Msg::BtnAdmin).await;
    bot.press_msg(ADMIN, &Msg::BtnAdminBroadcast).await;
    let r = bot.send_text(ADMIN, &"\u{1}".repeat(3_000)).await;
    assert_eq!(texts(&r), bot.says(ADMIN, &Msg::TooLongToKeep));
    assert_eq!(count(&bot.db, "SELECT count(*) FROM broadcasts").await, 0);
    let r = bot.send_text(ADMIN, "New servers in <Frankfurt> & Tokyo!").await;
    assert!(texts(&r).contains("&lt;Frankfurt&gt; &amp; Tokyo"), "the preview is escaped: {}", texts(&r));
    let r = bot.press_msg(ADMIN, &Msg::BtnConfirm).await;
    let (id, stored): (i64, String) =
        sqlx::query_as("SELECT id, text FROM broadcasts").fetch_one(bot.db.pool()).await.unwrap();
    assert!(texts(&r).starts_with(&bot.says(ADMIN, &Msg::AdminBroadcastQueued { id })), "{}", texts(&r));
    assert_eq!(stored, "New servers in <Frankfurt> & Tokyo!");
    let r = bot.press_msg(ADMIN, &Msg::BtnAdminStats).await;
    let stats = Msg::AdminStats { users: 2, active: 0, trials: 0, pending: 0, purchases: 0, revenue: Money::ZERO };
    assert_eq!(texts(&r), bot.says(ADMIN, &stats));
}

/// Two admins decide one withdrawal at the same moment, on two instances: one decision wins,
/// the other admin is told it was already decided; the money moves once.
async fn two_admins_deciding_one_withdrawal_one_wins(language: Language) {
    let bot = BotHarness::new(&[ADMIN, ADMIN2]).await;
    bot.everyone_speaks(language);
    for admin in [ADMIN, ADMIN2] {
        bot.send_text(admin, "/start").await;
    }
    bot.send_text(USER, "/start").await;
    bot.fund(USER, "500").await;
    bot.press_msg(USER, &Msg::BtnWithdraw).await;
    bot.send_text(USER, "200").await;
    bot.press_msg(USER, &Msg::BtnConfirm).await;
    bot.send_text(USER, "4276 0000 1111 2222").await;
    bot.press_msg(USER, &Msg::BtnConfirm).await;
    let approve = bot.button(ADMIN, &bot.says(ADMIN, &Msg::BtnApprove)).unwrap();
    let reject = bot.button(ADMIN2, &bot.says(ADMIN2, &Msg::BtnReject)).unwrap();
    let other = bot.second_instance();
    let (a, b) = (bot.callback_json(bot.next_id(), ADMIN, &approve), bot.callback_json(bot.next_id(), ADMIN2, &reject));
    let ((_, ra), (_, rb)) = tokio::join!(bot.deliver_to(&bot.app, ADMIN, &a), bot.deliver_to(&other, ADMIN2, &b));
    let status: String =
        sqlx::query_scalar("SELECT status FROM withdrawal_requests").fetch_one(bot.db.pool()).await.unwrap();
    let (winner, loser) = if status == "approved" { (ra, rb) } else { (rb, ra) };
    let verdict = Word(if status == "approved" { "approved" } else { "rejected" });
    assert!(texts(&winner).starts_with(&bot.says(ADMIN, &Msg::AdminDecided { id: 1, verdict })), "{}", texts(&winner));
    assert!(
        texts(&loser).starts_with(&bot.says(ADMIN, &Msg::AdminAlreadyDecided { id: 1, verdict })),
        "{}",
        texts(&loser)
    );
    let expected = if status == "approved" { 30_000 } else { 50_000 };
    assert_eq!(bot.balance(USER).await, expected);
    assert_eq!(count(&bot.db, "SELECT count(*) FROM admin_audit_log WHERE action LIKE 'withdrawal_%'").await, 1);
    assert_ledger_invariants(&bot.db).await.unwrap();
}

/// An admin, and a user with a subscription (and its key) bought from their balance.
async fn admin_and_subscriber() -> BotHarness {
    let bot = BotHarness::new(&[ADMIN]).await;
    bot.send_text(ADMIN, "/start").await;
    bot.send_text(USER, "/start").await;
    bot.fund(USER, "300").await;
    bot.buy(USER).await;
    bot
}

/// An admin's reissue installs the new key, then its instance is cut off before it can say so or
/// release the reissue lock: the update is handed back. Delivered again, the request reports the
/// reissue it made (the first try's lock still held), makes no second key, and the admin is told.
/// (Found by `atlas-sim fuzz --seed 5`, kept as `scenarios/found/admin_reissue_reply_lost.toml`.)
#[tokio::test]
async fn a_reissue_request_delivered_again_reports_the_key_it_made() {
    let bot = admin_and_subscriber().await;
    bot.send_text(ADMIN, "/admin").await;
    bot.press_msg(ADMIN, &Msg::BtnAdminReissue).await;
    let sub = bot.db.store.subscription(uid(USER)).await.unwrap().unwrap();
    let before = bot.db.store.current_key(sub.id).await.unwrap();
    let json = bot.text_json(bot.next_id(), ADMIN, &USER.to_string());
    bot.messenger.unreachable.store(true, std::sync::atomic::Ordering::Relaxed);
    let (handled, replies) = bot.deliver_to(&bot.app, ADMIN, &json).await;
    bot.messenger.unreachable.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(replies.is_empty() && handled.wants_redelivery(), "{handled:?}");
    let made = bot.db.store.current_key(sub.id).await.unwrap();
    assert!(made.is_some() && made != before, "the first try installed a new key");
    // Its release never reached Redis: the lock is still held when the request comes again.
    let held = bot.app.coordination.acquire_lock(LockName::KeyReissue(uid(USER)), Duration::from_secs(30)).await;
    assert!(matches!(held, LockVerdict::Held(_)));
    let r = bot.deliver(ADMIN, &json).await;
    assert!(texts(&r).starts_with(&bot.says(ADMIN, &Msg::AdminReissued { user: USER })), "{}", texts(&r));
    assert_eq!(bot.db.store.current_key(sub.id).await.unwrap(), made, "no second key");
    assert_eq!(bot.panel.alive().len(), 1, "one key alive at the panel: {:?}", bot.panel.alive());
    // The first try's words to the user were lost with the rest: the user hears of the key now.
    let uri = made.expect("checked").access_uri;
    assert_eq!(bot.last(USER).expect("the user was told").text, bot.says(USER, &Msg::ReissuedBySupport { uri }));
}

/// A reissue that finds another one running tells the admin so, and the user nothing: no key
/// changed.
#[tokio::test]
async fn a_reissue_that_finds_another_running_tells_the_user_nothing() {
    let bot = admin_and_subscriber().await;
    let told_before = bot.messages(USER).len();
    let held = bot.app.coordination.acquire_lock(LockName::KeyReissue(uid(USER)), Duration::from_secs(30)).await;
    assert!(matches!(held, LockVerdict::Held(_)));
    bot.send_text(ADMIN, "/admin").await;
    bot.press_msg(ADMIN, &Msg::BtnAdminReissue).await;
    let r = bot.send_text(ADMIN, &USER.to_string()).await;
    assert!(texts(&r).starts_with(&bot.says(ADMIN, &Msg::ReissueBusy)), "{}", texts(&r));
    assert_eq!(bot.messages(USER).len(), told_before, "the user was told of a key that was not made");
}

/// A non-admin's forged admin buttons and commands: refused with a clear reply, nothing
/// written (callback data is never trusted, whatever ids it carries).
#[tokio::test]
async fn forged_admin_actions_are_refused_and_write_nothing() {
    let bot = BotHarness::new(&[ADMIN]).await;
    bot.send_text(USER, "/start").await;
    bot.send_text(501, "/start").await;
    bot.fund(501, "100").await;
    // A real withdrawal to aim at.
    bot.fund(USER, "300").await;
    bot.press_msg(USER, &Msg::BtnWithdraw).await;
    bot.send_text(USER, "150").await;
    bot.press_msg(USER, &Msg::BtnConfirm).await;
    bot.send_text(USER, "4276 0000 1111 2222").await;
    bot.press_msg(USER, &Msg::BtnConfirm).await;
    let before = snapshot(&bot.db).await;
    let only = bot.says(USER, &Msg::AdminOnly);
    let r = bot.send_text(USER, "/admin").await;
    assert!(texts(&r).starts_with(&only));
    for data in ["a", "a:st", "a:wd", "a:cr", "a:dec:1:y", "a:dec:1:n", "a:u:cr:501", "a:u:db:501", "a:u:rk:501"] {
        let r = bot.press_data(USER, data).await;
        assert!(texts(&r).starts_with(&only), "{data}: {}", texts(&r));
    }
    assert_eq!(before, snapshot(&bot.db).await, "a forged admin action wrote something");
    let status: String =
        sqlx::query_scalar("SELECT status FROM withdrawal_requests").fetch_one(bot.db.pool()).await.unwrap();
    assert_eq!(status, "pending");
    // The admin list is checked on the typed steps too: a non-admin cannot reach them at all.
    let r = bot.send_text(USER, "501").await;
    assert!(texts(&r).starts_with(&bot.says(USER, &Msg::NotUnderstood)));
}

atlas_tests::in_both_languages! {
    an_admin_creates_and_disables_a_promo_code => promo_codes_in_english, promo_codes_in_russian;
    an_admin_finds_a_user_adjusts_the_balance_and_reissues_the_key => users_and_balances_in_english, users_and_balances_in_russian;
    an_admin_queues_a_broadcast_and_reads_the_statistics => broadcast_and_statistics_in_english, broadcast_and_statistics_in_russian;
    two_admins_deciding_one_withdrawal_one_wins => two_admins_on_one_withdrawal_in_english, two_admins_on_one_withdrawal_in_russian;
}
