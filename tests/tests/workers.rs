//! The background workers on real PostgreSQL (and Redis for the bot around them): each effect
//! once, however many instances run the same worker at the same moment, and a paused leader
//! whose lease ran out makes none.

use std::sync::atomic::Ordering;
use std::time::Duration;

use atlas::bot::text::Msg;
use atlas::domain::{KeyLabel, Language, Money, Payable, PaymentProviderKind, TariffCode, UserId};
use atlas::ports::Clock;
use atlas::ports::coordination::{Leadership, Role};
use atlas::ports::store::{Accounts, AdminTools, NewBroadcast, Notices, Purchases, Subscriptions};
use atlas::workers::{Lease, activation, broadcast, cleanup, notices, payments, renewal};
use atlas_tests::bot::BotHarness;
use atlas_tests::{assert_ledger_invariants, count, uid};

const ADMIN: i64 = 900;

/// A lease that holds for a minute from now, or one whose deadline passed (a paused leader).
fn lease(bot: &BotHarness, valid: bool) -> Leadership {
    let now = bot.clock.monotonic();
    Leadership {
        role: Role::Reminders,
        token: "t".into(),
        epoch: 1,
        valid_until: if valid { now + Duration::from_secs(60) } else { now.saturating_sub(Duration::from_millis(1)) },
    }
}

/// The messages `user` got that say `msg`.
fn got(bot: &BotHarness, user: i64, msg: &Msg) -> usize {
    let text = bot.says(user, msg);
    bot.messages(user).iter().filter(|m| m.text == text).count()
}

#[tokio::test]
async fn two_instances_activate_each_key_once_and_tell_the_user_once() {
    let bot = BotHarness::new(&[ADMIN]).await;
    for user in 1..=3 {
        bot.buy(user).await;
    }
    let second = bot.second_instance();
    let (a, b) = tokio::join!(activation::tick(&bot.app, Lease::None, 10), activation::tick(&second, Lease::None, 10));
    assert_eq!(a.done + b.done, 3, "{a:?} {b:?}");
    assert_eq!(bot.panel.alive().len(), 3, "one key per subscription at the panel");
    for user in 1..=3 {
        let sub = bot.db.store.subscription(uid(user)).await.unwrap().unwrap();
        let key = bot.db.store.current_key(sub.id).await.unwrap().expect("a key");
        assert_eq!(key.panel_key_id, KeyLabel::Activation { subscription: sub.id, generation: 0 }.to_string());
        assert_eq!(got(&bot, user, &Msg::KeyReady { uri: key.access_uri }), 1);
    }
    // Nothing left to do.
    assert_eq!(activation::tick(&bot.app, Lease::None, 10).await.done, 0);
}

#[tokio::test]
async fn a_panel_that_keeps_failing_ends_in_a_clear_failed_state() {
    let bot = BotHarness::new(&[ADMIN]).await;
    bot.fund(ADMIN, "1").await; // the admin has started the bot
    bot.buy(1).await;
    bot.panel.failing.store(true, Ordering::Relaxed);
    for attempt in 1..=atlas::domain::ACTIVATION_ATTEMPTS_MAX {
        let tally = activation::tick(&bot.app, Lease::None, 10).await;
        assert_eq!(tally.failed, 1, "attempt {attempt}");
        // The next attempt waits for its backoff.
        assert_eq!(activation::tick(&bot.app, Lease::None, 10).await, Default::default(), "attempt {attempt}");
        bot.clock.advance(Duration::from_secs(3600));
    }
    let sub = bot.db.store.subscription(uid(1)).await.unwrap().unwrap();
    assert_eq!(sub.activation_status, atlas::domain::ActivationStatus::Failed);
    assert_eq!(got(&bot, 1, &Msg::KeyActivationFailed), 1);
    assert_eq!(bot.messages(ADMIN).iter().filter(|m| m.text.contains(&sub.id.get().to_string())).count(), 1);
    // Every attempt asked for the same key id: a retry can never make a second key.
    let creates = bot.panel.creates.lock().unwrap().clone();
    assert_eq!(creates.len(), atlas::domain::ACTIVATION_ATTEMPTS_MAX as usize);
    assert!(creates.iter().all(|c| *c == creates[0]));
    bot.panel.failing.store(false, Ordering::Relaxed);
    assert_eq!(activation::tick(&bot.app, Lease::None, 10).await.done, 0, "a failed subscription is not retried");
}

