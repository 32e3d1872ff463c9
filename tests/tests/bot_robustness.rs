//! Bad input at every step, and the bot under the coordination's hard cases: an update
//! delivered twice, an update redelivered after its money committed but before its state did, a
//! conversation continued by another instance, Redis unreachable, rate limits, a state that no
//! longer decodes. Each refusal gets a clear reply and writes nothing.

use atlas::bot::text::Msg;
use atlas::domain::{Language, Money};
use atlas::ports::store::Accounts as _;
use atlas::ports::store::Subscriptions as _;
use atlas::runtime::intake::Handled;
use atlas_tests::bot::{BotHarness, texts};
use atlas_tests::redis_support::raw;
use atlas_tests::{assert_ledger_invariants, count, snapshot, uid};
use redis::AsyncCommands as _;

const ADMIN: i64 = 1;
const USER: i64 = 700;

fn money(text: &str) -> Money {
    Money::parse(text).unwrap()
}

/// Brings a funded user to the amount step of a withdrawal.
async fn at_withdraw_amount(bot: &BotHarness, user: i64) {
    bot.send_text(user, "/start").await;
    bot.fund(user, "1000").await;
    bot.press_msg(user, &Msg::BtnWithdraw).await;
}

/// Every kind of bad amount, at each step that asks for one: a clear reason, and nothing written.
#[tokio::test]
async fn bad_amounts_get_a_reason_and_write_nothing() {
    let bot = BotHarness::new(&[ADMIN]).await;
    at_withdraw_amount(&bot, USER).await;
    let cases: Vec<(String, Msg)> = vec![
        ("abc".into(), Msg::AmountNotNumber),
        ("-5".into(), Msg::AmountNegative),
        ("0".into(), Msg::AmountZero),
        ("0.00".into(), Msg::AmountZero),
        ("99999999999".into(), Msg::AmountTooLarge { max: money("1000000") }),
        ("1.001".into(), Msg::AmountTooPrecise),
        ("1e3".into(), Msg::AmountNotNumber),
        ("١٢٣".into(), Msg::AmountNotNumber),
        ("\u{200F}150".into(), Msg::AmountNotNumber),
        ("   ".into(), Msg::AmountEmpty),
        ("7".repeat(4096), Msg::AmountTooLarge { max: money("1000000") }),
        ("50".into(), Msg::WithdrawBelowMin { min: money("100") }),
        ("1000.01".into(), Msg::WithdrawAboveBalance { balance: money("1000") }),
    ];
    for (text, reason) in cases {
        let before = snapshot(&bot.db).await;
        let r = bot.send_text(USER, &text).await;
        assert!(texts(&r).starts_with(&bot.says(USER, &reason)), "{text:?}: {}", texts(&r));
        assert_eq!(before, snapshot(&bot.db).await, "{text:?} wrote something");
    }
    // Still at the amount step: a good amount goes on.
    let r = bot.send_text(USER, "100").await;
    assert_eq!(texts(&r), bot.says(USER, &Msg::WithdrawConfirmAmount { amount: money("100") }));
    // The same bad input at the top-up step and at an admin's amount step.
    bot.press_msg(USER, &Msg::BtnTopUp).await;
    let r = bot.send_text(USER, "1,2,3").await;
    assert!(texts(&r).starts_with(&bot.says(USER, &Msg::AmountNotNumber)));
    bot.send_text(ADMIN, "/start").await;
    bot.press_data(ADMIN, "a:cr").await;
    bot.send_text(ADMIN, &USER.to_string()).await;
    let r = bot.send_text(ADMIN, "0.001").await;
    assert!(texts(&r).starts_with(&bot.says(ADMIN, &Msg::AmountTooPrecise)));
}

/// Requisites: too short, too long, control characters, direction overrides; direction marks and
/// other scripts are fine.
#[tokio::test]
async fn bad_requisites_get_a_reason_and_write_nothing() {
    let bot = BotHarness::new(&[ADMIN]).await;
    at_withdraw_amount(&bot, USER).await;
    bot.send_text(USER, "200").await;
    bot.press_msg(USER, &Msg::BtnConfirm).await;
    let length = Msg::RequisitesLength { min: 5, max: 256 };
    for (text, reason) in [
        ("abc".to_owned(), length.clone()),
        ("x".repeat(257), length.clone()),
        ("card\u{7}1234".to_owned(), Msg::RequisitesControl),
        ("4276 \u{202E}2222 1111".to_owned(), Msg::RequisitesControl),
    ] {
        let before = snapshot(&bot.db).await;
        let r = bot.send_text(USER, &text).await;
        assert!(texts(&r).starts_with(&bot.says(USER, &reason)), "{text:?}: {}", texts(&r));
        assert_eq!(before, snapshot(&bot.db).await);
    }
    let r = bot.send_text(USER, "\u{200F}كارت 4276 <b>").await;
    assert!(texts(&r).contains("&lt;b&gt;"), "requisites are escaped when shown: {}", texts(&r));
}

