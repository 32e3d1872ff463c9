//! Every Store operation on real PostgreSQL, each in a fresh database: what it does, and each
//! refusal with its typed error — and that a refusal writes nothing.

use atlas::domain::*;
use atlas::ports::store::*;
use atlas::ports::vpn::PanelKey;
use atlas_tests::*;
use chrono::Duration;

fn ttl(seconds: u64) -> std::time::Duration {
    std::time::Duration::from_secs(seconds)
}

fn ten() -> Percent {
    Percent::new(10).unwrap()
}

fn basic() -> TariffCode {
    TariffCode::parse("basic").unwrap()
}

fn purchase(user: UserId, promo: Option<&str>, key: Option<&str>) -> PurchaseRequest {
    PurchaseRequest {
        user,
        tariff: basic(),
        days: 30,
        promo: promo.map(|p| PromoCode::parse(p).unwrap()),
        idempotency_key: key.map(|k| IdempotencyKey::parse(k).unwrap()),
    }
}

/// Runs a refused operation and checks that no table changed.
macro_rules! refused_without_writes {
    ($db:expr, $op:expr, $pattern:pat) => {{
        let before = snapshot($db).await;
        let result = $op.await;
        assert!(matches!(result, Err($pattern)), "expected {}, got {:?}", stringify!($pattern), result);
        assert_eq!(before, snapshot($db).await, "a refused operation wrote something");
    }};
}

/// One key per order, whatever the way to pay: the order is paid once, one way. A press of the
/// way chosen first answers with its purchase; another way is refused and writes nothing.
#[tokio::test]
async fn an_order_is_paid_one_way() {
    let db = TestDb::new().await;
    let s = &db.store;
    let user = user_with_balance(s, 1, "1000").await;
    let (crypto, stars) = (PaymentProviderKind::Crypto, PaymentProviderKind::Stars);
    // Paid from the balance: neither provider opens it again; the balance press replayed answers.
    let bought = s.purchase_from_balance(purchase(user, None, Some("order-0001")), t0()).await.unwrap();
    for provider in [crypto, stars] {
        refused_without_writes!(
            &db,
            s.create_pending_purchase(purchase(user, None, Some("order-0001")), provider, ttl(600), t0()),
            PurchaseError::PaidAnotherWay
        );
    }
    let again = s.purchase_from_balance(purchase(user, None, Some("order-0001")), t0()).await.unwrap();
    assert_eq!((again.applied, again.purchase_id), (Applied::Duplicate, bought.purchase_id));
    // Opened for crypto: Stars and the balance are refused; crypto again answers with it.
    let opened = s.create_pending_purchase(purchase(user, None, Some("order-0002")), crypto, ttl(600), t0()).await;
    let opened = opened.unwrap();
    refused_without_writes!(
        &db,
        s.create_pending_purchase(purchase(user, None, Some("order-0002")), stars, ttl(600), t0()),
        PurchaseError::PaidAnotherWay
    );
    refused_without_writes!(
        &db,
        s.purchase_from_balance(purchase(user, None, Some("order-0002")), t0()),
        PurchaseError::PaidAnotherWay
    );
    let again = s.create_pending_purchase(purchase(user, None, Some("order-0002")), crypto, ttl(600), t0()).await;
    assert_eq!(again.unwrap().purchase_id, opened.purchase_id);
    // Another user's order is not this user's, whichever way.
    let other = user_with_balance(s, 2, "1000").await;
    refused_without_writes!(
        &db,
        s.create_pending_purchase(purchase(other, None, Some("order-0002")), stars, ttl(600), t0()),
        PurchaseError::IdempotencyKeyReused
    );
    // A refused purchase leaves its order open: one the balance could not pay may be opened for
    // a provider.
    let poor = user_with_balance(s, 3, "10").await;
    refused_without_writes!(
        &db,
        s.purchase_from_balance(purchase(poor, None, Some("order-0003")), t0()),
        PurchaseError::InsufficientBalance
    );
    s.create_pending_purchase(purchase(poor, None, Some("order-0003")), crypto, ttl(600), t0()).await.unwrap();
    assert_ledger_invariants(&db).await.unwrap();
}

#[tokio::test]
async fn registration_keeps_the_first_referrer_and_refuses_forged_ones() {
    let db = TestDb::new().await;
    let s = &db.store;
    let referrer = user_with_balance(s, 10, "0").await;
    let user = s.register_user(uid(11), Language::Ru, Some(referrer), None, t0()).await.unwrap();
    assert_eq!(user.referrer, Some(referrer));
    assert_eq!(user.balance, Money::ZERO);
    // Registering again changes nothing, not even with another referrer.
    let again = s.register_user(uid(11), Language::En, Some(uid(12)), None, t0()).await.unwrap();
    assert_eq!(again, user);
    // Self-referral and an unknown referrer are dropped.
    assert_eq!(s.register_user(uid(13), Language::En, Some(uid(13)), None, t0()).await.unwrap().referrer, None);
    assert_eq!(s.register_user(uid(14), Language::En, Some(uid(999)), None, t0()).await.unwrap().referrer, None);
    assert_eq!(count(&db, "SELECT count(*) FROM referrals").await, 1);
    assert!(s.user(uid(15)).await.unwrap().is_none());
}

#[tokio::test]
async fn top_up_credits_each_provider_payment_once() {
    let db = TestDb::new().await;
    let s = &db.store;
    let user = user_with_balance(s, 1, "0").await;
    let first = s.top_up(user, crypto("pay-1", "250.50"), t0()).await.unwrap();
    assert_eq!((first.applied, first.balance), (Applied::Done, minor(25_050)));
    let again = s.top_up(user, crypto("pay-1", "250.50"), t0()).await.unwrap();
    assert_eq!(
        (again.applied, again.balance, again.payment_row_id),
        (Applied::Duplicate, minor(25_050), first.payment_row_id)
    );
    // The same id with another amount or for another user is not the same payment.
    refused_without_writes!(&db, s.top_up(user, crypto("pay-1", "999"), t0()), PaymentError::PaymentIdReused);
    let other = user_with_balance(s, 2, "0").await;
    refused_without_writes!(&db, s.top_up(other, crypto("pay-1", "250.50"), t0()), PaymentError::PaymentIdReused);
    refused_without_writes!(&db, s.top_up(uid(404), crypto("pay-2", "10"), t0()), PaymentError::UnknownUser);
    // Money a provider took is recorded even after an admin banned the user.
    sqlx::query("UPDATE users SET banned = TRUE WHERE telegram_id = 2").execute(db.pool()).await.unwrap();
    assert_eq!(s.top_up(other, crypto("pay-3", "5"), t0()).await.unwrap().balance, minor(500));
    assert_eq!(balance(&db, user).await, 25_050);
    assert_ledger_invariants(&db).await.unwrap();
}