#[tokio::test]
async fn auto_renewal_on_two_instances_charges_each_period_once() {
    let bot = BotHarness::new(&[]).await;
    for user in 1..=6 {
        bot.buy(user).await;
        bot.db.store.set_auto_renew(uid(user), true, bot.clock.now()).await.unwrap();
    }
    // User 6 cannot pay for the next period.
    let debit = atlas::ports::store::AdminAdjustment {
        admin: uid(ADMIN),
        user: uid(6),
        direction: atlas::ports::store::Direction::Debit,
        amount: Money::parse("301").unwrap(),
        reason: "test".into(),
        correlation_id: None,
        idempotency_key: None,
    };
    bot.db.store.admin_adjust(debit, bot.clock.now()).await.unwrap();
    bot.clock.advance(Duration::from_secs(29 * 24 * 3600 + 3600));
    let horizon = Duration::from_secs(24 * 3600);
    let second = bot.second_instance();
    let (a, b) = tokio::join!(
        renewal::tick(&bot.app, Lease::None, horizon, 100),
        renewal::tick(&second, Lease::None, horizon, 100)
    );
    assert_eq!(a.done + b.done, 6, "{a:?} {b:?}");
    assert_eq!(count(&bot.db, "SELECT count(*) FROM balance_ledger WHERE kind = 'auto_renewal'").await, 5);
    for user in 1..=5 {
        assert_eq!(bot.balance(user).await, 50_000 - 2 * 19_900);
        let renewed = bot.messages(user).iter().filter(|m| m.text.contains("renewed")).count();
        assert_eq!(renewed, 1, "user {user}");
    }
    assert_eq!(got(&bot, 6, &Msg::RenewalShort), 1);
    // Run again: nothing more is charged or said.
    assert_eq!(renewal::tick(&bot.app, Lease::None, horizon, 100).await.done, 0);
    assert_ledger_invariants(&bot.db).await.unwrap();
}

#[tokio::test]
async fn each_reminder_goes_out_once_and_a_paused_leader_sends_none() {
    let bot = BotHarness::new(&[]).await;
    bot.buy(1).await;
    bot.buy(2).await;
    bot.db.store.set_auto_renew(uid(2), true, bot.clock.now()).await.unwrap();
    let until = bot.db.store.subscription(uid(1)).await.unwrap().unwrap().expires_at;
    let hours = [72, 24, 3];
    let live = lease(&bot, true);
    let held = Lease::Held(&live, &*bot.clock);
    // A month passes; 20 hours are left.
    bot.clock.advance(Duration::from_secs(30 * 24 * 3600 - 20 * 3600));
    let stale = lease(&bot, false);
    let paused = notices::tick(&bot.app, Lease::Held(&stale, &*bot.clock), false, &hours, 10).await;
    assert_eq!(paused, Default::default(), "a leader past its lease makes no effect");
    let second = bot.second_instance();
    let (a, b) =
        tokio::join!(notices::tick(&bot.app, held, false, &hours, 10), notices::tick(&second, held, false, &hours, 10));
    assert_eq!(
        a.done + b.done,
        1,
        "only the 24-hour reminder, once: {a:?} {b:?} {:?}",
        bot.messenger.sent.lock().unwrap()
    );
    assert_eq!(got(&bot, 1, &Msg::ReminderBefore { hours: 24, until }), 1);
    assert!(bot.messages(2).iter().all(|m| !m.text.contains("⏳")), "auto-renewal users get no reminder");
    assert_eq!(notices::tick(&bot.app, held, false, &hours, 10).await.done, 0);
    bot.clock.advance(Duration::from_secs(18 * 3600));
    assert_eq!(notices::tick(&bot.app, held, false, &hours, 10).await.done, 1);
    assert_eq!(got(&bot, 1, &Msg::ReminderBefore { hours: 3, until }), 1);
    bot.clock.advance(Duration::from_secs(3 * 3600));
    // Both ended: user 2's auto-renewal did not renew (no renewal ran), so they hear it too.
    assert_eq!(notices::tick(&bot.app, held, false, &hours, 10).await.done, 2);
    assert_eq!(got(&bot, 1, &Msg::SubscriptionEnded { until }), 1);
    let until2 = bot.db.store.subscription(uid(2)).await.unwrap().unwrap().expires_at;
    assert_eq!(got(&bot, 2, &Msg::SubscriptionEnded { until: until2 }), 1);
    assert_eq!(notices::tick(&bot.app, held, false, &hours, 10).await.done, 0);
}