/// Stickers and photos where text is expected, and at the menu; commands in the middle of a
/// conversation (/start and /cancel always work, and /cancel closes a pending payment).
#[tokio::test]
async fn non_text_and_commands_mid_conversation() {
    let bot = BotHarness::new(&[ADMIN]).await;
    at_withdraw_amount(&bot, USER).await;
    let r = bot.deliver(USER, &bot.sticker_json(bot.next_id(), USER)).await;
    assert_eq!(texts(&r), bot.says(USER, &Msg::SendText));
    let r = bot.send_text(USER, "/cancel").await;
    assert!(texts(&r).starts_with(&bot.says(USER, &Msg::Cancelled)));
    let r = bot.deliver(USER, &bot.sticker_json(bot.next_id(), USER)).await;
    assert!(texts(&r).starts_with(&bot.says(USER, &Msg::NotUnderstood)));
    let r = bot.send_text(USER, "150").await;
    assert!(texts(&r).starts_with(&bot.says(USER, &Msg::NotUnderstood)), "no conversation: {}", texts(&r));
    let r = bot.send_text(USER, "/frobnicate").await;
    assert_eq!(texts(&r), bot.says(USER, &Msg::UnknownCommand));
    // A crypto purchase waiting for its payment: /cancel closes it and gives back its promo use.
    atlas_tests::create_promo(&bot.db, "ONCE", 10, Some(1), None).await;
    bot.press_msg(USER, &Msg::BtnPromo).await;
    bot.send_text(USER, "ONCE").await;
    bot.press(USER, "Basic").await;
    bot.press_msg(USER, &Msg::BtnPeriod { days: 30, price: money("199") }).await;
    bot.press_msg(USER, &Msg::BtnPayCrypto).await;
    assert_eq!(count(&bot.db, "SELECT used_count::bigint FROM promo_codes").await, 1);
    let r = bot.send_text(USER, "/start").await;
    assert!(texts(&r).contains("Welcome"));
    bot.press_msg(USER, &Msg::BtnBuy).await;
    bot.press(USER, "Basic").await;
    bot.press_msg(USER, &Msg::BtnPeriod { days: 30, price: money("199") }).await;
    bot.press_msg(USER, &Msg::BtnPayCrypto).await;
    bot.send_text(USER, "/cancel").await;
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM pending_purchases ORDER BY id").fetch_all(bot.db.pool()).await.unwrap();
    assert_eq!(statuses, ["pending", "cancelled"], "/start leaves an invoice open; /cancel closes the waiting one");
}

/// Stale buttons (from an earlier conversation, or an earlier message of this one) and forged or
/// malformed callback data: a clear reply, nothing written, never a panic.
#[tokio::test]
async fn stale_and_forged_buttons_write_nothing() {
    let bot = BotHarness::new(&[ADMIN]).await;
    at_withdraw_amount(&bot, USER).await;
    bot.send_text(USER, "300").await;
    let first_confirm = bot.button(USER, &bot.says(USER, &Msg::BtnConfirm)).unwrap();
    bot.send_text(USER, "/cancel").await;
    bot.press_msg(USER, &Msg::BtnWithdraw).await;
    bot.send_text(USER, "200").await;
    bot.press_msg(USER, &Msg::BtnConfirm).await;
    bot.send_text(USER, "4276 0000 1111 2222").await;
    let before = snapshot(&bot.db).await;
    // The confirm button of the first (cancelled) conversation.
    let r = bot.press_data(USER, &first_confirm).await;
    assert!(texts(&r).starts_with(&bot.says(USER, &Msg::StaleButton)), "{}", texts(&r));
    assert_eq!(before, snapshot(&bot.db).await);
    for data in ["", "s", "s:1:ok", "s:0:pay:b", "s:99999:ok", "a:dec:0:y", "🙂", &"x".repeat(300), "m:extra", "\u{0}"]
    {
        let r = bot.press_data(USER, data).await;
        assert!(texts(&r).starts_with(&bot.says(USER, &Msg::StaleButton)), "{data:?}: {}", texts(&r));
    }
    assert_eq!(before, snapshot(&bot.db).await, "a stale or forged button wrote something");
}