#[tokio::test]
async fn admin_credit_and_debit_are_audited_and_never_overdraw() {
    let db = TestDb::new().await;
    let s = &db.store;
    let user = user_with_balance(s, 1, "100").await;
    let adjust = |direction, amount: &str| AdminAdjustment {
        admin: uid(7),
        user,
        amount: money(amount),
        direction,
        reason: "support ticket 42".into(),
        correlation_id: Some("upd-1".into()),
        idempotency_key: None,
    };
    let credit = s.admin_adjust(adjust(Direction::Credit, "50"), t0()).await.unwrap();
    assert_eq!(credit.balance, minor(15_000));
    let debit = s.admin_adjust(adjust(Direction::Debit, "149.99"), t0()).await.unwrap();
    assert_eq!(debit.balance, minor(1));
    refused_without_writes!(
        &db,
        s.admin_adjust(adjust(Direction::Debit, "0.02"), t0()),
        BalanceError::InsufficientBalance
    );
    let unknown = AdminAdjustment { user: uid(404), ..adjust(Direction::Credit, "1") };
    refused_without_writes!(&db, s.admin_adjust(unknown, t0()), BalanceError::UnknownUser);
    let audit: Vec<(String, i64)> =
        sqlx::query_as("SELECT action, admin_id FROM admin_audit_log ORDER BY id").fetch_all(db.pool()).await.unwrap();
    assert_eq!(audit, vec![("admin_credit".into(), 7), ("admin_debit".into(), 7)]);
    assert_ledger_invariants(&db).await.unwrap();
}

#[tokio::test]
async fn purchase_from_balance_debits_extends_and_is_idempotent() {
    let db = TestDb::new().await;
    let s = &db.store;
    let user = user_with_balance(s, 1, "1000").await;
    let bought = s.purchase_from_balance(purchase(user, None, Some("callback:1")), t0()).await.unwrap();
    assert_eq!(bought.applied, Applied::Done);
    assert_eq!((bought.amount, bought.balance), (minor(19_900), minor(80_100)));
    assert_eq!(bought.expires_at, t0() + Duration::days(30));
    // A double tap replays the first purchase.
    let replay = s.purchase_from_balance(purchase(user, None, Some("callback:1")), t0()).await.unwrap();
    assert_eq!(
        (replay.applied, replay.purchase_id, replay.balance),
        (Applied::Duplicate, bought.purchase_id, minor(80_100))
    );
    // Buying again before expiry adds to the expiry, not to now: leftover days are kept.
    let later = s.purchase_from_balance(purchase(user, None, None), t0() + Duration::days(10)).await.unwrap();
    assert_eq!(later.expires_at, t0() + Duration::days(60));
    // After expiry the new period starts now.
    let much_later = t0() + Duration::days(100);
    let renewed = s.purchase_from_balance(purchase(user, None, None), much_later).await.unwrap();
    assert_eq!(renewed.expires_at, much_later + Duration::days(30));
    let sub = s.subscription(user).await.unwrap().unwrap();
    assert_eq!((sub.expires_at, sub.activation_status), (renewed.expires_at, ActivationStatus::Pending));
    assert_ledger_invariants(&db).await.unwrap();
}

#[tokio::test]
async fn purchase_refusals_write_nothing() {
    let db = TestDb::new().await;
    let s = &db.store;
    let poor = user_with_balance(s, 1, "10").await;
    refused_without_writes!(
        &db,
        s.purchase_from_balance(purchase(poor, None, Some("k-poor-1")), t0()),
        PurchaseError::InsufficientBalance
    );
    let rich = user_with_balance(s, 2, "1000").await;
    let unknown_tariff = PurchaseRequest { tariff: TariffCode::parse("gold").unwrap(), ..purchase(rich, None, None) };
    refused_without_writes!(&db, s.purchase_from_balance(unknown_tariff, t0()), PurchaseError::UnknownTariff);
    let unknown_period = PurchaseRequest { days: 31, ..purchase(rich, None, None) };
    refused_without_writes!(&db, s.purchase_from_balance(unknown_period, t0()), PurchaseError::UnknownTariff);
    refused_without_writes!(
        &db,
        s.purchase_from_balance(purchase(uid(404), None, None), t0()),
        PurchaseError::UnknownUser
    );
    // A key another user already used is refused, not replayed.
    s.purchase_from_balance(purchase(rich, None, Some("shared-key")), t0()).await.unwrap();
    let thief = user_with_balance(s, 3, "1000").await;
    refused_without_writes!(
        &db,
        s.purchase_from_balance(purchase(thief, None, Some("shared-key")), t0()),
        PurchaseError::IdempotencyKeyReused
    );
    // A key of a provider purchase is not a key of a balance purchase, and the other way round:
    // the key's order is paid another way.
    s.create_pending_purchase(purchase(rich, None, Some("invoice-key")), PaymentProviderKind::Crypto, ttl(600), t0())
        .await
        .unwrap();
    refused_without_writes!(
        &db,
        s.purchase_from_balance(purchase(rich, None, Some("invoice-key")), t0()),
        PurchaseError::PaidAnotherWay
    );
    refused_without_writes!(
        &db,
        s.create_pending_purchase(
            purchase(rich, None, Some("shared-key")),
            PaymentProviderKind::Crypto,
            ttl(600),
            t0()
        ),
        PurchaseError::PaidAnotherWay
    );
    sqlx::query("UPDATE users SET banned = TRUE WHERE telegram_id = 3").execute(db.pool()).await.unwrap();
    refused_without_writes!(&db, s.purchase_from_balance(purchase(thief, None, None), t0()), PurchaseError::UserBanned);
    // An inactive tariff cannot be bought.
    sqlx::query("UPDATE tariffs SET is_active = FALSE WHERE code = 'basic'").execute(db.pool()).await.unwrap();
    refused_without_writes!(
        &db,
        s.purchase_from_balance(purchase(rich, None, None), t0()),
        PurchaseError::UnknownTariff
    );
    assert_ledger_invariants(&db).await.unwrap();
}