#[tokio::test]
async fn a_trial_gets_its_notices_once() {
    let bot = BotHarness::new(&[]).await;
    bot.fund(1, "1").await;
    bot.db.store.activate_trial(uid(1), &TariffCode::parse("basic").unwrap(), 3, bot.clock.now()).await.unwrap();
    let live = lease(&bot, true);
    let held = Lease::Held(&live, &*bot.clock);
    bot.clock.advance(Duration::from_secs(2 * 24 * 3600 + 3600));
    assert_eq!(notices::tick(&bot.app, held, true, &[24], 10).await.done, 1);
    assert_eq!(notices::tick(&bot.app, held, false, &[72, 24, 3], 10).await.done, 0, "not a paid reminder");
    bot.clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(notices::tick(&bot.app, held, true, &[24], 10).await.done, 1);
    assert_eq!(got(&bot, 1, &Msg::TrialEnded), 1);
    assert_eq!(notices::tick(&bot.app, held, true, &[24], 10).await.done, 0);
}

async fn crypto_purchase(bot: &BotHarness, user: i64) -> Payable {
    bot.crypto_order(user, &bot.crypto).await.0
}

#[tokio::test]
async fn the_watcher_counts_a_paid_invoice_once_and_closes_expired_orders() {
    let bot = BotHarness::new(&[]).await;
    let paid = crypto_purchase(&bot, 1).await;
    let unpaid = crypto_purchase(&bot, 2).await;
    bot.crypto.pay(paid);
    let live = lease(&bot, true);
    let held = Lease::Held(&live, &*bot.clock);
    let second = bot.second_instance();
    let (mut c1, mut c2) = (None, None);
    let (a, b) =
        tokio::join!(payments::tick(&bot.app, held, &mut c1, 100), payments::tick(&second, held, &mut c2, 100));
    assert_eq!(a.done + b.done, 1, "{a:?} {b:?}");
    assert_eq!(
        count(&bot.db, "SELECT count(*) FROM payments WHERE provider = 'crypto' AND purpose = 'purchase'").await,
        1
    );
    let until = bot.db.store.subscription(uid(1)).await.unwrap().unwrap().expires_at;
    assert_eq!(got(&bot, 1, &Msg::Paid { until }), 1, "told once, by whoever counted it");
    // The unpaid one waits, past our own expiry too while Crypto Pay still offers its invoice (it
    // was made after the order, and a payment could still come); closed once Crypto Pay says
    // it expired.
    assert_eq!(payments::tick(&bot.app, held, &mut None, 100).await.done, 0);
    bot.clock.advance(Duration::from_secs(3601));
    let live = lease(&bot, true);
    let held = Lease::Held(&live, &*bot.clock);
    assert_eq!(payments::tick(&bot.app, held, &mut None, 100).await.done, 0);
    bot.crypto.expire(unpaid);
    assert_eq!(payments::tick(&bot.app, held, &mut None, 100).await.done, 1);
    let Payable::Purchase(id) = unpaid else { unreachable!() };
    assert_eq!(bot.db.store.purchase(id).await.unwrap().unwrap().status, atlas::domain::PurchaseStatus::Expired);
    assert_ledger_invariants(&bot.db).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_provider_closes_nothing() {
    let bot = BotHarness::new(&[]).await;
    let payable = crypto_purchase(&bot, 1).await;
    bot.clock.advance(Duration::from_secs(3601));
    bot.crypto.unreachable.store(true, Ordering::Relaxed);
    let live = lease(&bot, true);
    let tally = payments::tick(&bot.app, Lease::Held(&live, &*bot.clock), &mut None, 100).await;
    assert_eq!((tally.done, tally.failed), (0, 1));
    let Payable::Purchase(id) = payable else { unreachable!() };
    assert_eq!(bot.db.store.purchase(id).await.unwrap().unwrap().status, atlas::domain::PurchaseStatus::Pending);
}

#[tokio::test]
async fn the_watcher_walks_every_page() {
    let bot = BotHarness::new(&[]).await;
    for user in 1..=5 {
        let payable = crypto_purchase(&bot, user).await;
        bot.crypto.pay(payable);
    }
    let live = lease(&bot, true);
    let held = Lease::Held(&live, &*bot.clock);
    let mut cursor = None;
    let mut done = 0;
    for _ in 0..3 {
        done += payments::tick(&bot.app, held, &mut cursor, 2).await.done;
    }
    assert_eq!(done, 5);
    assert_eq!(cursor, None, "back at the start after the last page");
}

#[tokio::test]
async fn a_broadcast_reaches_everyone_once_resumes_and_skips_the_blocked() {
    let bot = BotHarness::new(&[ADMIN]).await;
    for user in 1..=7 {
        bot.fund(user, "1").await;
    }
    bot.db.store.set_language(uid(2), Language::Ru).await.unwrap();
    bot.messenger.blocked.lock().unwrap().push(3);
    let job = NewBroadcast {
        admin: uid(ADMIN),
        text: "Sale <b>today</b> & tomorrow".into(),
        correlation_id: None,
        idempotency_key: None,
    };
    bot.db.store.create_broadcast(job, bot.clock.now()).await.unwrap();
    let live = lease(&bot, true);
    let held = Lease::Held(&live, &*bot.clock);
    let second = bot.second_instance();
    // Two senders at once (a paused leader woke up), in pages of 3.
    let pace = Duration::ZERO;
    let (a, b) = tokio::join!(broadcast::tick(&bot.app, held, pace, 3), broadcast::tick(&second, held, pace, 3));
    assert!(a.done + b.done >= 2, "{a:?} {b:?}");
    while broadcast::tick(&bot.app, held, pace, 3).await != Default::default() {}
    let text = "Sale &lt;b&gt;today&lt;/b&gt; &amp; tomorrow";
    for user in [1, 2, 4, 5, 6, 7] {
        assert_eq!(bot.messages(user).iter().filter(|m| m.text == text).count(), 1, "user {user}");
    }
    assert_eq!(*bot.messenger.refused.lock().unwrap(), vec![3]);
    assert!(bot.db.store.user(uid(3)).await.unwrap().unwrap().blocked, "marked, not written to again");
    assert_eq!(count(&bot.db, "SELECT count(*) FROM broadcasts WHERE status = 'done' AND sent_count = 6").await, 1);
}

#[tokio::test]
async fn ended_keys_are_revoked_and_orphans_reconciled() {
    let bot = BotHarness::new(&[]).await;
    bot.buy(1).await;
    bot.buy(2).await;
    activation::tick(&bot.app, Lease::None, 10).await;
    let sub1 = bot.db.store.subscription(uid(1)).await.unwrap().unwrap().id;
    let sub2 = bot.db.store.subscription(uid(2)).await.unwrap().unwrap().id;
    let live = lease(&bot, true);
    let held = Lease::Held(&live, &*bot.clock);
    // A fenced reissue's key (token 5, the store has seen 9), the newest reissue still
    // installing (token 9), and a key of a subscription nobody has.
    use atlas::ports::VpnProvider;
    bot.db.store.claim_key_fence(sub2, 9, bot.clock.now()).await.unwrap();
    for label in [
        KeyLabel::Reissue { subscription: sub2, token: 5 },
        KeyLabel::Reissue { subscription: sub2, token: 9 },
        KeyLabel::Activation { subscription: atlas::domain::SubscriptionId::new(999_999).unwrap(), generation: 0 },
    ] {
        bot.panel.create_key(label.subscription(), &label.to_string()).await.unwrap();
    }
    bot.panel.create_key(sub2, "made-by-hand").await.unwrap();
    let reconciled = cleanup::reconcile(&bot.app, held, 10).await;
    assert_eq!(reconciled.done, 2, "{reconciled:?}");
    let mut alive = bot.panel.alive();
    alive.sort();
    let mut expected = vec![
        KeyLabel::Activation { subscription: sub1, generation: 0 }.to_string(),
        KeyLabel::Activation { subscription: sub2, generation: 0 }.to_string(),
        KeyLabel::Reissue { subscription: sub2, token: 9 }.to_string(),
        "made-by-hand".to_owned(),
    ];
    expected.sort();
    assert_eq!(alive, expected);
    // The subscription ends; after the grace its key is revoked, here and at the panel.
    bot.clock.advance(Duration::from_secs(31 * 24 * 3600));
    let live = lease(&bot, true);
    let held = Lease::Held(&live, &*bot.clock);
    let swept = cleanup::tick(&bot.app, held, Duration::from_secs(3600), 10).await;
    assert_eq!(swept.done, 4, "2 retired, 2 revoked at the panel: {swept:?}");
    assert!(bot.db.store.current_key(sub1).await.unwrap().is_none());
    assert!(!bot.panel.alive().iter().any(|k| k.starts_with("activate-")));
    assert_eq!(cleanup::tick(&bot.app, held, Duration::from_secs(3600), 10).await.done, 0);
    // Buying again gets a new key under the next generation.
    bot.buy(1).await;
    activation::tick(&bot.app, Lease::None, 10).await;
    let key = bot.db.store.current_key(sub1).await.unwrap().unwrap();
    assert_eq!(key.panel_key_id, KeyLabel::Activation { subscription: sub1, generation: 1 }.to_string());
    let _ = UserId::new(1);
}

#[tokio::test]
async fn leaders_that_found_the_same_reminders_send_each_once() {
    // Two instances that each believe they lead (a paused leader waking up) found the same due
    // reminders; they deliver afterwards: the claim in the store lets each out once.
    let bot = BotHarness::new(&[]).await;
    for user in 1..=5 {
        bot.buy(user).await;
    }
    bot.clock.advance(Duration::from_secs(30 * 24 * 3600 - 20 * 3600));
    let live = lease(&bot, true);
    let held = Lease::Held(&live, &*bot.clock);
    let second = bot.second_instance();
    let scan = || bot.db.store.due_notices(false, vec![72, 24, 3], bot.clock.now(), 100);
    let (found_a, found_b) = (scan().await.unwrap(), scan().await.unwrap());
    assert_eq!(found_a.len(), 5);
    assert_eq!(found_a, found_b);
    let a = notices::deliver(&bot.app, held, found_a).await;
    let b = notices::deliver(&second, held, found_b).await;
    assert_eq!((a.done, b.done, b.skipped), (5, 0, 5));
    for user in 1..=5 {
        assert_eq!(bot.messages(user).iter().filter(|m| m.text.contains("⏳")).count(), 1, "user {user}");
    }
}

#[tokio::test]
async fn a_panel_not_called_costs_no_attempt_and_one_instance_tries_per_round() {
    let bot = BotHarness::new(&[ADMIN]).await;
    bot.buy(1).await;
    let second = bot.second_instance();
    // No panel (or its calls paused): nothing is counted, however long it lasts.
    bot.panel.unavailable.store(true, Ordering::Relaxed);
    for _ in 0..20 {
        tokio::join!(activation::tick(&bot.app, Lease::None, 10), activation::tick(&second, Lease::None, 10));
        bot.clock.advance(atlas::domain::ACTIVATION_CLAIM);
    }
    let sub = bot.db.store.subscription(uid(1)).await.unwrap().unwrap();
    assert_eq!((sub.activation_status, sub.activation_attempts), (atlas::domain::ActivationStatus::Pending, 0));
    // A failing panel: two instances at once make one attempt per round.
    bot.panel.unavailable.store(false, Ordering::Relaxed);
    bot.panel.failing.store(true, Ordering::Relaxed);
    let (a, b) = tokio::join!(activation::tick(&bot.app, Lease::None, 10), activation::tick(&second, Lease::None, 10));
    assert_eq!(a.failed + b.failed, 1, "{a:?} {b:?}");
    assert_eq!(bot.db.store.subscription(uid(1)).await.unwrap().unwrap().activation_attempts, 1);
}

#[tokio::test]
async fn a_failed_activation_keeps_its_key_id_for_the_next_purchase() {
    // The last attempt made the key at the panel but its answer was lost: the subscription is
    // failed. The reconciler must not revoke that id: a purchase brings the subscription back,
    // and its activation asks for the very same id.
    let bot = BotHarness::new(&[]).await;
    bot.buy(1).await;
    let sub = bot.db.store.subscription(uid(1)).await.unwrap().unwrap().id;
    let label = KeyLabel::Activation { subscription: sub, generation: 0 };
    bot.panel.failing.store(true, Ordering::Relaxed);
    for _ in 0..atlas::domain::ACTIVATION_ATTEMPTS_MAX {
        activation::tick(&bot.app, Lease::None, 10).await;
        bot.clock.advance(Duration::from_secs(3600));
    }
    bot.panel.failing.store(false, Ordering::Relaxed);
    use atlas::ports::VpnProvider;
    bot.panel.create_key(sub, &label.to_string()).await.unwrap();
    let live = lease(&bot, true);
    let reconciled = cleanup::reconcile(&bot.app, Lease::Held(&live, &*bot.clock), 10).await;
    assert_eq!(reconciled.done, 0, "{reconciled:?}");
    bot.buy(1).await;
    assert_eq!(activation::tick(&bot.app, Lease::None, 10).await.done, 1);
    let key = bot.db.store.current_key(sub).await.unwrap().unwrap();
    assert_eq!(key.panel_key_id, label.to_string());
    assert_eq!(bot.panel.alive(), vec![label.to_string()]);
}

#[tokio::test]
async fn renewing_a_subscription_whose_key_failed_tries_the_key_again() {
    let bot = BotHarness::new(&[]).await;
    bot.buy(1).await;
    bot.fund(1, "500").await;
    bot.db.store.set_auto_renew(uid(1), true, bot.clock.now()).await.unwrap();
    bot.panel.failing.store(true, Ordering::Relaxed);
    for _ in 0..atlas::domain::ACTIVATION_ATTEMPTS_MAX {
        activation::tick(&bot.app, Lease::None, 10).await;
        bot.clock.advance(Duration::from_secs(3600));
    }
    let failed = bot.db.store.subscription(uid(1)).await.unwrap().unwrap();
    assert_eq!(failed.activation_status, atlas::domain::ActivationStatus::Failed);
    bot.panel.failing.store(false, Ordering::Relaxed);
    bot.clock.advance(Duration::from_secs(30 * 24 * 3600));
    let renewed = renewal::tick(&bot.app, Lease::None, Duration::from_secs(24 * 3600), 10).await;
    assert_eq!(renewed.done, 1);
    assert_eq!(activation::tick(&bot.app, Lease::None, 10).await.done, 1, "the renewal brought it back");
}

#[tokio::test]
async fn a_notice_telegram_refused_to_send_now_goes_out_later() {
    let bot = BotHarness::new(&[]).await;
    bot.buy(1).await;
    bot.clock.advance(Duration::from_secs(30 * 24 * 3600 - 20 * 3600));
    let live = lease(&bot, true);
    let held = Lease::Held(&live, &*bot.clock);
    bot.messenger.slow_down.store(true, Ordering::Relaxed);
    let refused = notices::tick(&bot.app, held, false, &[72, 24, 3], 10).await;
    assert_eq!((refused.done, refused.failed), (0, 1));
    bot.messenger.slow_down.store(false, Ordering::Relaxed);
    assert_eq!(notices::tick(&bot.app, held, false, &[72, 24, 3], 10).await.done, 1, "the claim was given back");
    assert_eq!(bot.messages(1).iter().filter(|m| m.text.contains("⏳")).count(), 1);
}

#[tokio::test]
async fn a_referral_reward_left_out_by_a_stopped_process_is_granted_by_the_watcher() {
    let bot = BotHarness::new(&[]).await;
    bot.fund(50, "1").await;
    bot.db.store.register_user(uid(1), Language::En, Some(uid(50)), None, bot.clock.now()).await.unwrap();
    let payable = crypto_purchase(&bot, 1).await;
    // The payment was counted, and the process stopped before rewarding the referrer.
    let Payable::Purchase(id) = payable else { unreachable!() };
    let payment = atlas::ports::store::ProviderPayment {
        provider: PaymentProviderKind::Crypto,
        payment_id: atlas::domain::ProviderPaymentId::parse("paid-1").unwrap(),
        amount: Money::parse("199").unwrap(),
    };
    bot.db.store.finalize_purchase(id, payment, bot.clock.now()).await.unwrap();
    let before = bot.balance(50).await;
    let live = lease(&bot, true);
    let held = Lease::Held(&live, &*bot.clock);
    payments::tick(&bot.app, held, &mut None, 100).await;
    assert_eq!(bot.balance(50).await - before, 1_990, "10% of 199 roubles");
    payments::tick(&bot.app, held, &mut None, 100).await;
    assert_eq!(bot.balance(50).await - before, 1_990, "once");
    assert_ledger_invariants(&bot.db).await.unwrap();
}