/// The same update delivered twice (a redelivery racing the first): handled once, one money
/// effect, and the user sees the reply once.
#[tokio::test]
async fn an_update_delivered_twice_is_handled_once() {
    let bot = BotHarness::new(&[ADMIN]).await;
    at_withdraw_amount(&bot, USER).await;
    bot.send_text(USER, "300").await;
    bot.press_msg(USER, &Msg::BtnConfirm).await;
    bot.send_text(USER, "4276 0000 1111 2222").await;
    let confirm = bot.button(USER, &bot.says(USER, &Msg::BtnConfirm)).unwrap();
    let json = bot.callback_json(bot.next_id(), USER, &confirm);
    let other = bot.second_instance();
    let ((a, ra), (b, rb)) = tokio::join!(bot.deliver_to(&bot.app, USER, &json), bot.deliver_to(&other, USER, &json));
    let handled = [a, b];
    assert_eq!(handled.iter().filter(|h| **h == Handled::Committed).count(), 1, "{handled:?}");
    let other = |h: &&Handled| matches!(h, Handled::InProgress | Handled::Duplicate);
    assert_eq!(handled.iter().filter(other).count(), 1, "{handled:?}");
    assert_eq!(ra.len() + rb.len(), 1, "the user sees the reply once");
    assert_eq!(count(&bot.db, "SELECT count(*) FROM withdrawal_requests").await, 1);
    assert_eq!(bot.balance(USER).await, 70_000);
}

/// An update whose money committed, but whose instance died before its replies and its Redis
/// commit: Redis forgot it was handled and still holds the old state, so Telegram's redelivery
/// runs the handler again from that state, and so does the user's second press of the same
/// button. The store's idempotency key (by step) makes both charge nothing; replies are
/// at-least-once (the confirmation, and the admins' notice, come with the later runs).
#[tokio::test]
async fn a_redelivery_after_the_money_committed_moves_no_money() {
    let bot = BotHarness::new(&[ADMIN]).await;
    at_withdraw_amount(&bot, USER).await;
    bot.send_text(USER, "300").await;
    bot.press_msg(USER, &Msg::BtnConfirm).await;
    bot.send_text(USER, "4276 0000 1111 2222").await;
    let (redelivered, pressed_again) = bot.press_losing_the_commit(USER, &Msg::BtnConfirm).await;
    assert!(texts(&redelivered).contains("300.00"), "the redelivery confirms: {}", texts(&redelivered));
    assert_eq!(texts(&redelivered), texts(&pressed_again), "the second press says the same");
    let told = bot.messages(ADMIN).iter().filter(|m| m.text.contains("4276 0000 1111 2222")).count();
    assert!(told >= 1, "the admins hear of the request even though the first run died before telling them");
    assert_eq!(count(&bot.db, "SELECT count(*) FROM withdrawal_requests").await, 1, "one request");
    assert_eq!(count(&bot.db, "SELECT count(*) FROM balance_ledger WHERE kind = 'withdrawal_hold'").await, 1);
    assert_eq!(bot.balance(USER).await, 70_000);
    // The same holds for a purchase from the balance ...
    bot.press_msg(USER, &Msg::BtnBuy).await;
    bot.press(USER, "Basic").await;
    bot.press_msg(USER, &Msg::BtnPeriod { days: 30, price: money("199") }).await;
    bot.press_losing_the_commit(USER, &Msg::BtnPayBalance { balance: money("700") }).await;
    assert_eq!(count(&bot.db, "SELECT count(*) FROM balance_ledger WHERE kind = 'purchase'").await, 1);
    assert_eq!(bot.balance(USER).await, 70_000 - 19_900);
    // ... for an admin's balance adjustment ...
    bot.send_text(ADMIN, "/start").await;
    bot.send_text(ADMIN, "/admin").await;
    bot.press_msg(ADMIN, &Msg::BtnAdminCredit).await;
    bot.send_text(ADMIN, &USER.to_string()).await;
    bot.send_text(ADMIN, "50").await;
    bot.press_losing_the_commit(ADMIN, &Msg::BtnConfirm).await;
    assert_eq!(bot.balance(USER).await, 70_000 - 19_900 + 5_000, "credited once");
    assert_eq!(count(&bot.db, "SELECT count(*) FROM admin_audit_log WHERE action = 'admin_credit'").await, 1);
    // ... and for the decision on the withdrawal.
    bot.press_msg(ADMIN, &Msg::BtnAdmin).await;
    bot.press_msg(ADMIN, &Msg::BtnAdminWithdrawals).await;
    bot.press_losing_the_commit(ADMIN, &Msg::BtnApprove).await;
    assert_eq!(count(&bot.db, "SELECT count(*) FROM admin_audit_log WHERE action = 'withdrawal_approve'").await, 1);
    assert_ledger_invariants(&bot.db).await.unwrap();
}