#[tokio::test]
async fn promo_creation_refuses_duplicates_and_bad_limits() {
    let db = TestDb::new().await;
    let s = &db.store;
    let promo = |code: &str, percent: u8, max_uses: Option<u32>| NewPromo {
        code: PromoCode::parse(code).unwrap(),
        discount: Percent::new(percent).unwrap(),
        max_uses: max_uses.map(|m| std::num::NonZeroU32::new(m).unwrap()),
        expires_at: None,
        created_by: uid(7),
        correlation_id: None,
    };
    s.create_promo(promo("WINTER", 15, Some(100)), t0()).await.unwrap();
    refused_without_writes!(&db, s.create_promo(promo("winter", 20, None), t0()), PromoCreateError::AlreadyExists);
    refused_without_writes!(&db, s.create_promo(promo("ZERO", 0, None), t0()), PromoCreateError::InvalidDiscount);
    // Above 100% and zero uses cannot even be written down (Percent, NonZeroU32); more uses than
    // the column holds are refused.
    let huge = promo("HUGE", 10, Some(u32::MAX));
    refused_without_writes!(&db, s.create_promo(huge, t0()), PromoCreateError::InvalidMaxUses);
    let quote = s.validate_promo(uid(1), &PromoCode::parse("WINTER").unwrap(), t0()).await.unwrap();
    assert_eq!(quote.discount, Percent::new(15).unwrap());
}

#[tokio::test]
async fn promo_validation_names_every_refusal() {
    let db = TestDb::new().await;
    let s = &db.store;
    let user = user_with_balance(s, 1, "1000").await;
    create_promo(&db, "SALE10", 10, Some(5), None).await;
    create_promo(&db, "OLD", 10, None, Some(t0() - Duration::seconds(1))).await;
    create_promo(&db, "GONE", 10, Some(1), None).await;
    create_promo(&db, "OFF", 10, None, None).await;
    sqlx::query("UPDATE promo_codes SET is_active = FALSE WHERE code = 'OFF'").execute(db.pool()).await.unwrap();
    sqlx::query("UPDATE promo_codes SET used_count = 1 WHERE code = 'GONE'").execute(db.pool()).await.unwrap();
    let check = |code: &str| {
        let code = PromoCode::parse(code).unwrap();
        async move { s.validate_promo(user, &code, t0()).await }
    };
    assert_eq!(check("sale10").await.unwrap().discount, Percent::new(10).unwrap());
    assert!(matches!(check("NOPE").await, Err(PromoError::Refused(PromoRefusal::NotFound))));
    assert!(matches!(check("OLD").await, Err(PromoError::Refused(PromoRefusal::Expired))));
    assert!(matches!(check("GONE").await, Err(PromoError::Refused(PromoRefusal::Exhausted))));
    assert!(matches!(check("OFF").await, Err(PromoError::Refused(PromoRefusal::Disabled))));
    s.purchase_from_balance(purchase(user, Some("SALE10"), None), t0()).await.unwrap();
    assert!(matches!(check("SALE10").await, Err(PromoError::Refused(PromoRefusal::AlreadyUsedByUser))));
}

#[tokio::test]
async fn promo_consumption_discounts_once_per_user_within_max_uses() {
    let db = TestDb::new().await;
    let s = &db.store;
    create_promo(&db, "HALF", 50, Some(2), None).await;
    create_promo(&db, "FREE", 100, None, None).await;
    let a = user_with_balance(s, 1, "1000").await;
    let b = user_with_balance(s, 2, "1000").await;
    let c = user_with_balance(s, 3, "1000").await;
    let bought = s.purchase_from_balance(purchase(a, Some("half"), None), t0()).await.unwrap();
    assert_eq!(bought.amount, minor(9_950));
    refused_without_writes!(
        &db,
        s.purchase_from_balance(purchase(a, Some("HALF"), None), t0()),
        PurchaseError::Promo(PromoRefusal::AlreadyUsedByUser)
    );
    s.purchase_from_balance(purchase(b, Some("HALF"), None), t0()).await.unwrap();
    refused_without_writes!(
        &db,
        s.purchase_from_balance(purchase(c, Some("HALF"), None), t0()),
        PurchaseError::Promo(PromoRefusal::Exhausted)
    );
    refused_without_writes!(
        &db,
        s.purchase_from_balance(purchase(c, Some("NOPE"), None), t0()),
        PurchaseError::Promo(PromoRefusal::NotFound)
    );
    // A promo is not consumed when the purchase fails for another reason.
    create_promo(&db, "QUARTER", 25, None, None).await;
    let poor = user_with_balance(s, 4, "1").await;
    refused_without_writes!(
        &db,
        s.purchase_from_balance(purchase(poor, Some("QUARTER"), None), t0()),
        PurchaseError::InsufficientBalance
    );
    // A 100% code makes a free purchase with no ledger entry.
    let free = s.purchase_from_balance(purchase(c, Some("FREE"), None), t0()).await.unwrap();
    assert_eq!((free.amount, free.balance), (Money::ZERO, minor(100_000)));
    assert_eq!(count(&db, "SELECT used_count::BIGINT FROM promo_codes WHERE code = 'HALF'").await, 2);
    assert_ledger_invariants(&db).await.unwrap();
}

#[tokio::test]
async fn provider_purchase_is_finalized_once_and_late_money_is_kept() {
    let db = TestDb::new().await;
    let s = &db.store;
    let user = user_with_balance(s, 1, "0").await;
    create_promo(&db, "TEN", 10, Some(1), None).await;
    let pending = s
        .create_pending_purchase(
            purchase(user, Some("TEN"), Some("invoice:1")),
            PaymentProviderKind::Crypto,
            ttl(3600),
            t0(),
        )
        .await
        .unwrap();
    assert_eq!((pending.applied, pending.amount), (Applied::Done, minor(17_910)));
    assert_eq!(pending.expires_at, t0() + Duration::hours(1));
    // A 100% code leaves nothing for a provider to take: refused, nothing reserved.
    create_promo(&db, "GIFT", 100, Some(1), None).await;
    refused_without_writes!(
        &db,
        s.create_pending_purchase(purchase(user, Some("GIFT"), None), PaymentProviderKind::Stars, ttl(600), t0()),
        PurchaseError::NothingToPay
    );
    let replay = s
        .create_pending_purchase(
            purchase(user, Some("TEN"), Some("invoice:1")),
            PaymentProviderKind::Crypto,
            ttl(3600),
            t0(),
        )
        .await
        .unwrap();
    assert_eq!((replay.applied, replay.purchase_id), (Applied::Duplicate, pending.purchase_id));

    let id = pending.purchase_id;
    refused_without_writes!(&db, s.finalize_purchase(id, crypto("tx-1", "100"), t0()), PaymentError::AmountMismatch);
    let stars = ProviderPayment { provider: PaymentProviderKind::Stars, ..crypto("tx-1", "179.10") };
    refused_without_writes!(&db, s.finalize_purchase(id, stars, t0()), PaymentError::MethodMismatch);
    refused_without_writes!(
        &db,
        s.finalize_purchase(PurchaseId::new(404).unwrap(), crypto("tx-1", "179.10"), t0()),
        PaymentError::UnknownPurchase
    );

    let done = s.finalize_purchase(id, crypto("tx-1", "179.10"), t0()).await.unwrap();
    assert_eq!(done, FinalizeOutcome::Finalized { expires_at: t0() + Duration::days(30) });
    assert_eq!(
        s.finalize_purchase(id, crypto("tx-1", "179.10"), t0()).await.unwrap(),
        FinalizeOutcome::Duplicate { to_balance: false }
    );
    // A second, different payment for a paid purchase is money received: it goes to the balance.
    assert_eq!(
        s.finalize_purchase(id, crypto("tx-2", "179.10"), t0()).await.unwrap(),
        FinalizeOutcome::CreditedToBalance
    );
    assert_eq!(balance(&db, user).await, 17_910);
    // The same provider id for another purchase is refused.
    let other = s
        .create_pending_purchase(purchase(user, None, None), PaymentProviderKind::Crypto, ttl(3600), t0())
        .await
        .unwrap();
    refused_without_writes!(
        &db,
        s.finalize_purchase(other.purchase_id, crypto("tx-1", "199"), t0()),
        PaymentError::PaymentIdReused
    );
    assert_ledger_invariants(&db).await.unwrap();
}

#[tokio::test]
async fn closing_a_pending_purchase_gives_back_its_promo_use() {
    let db = TestDb::new().await;
    let s = &db.store;
    let user = user_with_balance(s, 1, "0").await;
    create_promo(&db, "ONCE", 20, Some(1), None).await;
    let pending = s
        .create_pending_purchase(purchase(user, Some("ONCE"), None), PaymentProviderKind::Stars, ttl(600), t0())
        .await
        .unwrap();
    assert_eq!(count(&db, "SELECT used_count::BIGINT FROM promo_codes").await, 1);
    s.close_pending_purchase(pending.purchase_id, Closure::Expired).await.unwrap();
    assert_eq!(count(&db, "SELECT used_count::BIGINT FROM promo_codes").await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM promo_redemptions").await, 0);
    refused_without_writes!(
        &db,
        s.close_pending_purchase(pending.purchase_id, Closure::Cancelled),
        CloseError::NotPending(_)
    );
    refused_without_writes!(
        &db,
        s.close_pending_purchase(PurchaseId::new(404).unwrap(), Closure::Cancelled),
        CloseError::UnknownPurchase
    );
    // Paid after it expired: the money is kept on the balance.
    let late = ProviderPayment { provider: PaymentProviderKind::Stars, ..crypto("late-1", "159.20") };
    assert_eq!(s.finalize_purchase(pending.purchase_id, late, t0()).await.unwrap(), FinalizeOutcome::CreditedToBalance);
    assert_eq!(balance(&db, user).await, 15_920);
    assert!(s.subscription(user).await.unwrap().is_none());
    assert_ledger_invariants(&db).await.unwrap();
}

#[tokio::test]
async fn referral_reward_is_granted_once_per_purchase() {
    let db = TestDb::new().await;
    let s = &db.store;
    let referrer = user_with_balance(s, 1, "0").await;
    s.register_user(uid(2), Language::En, Some(referrer), None, t0()).await.unwrap();
    let buyer = uid(2);
    s.top_up(buyer, crypto("b-1", "1000"), t0()).await.unwrap();
    let bought = s.purchase_from_balance(purchase(buyer, None, None), t0()).await.unwrap();
    let granted = s.grant_referral_reward(bought.purchase_id, ten(), t0()).await.unwrap();
    assert_eq!(granted, ReferralOutcome::Granted { referrer, amount: minor(1_990) });
    assert_eq!(s.grant_referral_reward(bought.purchase_id, ten(), t0()).await.unwrap(), ReferralOutcome::Duplicate);
    assert_eq!(balance(&db, referrer).await, 1_990);
    // No referrer, unknown purchase, unpaid purchase.
    let own = s.purchase_from_balance(purchase(referrer, None, None), t0()).await;
    assert!(matches!(own, Err(PurchaseError::InsufficientBalance)));
    let lonely = user_with_balance(s, 3, "500").await;
    let lonely_buy = s.purchase_from_balance(purchase(lonely, None, None), t0()).await.unwrap();
    assert_eq!(
        s.grant_referral_reward(lonely_buy.purchase_id, ten(), t0()).await.unwrap(),
        ReferralOutcome::NoReferrer
    );
    refused_without_writes!(
        &db,
        s.grant_referral_reward(PurchaseId::new(404).unwrap(), ten(), t0()),
        ReferralError::UnknownPurchase
    );
    let unpaid = s
        .create_pending_purchase(purchase(buyer, None, None), PaymentProviderKind::Crypto, ttl(600), t0())
        .await
        .unwrap();
    refused_without_writes!(
        &db,
        s.grant_referral_reward(unpaid.purchase_id, ten(), t0()),
        ReferralError::PurchaseNotPaid
    );
    assert_ledger_invariants(&db).await.unwrap();
}

#[tokio::test]
async fn withdrawal_holds_the_amount_and_is_decided_once() {
    let db = TestDb::new().await;
    let s = &db.store;
    let user = user_with_balance(s, 1, "1000").await;
    let card = || Requisites::parse("4276 0000 1111 2222").unwrap();
    let minimum = money("100");
    let created = s.create_withdrawal(user, money("600"), card(), minimum, None, t0()).await.unwrap();
    assert_eq!(created.balance, minor(40_000));
    // The held amount cannot be spent or withdrawn again.
    refused_without_writes!(
        &db,
        s.create_withdrawal(user, money("400.01"), card(), minimum, None, t0()),
        WithdrawalError::InsufficientBalance
    );
    refused_without_writes!(
        &db,
        s.create_withdrawal(user, money("99.99"), card(), minimum, None, t0()),
        WithdrawalError::BelowMinimum
    );
    refused_without_writes!(
        &db,
        s.create_withdrawal(uid(404), money("100"), card(), minimum, None, t0()),
        WithdrawalError::UnknownUser
    );

    let decide = |withdrawal, approve: bool| WithdrawalDecision {
        withdrawal,
        admin: uid(7),
        verdict: if approve { Verdict::Approve } else { Verdict::Reject },
        reason: (!approve).then(|| "wrong card".to_owned()),
        correlation_id: None,
        idempotency_key: None,
    };
    let approved = s.decide_withdrawal(decide(created.withdrawal, true), t0()).await.unwrap();
    assert_eq!((approved.status, approved.amount), (WithdrawalStatus::Approved, minor(60_000)));
    refused_without_writes!(
        &db,
        s.decide_withdrawal(decide(created.withdrawal, false), t0()),
        WithdrawalError::NotPending(WithdrawalStatus::Approved)
    );
    refused_without_writes!(
        &db,
        s.decide_withdrawal(decide(WithdrawalId::new(404).unwrap(), true), t0()),
        WithdrawalError::UnknownWithdrawal
    );

    let second = s.create_withdrawal(user, money("400"), card(), minimum, None, t0()).await.unwrap();
    assert_eq!(second.balance, Money::ZERO);
    let rejected = s.decide_withdrawal(decide(second.withdrawal, false), t0()).await.unwrap();
    assert_eq!(rejected.status, WithdrawalStatus::Rejected);
    assert_eq!(balance(&db, user).await, 40_000);
    refused_without_writes!(
        &db,
        s.decide_withdrawal(decide(second.withdrawal, true), t0()),
        WithdrawalError::NotPending(WithdrawalStatus::Rejected)
    );
    assert_eq!(count(&db, "SELECT count(*) FROM admin_audit_log").await, 2);
    assert_ledger_invariants(&db).await.unwrap();
}

#[tokio::test]
async fn auto_renewal_charges_each_period_once() {
    let db = TestDb::new().await;
    let s = &db.store;
    let rich = user_with_balance(s, 1, "1000").await;
    let poor = user_with_balance(s, 2, "200").await;
    for user in [rich, poor] {
        s.purchase_from_balance(purchase(user, None, None), t0()).await.unwrap();
        assert!(s.set_auto_renew(user, true, t0()).await.unwrap());
    }
    assert!(!s.set_auto_renew(uid(404), true, t0()).await.unwrap());
    let day = std::time::Duration::from_secs(86_400);
    // Nothing is due two days before expiry with a one-day horizon.
    assert_eq!(s.auto_renew_next(t0() + Duration::days(28), day).await.unwrap(), None);
    let at = t0() + Duration::days(29) + Duration::hours(1);
    let mut outcomes = Vec::new();
    while let Some(outcome) = s.auto_renew_next(at, day).await.unwrap() {
        outcomes.push(outcome);
        assert!(outcomes.len() <= 2, "a period was claimed twice: {outcomes:?}");
    }
    let sub_rich = s.subscription(rich).await.unwrap().unwrap();
    let sub_poor = s.subscription(poor).await.unwrap().unwrap();
    assert!(
        outcomes.contains(&RenewalOutcome::Renewed {
            subscription: sub_rich.id,
            user: rich,
            amount: minor(19_900),
            expires_at: t0() + Duration::days(60),
        }),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&RenewalOutcome::InsufficientFunds { subscription: sub_poor.id, user: poor }),
        "{outcomes:?}"
    );
    assert_eq!(sub_rich.last_auto_renewal_at, Some(at));
    assert_eq!(sub_poor.expires_at, t0() + Duration::days(30));
    assert_eq!(balance(&db, rich).await, 100_000 - 2 * 19_900);
    // The next period of the rich user is a new claim.
    assert!(matches!(
        s.auto_renew_next(t0() + Duration::days(59) + Duration::hours(1), day).await.unwrap(),
        Some(RenewalOutcome::Renewed { .. })
    ));
    // A switched-off tariff is not renewed.
    sqlx::query("UPDATE tariffs SET is_active = FALSE").execute(db.pool()).await.unwrap();
    assert!(matches!(
        s.auto_renew_next(t0() + Duration::days(89) + Duration::hours(1), day).await.unwrap(),
        Some(RenewalOutcome::TariffUnavailable { .. })
    ));
    assert_ledger_invariants(&db).await.unwrap();
}