/// An instance is dropped in the middle of a withdrawal; another instance (over the same Redis)
/// takes the user's next updates and finishes it.
#[tokio::test]
async fn a_second_instance_finishes_a_withdrawal_the_first_started() {
    let bot = BotHarness::new(&[ADMIN]).await;
    bot.set_language(USER, Language::Ru);
    at_withdraw_amount(&bot, USER).await;
    bot.send_text(USER, "400").await;
    let first = bot.second_instance();
    let confirm = bot.button(USER, &bot.says(USER, &Msg::BtnConfirm)).unwrap();
    let (_, r) = bot.deliver_to(&first, USER, &bot.callback_json(bot.next_id(), USER, &confirm)).await;
    assert_eq!(texts(&r), bot.says(USER, &Msg::WithdrawAskRequisites));
    drop(first);
    let second = bot.second_instance();
    let (_, r) = bot.deliver_to(&second, USER, &bot.text_json(bot.next_id(), USER, "4276 0000 1111 2222")).await;
    assert!(texts(&r).contains("400.00"), "{}", texts(&r));
    let confirm = bot.button(USER, &bot.says(USER, &Msg::BtnConfirm)).unwrap();
    let (handled, _) = bot.deliver_to(&second, USER, &bot.callback_json(bot.next_id(), USER, &confirm)).await;
    assert_eq!(handled, Handled::Committed);
    assert_eq!(bot.balance(USER).await, 60_000);
    assert_eq!(count(&bot.db, "SELECT count(*) FROM withdrawal_requests").await, 1);
}

/// Redis unreachable: the menu still answers (degraded, without state), but every money action
/// is refused with "try again later" and nothing is written.
#[tokio::test]
async fn without_redis_money_actions_are_refused_and_nothing_is_written() {
    let bot = BotHarness::with_redis(&[ADMIN], Some("redis://127.0.0.1:1")).await;
    bot.fund(USER, "1000").await;
    let (handled, r) = bot.deliver_to(&bot.app, USER, &bot.text_json(bot.next_id(), USER, "/start")).await;
    assert_eq!(handled, Handled::Degraded);
    assert!(texts(&r).contains("Welcome"));
    // Without a conversation record every update is a first contact: the sender is registered
    // (or their username refreshed), which moves no money.
    bot.deliver_to(&bot.app, ADMIN, &bot.text_json(bot.next_id(), ADMIN, "/start")).await;
    let before = snapshot(&bot.db).await;
    let try_later = bot.says(USER, &Msg::TryLater);
    for data in ["s:1:pay:b", "s:1:ok", "a:dec:1:y"] {
        let (_, r) = bot.deliver_to(&bot.app, USER, &bot.callback_json(bot.next_id(), USER, data)).await;
        let said = texts(&r);
        assert!(
            said.starts_with(&try_later) || said.starts_with(&bot.says(USER, &Msg::AdminOnly)),
            "{data}: {said:?} vs {try_later:?}"
        );
    }
    let (_, r) = bot.deliver_to(&bot.app, USER, &bot.text_json(bot.next_id(), USER, "250")).await;
    assert_eq!(texts(&r), try_later);
    // An admin's money action, without Redis, is refused too.
    let (_, r) = bot.deliver_to(&bot.app, ADMIN, &bot.callback_json(bot.next_id(), ADMIN, "a:dec:1:y")).await;
    assert_eq!(texts(&r), try_later);
    // Reading the balance still works.
    let (_, r) = bot.deliver_to(&bot.app, USER, &bot.callback_json(bot.next_id(), USER, "bal")).await;
    assert!(texts(&r).contains("1000.00"));
    // A menu button that opens a conversation ("Withdraw", then the amount) does not ask a
    // question whose answer could not be kept: try again later.
    let (_, r) = bot.deliver_to(&bot.app, USER, &bot.callback_json(bot.next_id(), USER, "wd")).await;
    assert_eq!(texts(&r), try_later, "a step begun without Redis");
    assert_eq!(before, snapshot(&bot.db).await, "something was written without Redis");
}