#[tokio::test]
async fn trial_is_granted_once_and_not_to_subscribers() {
    let db = TestDb::new().await;
    let s = &db.store;
    let user = user_with_balance(s, 1, "0").await;
    let trial = s.activate_trial(user, &basic(), 3, t0()).await.unwrap();
    assert!(trial.is_trial);
    assert_eq!(trial.expires_at, t0() + Duration::days(3));
    refused_without_writes!(&db, s.activate_trial(user, &basic(), 3, t0()), TrialError::AlreadyUsed);
    let subscriber = user_with_balance(s, 2, "500").await;
    s.purchase_from_balance(purchase(subscriber, None, None), t0()).await.unwrap();
    refused_without_writes!(&db, s.activate_trial(subscriber, &basic(), 3, t0()), TrialError::NotForSubscribers);
    refused_without_writes!(&db, s.activate_trial(uid(404), &basic(), 3, t0()), TrialError::UnknownUser);
    let fresh = user_with_balance(s, 3, "0").await;
    refused_without_writes!(
        &db,
        s.activate_trial(fresh, &TariffCode::parse("gold").unwrap(), 3, t0()),
        TrialError::UnknownTariff
    );
    // Buying after a trial turns it into a paid subscription that keeps the trial's days.
    s.top_up(user, crypto("t-1", "500"), t0()).await.unwrap();
    let paid = s.purchase_from_balance(purchase(user, None, None), t0() + Duration::days(1)).await.unwrap();
    assert_eq!(paid.expires_at, t0() + Duration::days(33));
    assert!(!s.subscription(user).await.unwrap().unwrap().is_trial);
}

#[tokio::test]
async fn activation_attempts_are_bounded_and_finish_once() {
    let db = TestDb::new().await;
    let s = &db.store;
    let a = user_with_balance(s, 1, "500").await;
    let b = user_with_balance(s, 2, "500").await;
    s.purchase_from_balance(purchase(a, None, None), t0()).await.unwrap();
    s.purchase_from_balance(purchase(b, None, None), t0()).await.unwrap();
    let pending: Vec<SubscriptionId> =
        s.claim_activations(t0(), 10).await.unwrap().into_iter().map(|p| p.subscription).collect();
    assert_eq!(pending.len(), 2);
    // Taken for a round: another worker gets none of them until the claim runs out.
    assert!(s.claim_activations(t0(), 10).await.unwrap().is_empty());
    let claim = Duration::from_std(ACTIVATION_CLAIM).unwrap();
    assert_eq!(s.claim_activations(t0() + claim, 10).await.unwrap().len(), 2);
    let key = || {
        ActivationResult::Succeeded(PanelKey {
            panel_key_id: "activate-1-0".into(),
            access_uri: "vless://secret@host".into(),
        })
    };
    // An attempt of another generation (a late worker) writes nothing.
    assert_eq!(s.record_activation(pending[0], 1, key(), t0()).await.unwrap(), ActivationOutcome::NotPending);
    assert_eq!(s.record_activation(pending[0], 0, key(), t0()).await.unwrap(), ActivationOutcome::Activated);
    assert_eq!(s.record_activation(pending[0], 0, key(), t0()).await.unwrap(), ActivationOutcome::NotPending);
    let fail = || ActivationResult::Failed { error: "panel timeout".into() };
    let mut at = t0();
    for attempt in 1..ACTIVATION_ATTEMPTS_MAX {
        assert_eq!(
            s.record_activation(pending[1], 0, fail(), at).await.unwrap(),
            ActivationOutcome::WillRetry { attempts: attempt }
        );
        // A failed attempt waits out its backoff before the next.
        let backoff = Duration::from_std(activation_backoff(attempt)).unwrap();
        let b_sub = pending[1];
        let claims = |when| async move {
            s.claim_activations(when, 10).await.unwrap().iter().filter(|p| p.subscription == b_sub).count()
        };
        assert_eq!(claims(at + backoff - Duration::seconds(1)).await, 0, "attempt {attempt}");
        at += backoff;
        assert_eq!(claims(at).await, 1, "attempt {attempt}");
    }
    assert_eq!(s.record_activation(pending[1], 0, fail(), at).await.unwrap(), ActivationOutcome::GaveUp);
    assert_eq!(s.record_activation(pending[1], 0, fail(), at).await.unwrap(), ActivationOutcome::NotPending);
    assert_eq!(s.subscription(b).await.unwrap().unwrap().activation_status, ActivationStatus::Failed);
    assert!(s.claim_activations(at + Duration::days(1), 10).await.unwrap().is_empty());
    // Buying again gives a failed activation a fresh set of attempts, at once, under the same id.
    s.purchase_from_balance(purchase(b, None, None), t0()).await.unwrap();
    let again = s.claim_activations(t0(), 10).await.unwrap();
    assert_eq!(again.iter().map(|p| p.subscription).collect::<Vec<_>>(), vec![pending[1]]);
    assert_eq!(again[0].label, KeyLabel::Activation { subscription: pending[1], generation: 0 });
    // A subscription that has ended gets no key.
    assert!(s.claim_activations(t0() + Duration::days(400), 10).await.unwrap().is_empty());
    assert_eq!(count(&db, "SELECT count(*) FROM vpn_keys WHERE status = 'active'").await, 1);
}

/// The subscription of a user who bought a period from the balance, to reissue keys for.
async fn reissuable(db: &TestDb) -> SubscriptionId {
    let user = user_with_balance(&db.store, 1, "500").await;
    db.store.purchase_from_balance(purchase(user, None, None), t0()).await.unwrap();
    db.store.subscription(user).await.unwrap().unwrap().id
}

/// The panel key `k<n>`.
fn key(n: u32) -> PanelKey {
    PanelKey { panel_key_id: format!("k{n}"), access_uri: format!("vless://{n}@host") }
}

/// A request that installed a reissued key is answered with the subscription's key (that one, or
/// the one that replaced it since): delivered again, it makes no other. Another request finds
/// none.
#[tokio::test]
async fn a_request_that_installed_a_key_is_answered_with_the_subscriptions_key() {
    let db = TestDb::new().await;
    let s = &db.store;
    let sub = reissuable(&db).await;
    assert_eq!(s.reissued_for(sub, "upd:1:reissue").await.unwrap(), None);
    s.claim_key_fence(sub, 5, t0()).await.unwrap();
    s.install_reissued_key(sub, 5, key(5), Some("upd:1:reissue"), t0()).await.unwrap();
    assert_eq!(s.reissued_for(sub, "upd:1:reissue").await.unwrap(), Some(key(5)));
    assert_eq!(s.reissued_for(sub, "upd:2:reissue").await.unwrap(), None);
    s.claim_key_fence(sub, 7, t0()).await.unwrap();
    s.install_reissued_key(sub, 7, key(7), Some("upd:2:reissue"), t0()).await.unwrap();
    assert_eq!(s.reissued_for(sub, "upd:1:reissue").await.unwrap(), Some(key(7)), "replaced since");
    assert_eq!(s.reissued_for(sub, "upd:2:reissue").await.unwrap(), Some(key(7)));
    assert_eq!(s.reissued_for(sub, "upd:3:reissue").await.unwrap(), None);
    // A key installed for no request (the last release's instances) answers none.
    s.claim_key_fence(sub, 9, t0()).await.unwrap();
    s.install_reissued_key(sub, 9, key(9), None, t0()).await.unwrap();
    assert_eq!(s.reissued_for(sub, "upd:2:reissue").await.unwrap(), Some(key(9)));
    assert_eq!(s.reissued_for(sub, "upd:9:reissue").await.unwrap(), None);
    let five_args = "SELECT key_id FROM atlas_install_reissued_key($1, 11, 'k11', 'vless://11@host', now())";
    sqlx::query(five_args).bind(sub.get()).execute(db.pool()).await.expect("the last release's call still resolves");
}

#[tokio::test]
async fn reissued_keys_are_fenced_by_token() {
    let db = TestDb::new().await;
    let s = &db.store;
    let sub = reissuable(&db).await;
    // A reissue claims its token as soon as it holds the lock, then installs under it.
    s.claim_key_fence(sub, 5, t0()).await.unwrap();
    let first = s.install_reissued_key(sub, 5, key(5), None, t0()).await.unwrap();
    assert_eq!(first.replaced_panel_key_id, None);
    // A newer holder claims 7 while the holder of 6 (whose lock expired) is still at the panel.
    s.claim_key_fence(sub, 7, t0()).await.unwrap();
    refused_without_writes!(
        &db,
        s.install_reissued_key(sub, 6, key(6), None, t0()),
        KeyError::StaleFencingToken { current: 7 }
    );
    refused_without_writes!(&db, s.claim_key_fence(sub, 6, t0()), KeyError::StaleFencingToken { current: 7 });
    refused_without_writes!(&db, s.claim_key_fence(sub, 7, t0()), KeyError::StaleFencingToken { current: 7 });
    let second = s.install_reissued_key(sub, 7, key(7), None, t0()).await.unwrap();
    assert_eq!(second.replaced_panel_key_id.as_deref(), Some("k5"));
    refused_without_writes!(
        &db,
        s.install_reissued_key(SubscriptionId::new(404).unwrap(), 9, key(9), None, t0()),
        KeyError::UnknownSubscription
    );
    refused_without_writes!(
        &db,
        s.claim_key_fence(SubscriptionId::new(404).unwrap(), 9, t0()),
        KeyError::UnknownSubscription
    );
    let active: Vec<String> = sqlx::query_scalar("SELECT panel_key_id FROM vpn_keys WHERE status = 'active'")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(active, vec!["k7".to_owned()]);
}