/// The audit's limits, across instances: promo attempts 10 per minute, withdrawal requests 3 per
/// hour, payment attempts 5 per minute; a refusal says when to try again.
#[tokio::test]
async fn rate_limits_say_when_to_retry() {
    let bot = BotHarness::new(&[ADMIN]).await;
    bot.send_text(USER, "/start").await;
    let other = bot.second_instance();
    for attempt in 0..10 {
        bot.press_msg(USER, &Msg::BtnPromo).await;
        let json = bot.text_json(bot.next_id(), USER, &format!("NOPE{attempt}"));
        let app = if attempt % 2 == 0 { &bot.app } else { &other };
        let (_, r) = bot.deliver_to(app, USER, &json).await;
        assert!(texts(&r).starts_with(&bot.says(USER, &Msg::PromoNotFound)), "{}", texts(&r));
    }
    let r = bot.send_text(USER, "NOPE10").await;
    assert!(texts(&r).starts_with(&bot.says(USER, &Msg::RateLimited { minutes: 1 })), "{}", texts(&r));
    // Withdrawal requests: the fourth in an hour is refused, and holds nothing.
    bot.fund(USER, "1000").await;
    for n in 0..4 {
        bot.press_msg(USER, &Msg::BtnWithdraw).await;
        bot.send_text(USER, "100").await;
        bot.press_msg(USER, &Msg::BtnConfirm).await;
        bot.send_text(USER, "4276 0000 1111 2222").await;
        let r = bot.press_msg(USER, &Msg::BtnConfirm).await;
        if n == 3 {
            assert!(texts(&r).starts_with(&bot.says(USER, &Msg::RateLimited { minutes: 60 })), "{}", texts(&r));
        }
    }
    assert_eq!(count(&bot.db, "SELECT count(*) FROM withdrawal_requests").await, 3);
    // Payment attempts: the sixth in a minute is refused.
    for n in 0..6 {
        bot.press_msg(USER, &Msg::BtnTopUp).await;
        bot.send_text(USER, "10").await;
        let r = bot.press_msg(USER, &Msg::BtnPayCrypto).await;
        if n == 5 {
            assert!(texts(&r).starts_with(&bot.says(USER, &Msg::RateLimited { minutes: 1 })), "{}", texts(&r));
        }
    }
    assert_eq!(count(&bot.db, "SELECT count(*) FROM topups").await, 5);
}