#[tokio::test]
async fn notices_are_claimed_once() {
    let db = TestDb::new().await;
    let s = &db.store;
    let user = user_with_balance(s, 1, "500").await;
    s.purchase_from_balance(purchase(user, None, None), t0()).await.unwrap();
    let sub = s.subscription(user).await.unwrap().unwrap().id;
    let end = t0() + Duration::days(30);
    let before = |hours| NoticeThreshold::Before { hours, period_end: end };
    assert!(s.claim_notice(sub, NoticeKind::ExpiryReminder, before(72), t0()).await.unwrap());
    assert!(!s.claim_notice(sub, NoticeKind::ExpiryReminder, before(72), t0()).await.unwrap());
    assert!(s.claim_notice(sub, NoticeKind::ExpiryReminder, before(24), t0()).await.unwrap());
    assert!(s.claim_notice(sub, NoticeKind::TrialNotice, before(72), t0()).await.unwrap());
    // The next period's reminders are new ones.
    let next = NoticeThreshold::Before { hours: 72, period_end: end + Duration::days(30) };
    assert!(s.claim_notice(sub, NoticeKind::ExpiryReminder, next, t0()).await.unwrap());
}

#[tokio::test]
async fn balances_change_only_through_the_append_only_ledger() {
    let db = TestDb::new().await;
    let user = user_with_balance(&db.store, 1, "10").await;
    let direct = sqlx::query("UPDATE users SET balance = 1000000 WHERE telegram_id = 1").execute(db.pool()).await;
    assert!(direct.unwrap_err().to_string().contains("BALANCE_WRITE_OUTSIDE_LEDGER"));
    let rewrite = sqlx::query("UPDATE balance_ledger SET amount = 999999").execute(db.pool()).await;
    assert!(rewrite.unwrap_err().to_string().contains("APPEND_ONLY"));
    let erase = sqlx::query("DELETE FROM balance_ledger").execute(db.pool()).await;
    assert!(erase.unwrap_err().to_string().contains("APPEND_ONLY"));
    // Other columns of users stay writable.
    sqlx::query("UPDATE users SET language = 'ru' WHERE telegram_id = 1").execute(db.pool()).await.unwrap();
    assert_eq!(balance(&db, user).await, 1_000);
}

/// A statement stuck behind a lock is cancelled by the server at its statement timeout and
/// reported as such (not as a pool timeout), and nothing is written.
#[tokio::test]
async fn a_hung_statement_is_reported_as_a_statement_timeout() {
    let db = TestDb::new().await;
    let user = user_with_balance(&db.store, 1, "1000").await;
    let url = format!("{}/{}", server_url(), db.name());
    let impatient = atlas::store::PgStore::connect_with(&url, 2, std::time::Duration::from_millis(300)).await.unwrap();
    // Another session holds the user's advisory lock, as a long purchase would.
    let mut holder = db.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(user.get()).execute(&mut *holder).await.unwrap();
    let before = snapshot(&db).await;
    let err = impatient.purchase_from_balance(purchase(user, None, Some("hung-key-1")), t0()).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(matches!(err, PurchaseError::Unexpected(_)), "{text}");
    assert!(text.contains("statement timeout"), "{text}");
    assert!(!text.contains("PoolTimedOut"), "{text}");
    holder.rollback().await.unwrap();
    assert_eq!(before, snapshot(&db).await, "a cancelled statement wrote something");
}

fn idem(text: &str) -> Option<IdempotencyKey> {
    IdempotencyKey::parse(text)
}

/// Every money operation a user or admin triggers carries the update's key: the same update
/// handled twice moves money once, and is told what the first one did.
#[tokio::test]
async fn replayed_keys_move_money_once() {
    let db = TestDb::new().await;
    let s = &db.store;
    let user = user_with_balance(s, 1, "1000").await;
    let card = || Requisites::parse("4276 0000 1111 2222").unwrap();
    let minimum = money("100");
    let first = s.create_withdrawal(user, money("300"), card(), minimum, idem("upd:10:withdraw"), t0()).await.unwrap();
    let again = s.create_withdrawal(user, money("300"), card(), minimum, idem("upd:10:withdraw"), t0()).await.unwrap();
    assert_eq!((first.applied, again.applied), (Applied::Done, Applied::Duplicate));
    assert_eq!((again.withdrawal, again.balance), (first.withdrawal, minor(70_000)));
    refused_without_writes!(
        &db,
        s.create_withdrawal(user, money("200"), card(), minimum, idem("upd:10:withdraw"), t0()),
        WithdrawalError::IdempotencyKeyReused
    );
    let decide = |key: &str, verdict| WithdrawalDecision {
        withdrawal: first.withdrawal,
        admin: uid(7),
        verdict,
        reason: None,
        correlation_id: Some("upd:11".into()),
        idempotency_key: idem(key),
    };
    let decided = s.decide_withdrawal(decide("upd:11:decide", Verdict::Reject), t0()).await.unwrap();
    let replay = s.decide_withdrawal(decide("upd:11:decide", Verdict::Reject), t0()).await.unwrap();
    assert_eq!((decided.applied, replay.applied), (Applied::Done, Applied::Duplicate));
    assert_eq!(replay.status, WithdrawalStatus::Rejected);
    // Another admin's decision on the decided request is told it was decided.
    refused_without_writes!(
        &db,
        s.decide_withdrawal(decide("upd:12:decide", Verdict::Approve), t0()),
        WithdrawalError::NotPending(WithdrawalStatus::Rejected)
    );
    assert_eq!(balance(&db, user).await, 100_000);
    let credit = |key: &str, amount: &str| AdminAdjustment {
        admin: uid(7),
        user,
        amount: money(amount),
        direction: Direction::Credit,
        reason: "bonus".into(),
        correlation_id: None,
        idempotency_key: idem(key),
    };
    assert_eq!(s.admin_adjust(credit("upd:13:adjust", "5"), t0()).await.unwrap().applied, Applied::Done);
    let again = s.admin_adjust(credit("upd:13:adjust", "5"), t0()).await.unwrap();
    assert_eq!((again.applied, again.balance), (Applied::Duplicate, minor(100_500)));
    refused_without_writes!(
        &db,
        s.admin_adjust(credit("upd:13:adjust", "6"), t0()),
        BalanceError::IdempotencyKeyReused
    );
    assert_ledger_invariants(&db).await.unwrap();
}

/// A top-up opened by the user is credited once per provider payment, even after it was
/// cancelled; its amount and method must match.
#[tokio::test]
async fn a_pending_top_up_is_credited_once_per_payment() {
    let db = TestDb::new().await;
    let s = &db.store;
    let user = user_with_balance(s, 1, "0").await;
    let ttl = ttl(600);
    let opened =
        s.create_topup(user, money("250"), PaymentProviderKind::Crypto, idem("upd:1:topup"), ttl, t0()).await.unwrap();
    let replay =
        s.create_topup(user, money("250"), PaymentProviderKind::Crypto, idem("upd:1:topup"), ttl, t0()).await.unwrap();
    assert_eq!((replay.applied, replay.topup), (Applied::Duplicate, opened.topup));
    let invoice = |id: &str, url: &str| Invoice { invoice_id: id.to_owned(), pay_url: url.to_owned() };
    s.attach_invoice(Payable::TopUp(opened.topup), &invoice("inv-1", "https://pay/1")).await.unwrap();
    s.attach_invoice(Payable::TopUp(opened.topup), &invoice("inv-1", "https://pay/1")).await.unwrap();
    for other in [invoice("inv-2", "https://pay/2"), invoice("inv-1", "https://pay/other")] {
        assert!(matches!(
            s.attach_invoice(Payable::TopUp(opened.topup), &other).await,
            Err(InvoiceError::AlreadyAttached)
        ));
    }
    refused_without_writes!(
        &db,
        s.finalize_topup(opened.topup, crypto("c-1", "249"), t0()),
        PaymentError::AmountMismatch
    );
    let paid = s.finalize_topup(opened.topup, crypto("c-1", "250"), t0()).await.unwrap();
    let again = s.finalize_topup(opened.topup, crypto("c-1", "250"), t0()).await.unwrap();
    assert_eq!((paid.applied, again.applied, again.balance), (Applied::Done, Applied::Duplicate, minor(25_000)));
    let info = s.topup(opened.topup).await.unwrap().unwrap();
    assert_eq!((info.status, info.invoice), (PurchaseStatus::Paid, Some(invoice("inv-1", "https://pay/1"))));
    refused_without_writes!(
        &db,
        s.close_topup(opened.topup, Closure::Cancelled),
        CloseError::NotPending(PurchaseStatus::Paid)
    );
    let other = s.create_topup(user, money("10"), PaymentProviderKind::Stars, None, ttl, t0()).await.unwrap();
    s.close_topup(other.topup, Closure::Cancelled).await.unwrap();
    // Money that arrives for a cancelled top-up is still the user's.
    let stars = ProviderPayment {
        provider: PaymentProviderKind::Stars,
        payment_id: ProviderPaymentId::parse("charge-1").unwrap(),
        amount: money("10"),
    };
    s.finalize_topup(other.topup, stars, t0()).await.unwrap();
    assert_eq!(balance(&db, user).await, 26_000);
    assert!(matches!(
        s.finalize_topup(TopUpId::new(404).unwrap(), crypto("c-9", "1"), t0()).await,
        Err(PaymentError::UnknownTopUp)
    ));
    assert_ledger_invariants(&db).await.unwrap();
}

/// Admin tools: a user found by id or username (any case), every action in the audit log,
/// promo codes switched off once, broadcasts queued once per key.
#[tokio::test]
async fn admin_tools_find_log_disable_and_queue() {
    let db = TestDb::new().await;
    let s = &db.store;
    let user = user_with_balance(s, 5, "0").await;
    s.register_user(user, Language::Ru, None, Username::parse("Alice_5"), t0()).await.unwrap();
    let found = s.find_user(UserQuery::Username(Username::parse("@alice_5").unwrap())).await.unwrap().unwrap();
    assert_eq!((found.id, found.language), (user, Language::En), "the first language is kept");
    assert!(s.find_user(UserQuery::Id(uid(6))).await.unwrap().is_none());
    // The name changes hands: the user who shows up with it now is the one found, and the
    // former holder no longer carries it.
    s.register_user(uid(6), Language::En, None, Username::parse("ALICE_5"), t0()).await.unwrap();
    let found = s.find_user(UserQuery::Username(Username::parse("alice_5").unwrap())).await.unwrap().unwrap();
    assert_eq!(found.id, uid(6));
    assert_eq!(s.user(user).await.unwrap().unwrap().username, None);
    create_promo(&db, "SPRING", 10, None, None).await;
    let spring = PromoCode::parse("spring").unwrap();
    assert_eq!(s.disable_promo(&spring, uid(7), Some("upd:2".into()), t0()).await.unwrap(), Applied::Done);
    assert_eq!(s.disable_promo(&spring, uid(7), None, t0()).await.unwrap(), Applied::Duplicate);
    assert!(matches!(s.validate_promo(user, &spring, t0()).await, Err(PromoError::Refused(PromoRefusal::Disabled))));
    let unknown = PromoCode::parse("NOPE").unwrap();
    assert!(matches!(s.disable_promo(&unknown, uid(7), None, t0()).await, Err(PromoDisableError::NotFound)));
    let broadcast = |text: &str| NewBroadcast {
        admin: uid(7),
        text: text.to_owned(),
        correlation_id: Some("upd:3".into()),
        idempotency_key: idem("upd:3:broadcast"),
    };
    let queued = s.create_broadcast(broadcast("Hello"), t0()).await.unwrap();
    let again = s.create_broadcast(broadcast("Hello"), t0()).await.unwrap();
    assert_eq!((again.applied, again.broadcast), (Applied::Duplicate, queued.broadcast));
    assert!(matches!(s.create_broadcast(broadcast("Other"), t0()).await, Err(BroadcastError::IdempotencyKeyReused)));
    let action =
        AdminAction { admin: uid(7), action: "find_user", target: Some(user), correlation_id: Some("upd:4".into()) };
    s.record_admin_action(action, t0()).await.unwrap();
    let audit: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT action, correlation_id FROM admin_audit_log ORDER BY id")
            .fetch_all(db.pool())
            .await
            .unwrap();
    let actions: Vec<&str> = audit.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(actions, ["promo_create", "promo_disable", "broadcast", "find_user"]);
    assert_eq!(audit[2].1.as_deref(), Some("upd:3"), "the correlation id, not the idempotency key");
    assert_eq!(audit[3].1.as_deref(), Some("upd:4"));
    let stats = s.stats(t0()).await.unwrap();
    assert_eq!((stats.users, stats.pending_withdrawals), (2, 0));
}