/// A conversation record written by an older bot (or corrupted) resets the user to the menu with
/// an apology; it never locks them out.
#[tokio::test]
async fn a_record_that_no_longer_decodes_resets_to_the_menu() {
    let bot = BotHarness::new(&[ADMIN]).await;
    at_withdraw_amount(&bot, USER).await;
    let mut redis = raw().await;
    let _: () =
        redis.hset(bot.keys.fsm(uid(USER)), "d", br#"{"f":1,"s":{"from":"an older bot"}}"#.to_vec()).await.unwrap();
    let r = bot.send_text(USER, "300").await;
    assert!(texts(&r).starts_with(&bot.says(USER, &Msg::ResetNotice)), "{}", texts(&r));
    let r = bot.press_msg(USER, &Msg::BtnBalance).await;
    assert!(texts(&r).contains("1000.00"), "the user is not locked out: {}", texts(&r));
}

/// A user who blocked the bot: the first send to them fails with Telegram's 403 and marks them;
/// after that nobody writes to them (an admin's withdrawal notice is skipped) until Telegram
/// says they came back.
#[tokio::test]
async fn a_user_who_blocked_the_bot_is_not_written_to_until_they_return() {
    let bot = BotHarness::new(&[ADMIN]).await;
    bot.send_text(ADMIN, "/start").await;
    bot.messenger.blocked.lock().unwrap().push(ADMIN);
    let withdraw = async |amount: &str| {
        at_withdraw_amount(&bot, USER).await;
        bot.send_text(USER, amount).await;
        bot.press_msg(USER, &Msg::BtnConfirm).await;
        bot.send_text(USER, "4276 0000 1111 2222").await;
        bot.press_msg(USER, &Msg::BtnConfirm).await;
    };
    withdraw("150").await;
    assert_eq!(*bot.messenger.refused.lock().unwrap(), [ADMIN], "the first notice met the 403");
    assert!(bot.db.store.user(uid(ADMIN)).await.unwrap().unwrap().blocked);
    withdraw("160").await;
    assert_eq!(bot.messenger.refused.lock().unwrap().len(), 1, "a blocked admin is not written to again");
    // Telegram says the admin unblocked the bot.
    bot.messenger.blocked.lock().unwrap().clear();
    let r = bot.deliver(ADMIN, &bot.membership_json(bot.next_id(), ADMIN, "member")).await;
    assert!(r.is_empty(), "a membership change is not answered");
    assert!(!bot.db.store.user(uid(ADMIN)).await.unwrap().unwrap().blocked);
    withdraw("170").await;
    assert!(bot.messages(ADMIN).iter().any(|m| m.text.contains("170.00")), "told again");
    // And blocking it is recorded without a word sent.
    let r = bot.deliver(USER, &bot.membership_json(bot.next_id(), USER, "kicked")).await;
    assert!(r.is_empty());
    assert!(bot.db.store.user(uid(USER)).await.unwrap().unwrap().blocked);
}

/// A reply that may not have reached its user (a timeout, flood control longer than the send
/// budget) hands the update back: nothing is committed, and delivered again it is handled.
#[tokio::test]
async fn an_undelivered_reply_hands_the_update_back() {
    let bot = BotHarness::new(&[ADMIN]).await;
    bot.send_text(USER, "/start").await;
    let json = bot.callback_json(bot.next_id(), USER, "wd");
    bot.messenger.unreachable.store(true, std::sync::atomic::Ordering::Relaxed);
    let (handled, _) = bot.deliver_to(&bot.app, USER, &json).await;
    assert_eq!(handled, Handled::Retry);
    bot.messenger.unreachable.store(false, std::sync::atomic::Ordering::Relaxed);
    let r = bot.deliver(USER, &json).await;
    assert!(!r.is_empty(), "handled when it comes again");
}

/// A user past the flood limit (20 updates in 10 s) has the rest dropped; an admin working
/// through requests fast is not flood-limited (admin commands have their own limit, 100 a
/// minute): swarm seed 4793 dropped an admin's press unanswered.
#[tokio::test]
async fn the_flood_limit_drops_a_spammer_not_an_admin() {
    let bot = BotHarness::new(&[ADMIN]).await;
    // The live limit's 20, over a window no test run outlasts (at 10 s, one more update passes
    // every 500 ms: a slow run would see fewer dropped).
    let flood = atlas::coord::limits::Flood { max: 20, window: std::time::Duration::from_secs(3600) };
    let live = bot.instance_with_flood(flood);
    let spammer = 4242;
    let mut dropped = (0, 0);
    for _ in 0..25 {
        let (handled, _) = bot.deliver_to(&live, spammer, &bot.text_json(bot.next_id(), spammer, "/start")).await;
        dropped.0 += usize::from(handled == Handled::Flooded);
        let (handled, _) = bot.deliver_to(&live, ADMIN, &bot.text_json(bot.next_id(), ADMIN, "/admin")).await;
        dropped.1 += usize::from(handled == Handled::Flooded);
    }
    assert_eq!(dropped.0, 5, "the spammer's updates past 20 are dropped");
    assert_eq!(dropped.1, 0, "no update of the admin is dropped");
}

/// A balance purchase the store did not complete (its function gone for a moment, as a failed or
/// timed-out call whose outcome is unknown) keeps its step: the user is told to press the same
/// button again, not that nothing was charged, and that press buys once; a third press buys
/// nothing more.
#[tokio::test]
async fn a_purchase_the_store_failed_keeps_its_step_and_the_same_press_buys_once() {
    let (bot, before) = at_an_unconfirmed_purchase().await;
    let pay = Msg::BtnPayBalance { balance: money("500") };
    // The debit may have landed: until the same button settles it, the step's other ways to
    // pay and its promo code (each a second purchase under another key) are refused.
    let stars = Msg::BtnPayStars { stars: 133 };
    for other in [&Msg::BtnPayCrypto, &stars, &Msg::BtnEnterPromo] {
        let r = bot.press_msg(USER, other).await;
        assert_eq!(texts(&r), bot.says(USER, &Msg::PurchaseConfirmFirst), "{other:?}");
    }
    assert_eq!(before, snapshot(&bot.db).await, "another way to pay wrote something");
    let back = "ALTER FUNCTION atlas_purchase_from_balance_away RENAME TO atlas_purchase_from_balance";
    sqlx::query(back).execute(bot.db.pool()).await.unwrap();
    let r = bot.press_msg(USER, &pay).await;
    bot.db.store.subscription(uid(USER)).await.unwrap().expect("bought with the same button");
    assert!(texts(&r).contains("199.00"), "{}", texts(&r));
    assert_eq!(bot.balance(USER).await, 50_000 - 19_900);
    bot.press_msg(USER, &pay).await;
    assert_eq!(bot.balance(USER).await, 50_000 - 19_900, "a third press bought again");
    assert_ledger_invariants(&bot.db).await.unwrap();
}

/// A user who pressed "from balance" while the store's purchase function was away (renamed, so
/// the call fails as a broken store would): told the purchase is unconfirmed, nothing written.
/// The bot, and the database as it was before the press; the function stays away.
async fn at_an_unconfirmed_purchase() -> (BotHarness, Vec<(String, i64)>) {
    let bot = BotHarness::new(&[ADMIN]).await;
    bot.send_text(USER, "/start").await;
    bot.fund(USER, "500").await;
    bot.press_msg(USER, &Msg::BtnBuy).await;
    bot.press(USER, "Basic").await;
    bot.press_msg(USER, &Msg::BtnPeriod { days: 30, price: money("199") }).await;
    let away = "ALTER FUNCTION atlas_purchase_from_balance RENAME TO atlas_purchase_from_balance_away";
    sqlx::query(away).execute(bot.db.pool()).await.unwrap();
    let before = snapshot(&bot.db).await;
    let r = bot.press_msg(USER, &Msg::BtnPayBalance { balance: money("500") }).await;
    assert_eq!(texts(&r), bot.says(USER, &Msg::PurchaseUnconfirmed));
    assert_eq!(before, snapshot(&bot.db).await, "the failed try wrote something");
    (bot, before)
}

/// Cancelling a purchase from the balance whose outcome is unknown does not say "Cancelled."
/// as if nothing happened: the debit may have landed, and the user is told where to look.
#[tokio::test]
async fn cancelling_an_unconfirmed_purchase_says_it_may_have_gone_through() {
    let (bot, _) = at_an_unconfirmed_purchase().await;
    let r = bot.press_msg(USER, &Msg::BtnCancel).await;
    let told = texts(&r);
    assert!(told.contains(&bot.says(USER, &Msg::CancelledUnconfirmed)), "{told}");
    assert!(!told.split("\n---\n").any(|m| m == bot.says(USER, &Msg::Cancelled)), "{told}");
}

/// /cancel at an unconfirmed purchase says what its Cancel button says, once.
#[tokio::test]
async fn cancel_typed_at_an_unconfirmed_purchase_warns_once() {
    let (bot, _) = at_an_unconfirmed_purchase().await;
    let r = bot.send_text(USER, "/cancel").await;
    let told = texts(&r);
    assert_eq!(told.matches(&bot.says(USER, &Msg::CancelledUnconfirmed)).count(), 1, "{told}");
}

/// Leaving an unconfirmed purchase from the balance by a command or a menu button says, first,
/// that it may have gone through.
#[tokio::test]
async fn leaving_an_unconfirmed_purchase_by_the_menu_says_it_may_have_gone_through() {
    let (bot, _) = at_an_unconfirmed_purchase().await;
    let r = bot.send_text(USER, "/start").await;
    let told = texts(&r);
    assert!(told.starts_with(&bot.says(USER, &Msg::CancelledUnconfirmed)), "{told}");
    // Gone from the step now: the next /start says nothing of it.
    let r = bot.send_text(USER, "/start").await;
    assert!(!texts(&r).contains(&bot.says(USER, &Msg::CancelledUnconfirmed)), "{}", texts(&r));
}
