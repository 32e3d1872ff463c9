//! Concurrency stress on real PostgreSQL: well over 50 tasks at once on one hot user and one hot
//! promo code — top-ups delivered several times, purchases (some double-tapped), withdrawals,
//! promo consumption from many users, one payment callback delivered ten times, and referral
//! rewards requested three times each — then the audit's invariants on the final state.

use std::collections::BTreeMap;
use std::sync::Arc;

use atlas::domain::*;
use atlas::ports::store::*;
use atlas::store::PgStore;
use atlas_tests::*;
use tokio::sync::Barrier;

/// What each task saw; the assertions compare these with the final state.
#[derive(Debug)]
enum Seen {
    TopUp(Result<TopUpOutcome, String>),
    Purchase { buyer: UserId, key: Option<String>, promo: bool, result: Result<PurchaseOutcome, String> },
    Withdrawal(Result<WithdrawalCreated, String>),
    Finalize(Result<FinalizeOutcome, String>),
}

const HOT_USER: i64 = 1;
const REFERRER: i64 = 2;
const PROMO_USERS: i64 = 60;
const PROMO_MAX_USES: u32 = 20;
const TOPUP_IDS: usize = 20;
const TOPUP_DELIVERIES: usize = 3;
const PURCHASE_KEYS: usize = 20;
const WITHDRAWALS: usize = 15;
const CALLBACK_DELIVERIES: usize = 10;

/// One task of the stress: an operation on the shared store that reports what it saw.
type Job = Box<dyn FnOnce(Arc<PgStore>) -> futures::future::BoxFuture<'static, Seen> + Send>;

fn basic_request(user: UserId, promo: bool, key: Option<String>) -> PurchaseRequest {
    PurchaseRequest {
        user,
        tariff: TariffCode::parse("basic").unwrap(),
        days: 30,
        promo: promo.then(|| PromoCode::parse("HOT").unwrap()),
        idempotency_key: key.map(|k| IdempotencyKey::parse(&k).unwrap()),
    }
}

/// Expected refusals under contention are fine; anything else is a bug.
fn expected_refusal(err: &PurchaseError) -> bool {
    matches!(
        err,
        PurchaseError::InsufficientBalance
            | PurchaseError::Promo(PromoRefusal::Exhausted | PromoRefusal::AlreadyUsedByUser)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_money_operations_keep_every_invariant() {
    let db = TestDb::with_connections(20).await;
    let store: Arc<PgStore> = Arc::new(db.store.clone());
    let hot = uid(HOT_USER);
    let referrer = user_with_balance(&store, REFERRER, "0").await;
    store.register_user(hot, Language::Ru, Some(referrer), None, t0()).await.unwrap();
    store.top_up(hot, crypto("seed-hot", "5000"), t0()).await.unwrap();
    create_promo(&db, "HOT", 10, Some(PROMO_MAX_USES), None).await;
    for i in 0..PROMO_USERS {
        user_with_balance(&store, 100 + i, "500").await;
    }
    let pending = store
        .create_pending_purchase(
            basic_request(hot, false, None),
            PaymentProviderKind::Crypto,
            std::time::Duration::from_secs(3600),
            t0(),
        )
        .await
        .unwrap();

    // Every task waits at the barrier so they hit the database together.
    let mut jobs: Vec<Job> = Vec::new();
    for id in 0..TOPUP_IDS {
        for _ in 0..TOPUP_DELIVERIES {
            jobs.push(Box::new(move |s| {
                Box::pin(async move {
                    Seen::TopUp(
                        s.top_up(hot, crypto(&format!("topup-{id}"), "100"), t0()).await.map_err(|e| e.to_string()),
                    )
                })
            }));
        }
    }
    for k in 0..PURCHASE_KEYS {
        for _ in 0..2 {
            let key = format!("purchase-key-{k}");
            jobs.push(Box::new(move |s| {
                Box::pin(async move {
                    let result = s.purchase_from_balance(basic_request(hot, false, Some(key.clone())), t0()).await;
                    if let Err(e) = &result {
                        assert!(expected_refusal(e), "unexpected refusal: {e:?}");
                    }
                    Seen::Purchase {
                        buyer: hot,
                        key: Some(key),
                        promo: false,
                        result: result.map_err(|e| e.to_string()),
                    }
                })
            }));
        }
    }
    for _ in 0..WITHDRAWALS {
        jobs.push(Box::new(move |s| {
            Box::pin(async move {
                let card = Requisites::parse("4276 0000 1111 2222").unwrap();
                let result = s.create_withdrawal(hot, money("300"), card, money("100"), None, t0()).await;
                if let Err(e) = &result {
                    assert!(matches!(e, WithdrawalError::InsufficientBalance), "unexpected: {e:?}");
                }
                Seen::Withdrawal(result.map_err(|e| e.to_string()))
            })
        }));
    }
    for user in (100..100 + PROMO_USERS).map(uid).chain(std::iter::repeat_n(hot, 5)) {
        jobs.push(Box::new(move |s| {
            Box::pin(async move {
                let result = s.purchase_from_balance(basic_request(user, true, None), t0()).await;
                if let Err(e) = &result {
                    assert!(expected_refusal(e), "unexpected refusal: {e:?}");
                }
                Seen::Purchase { buyer: user, key: None, promo: true, result: result.map_err(|e| e.to_string()) }
            })
        }));
    }
    for _ in 0..CALLBACK_DELIVERIES {
        let amount = pending.amount.to_string();
        jobs.push(Box::new(move |s| {
            Box::pin(async move {
                Seen::Finalize(
                    s.finalize_purchase(pending.purchase_id, crypto("callback-1", &amount), t0())
                        .await
                        .map_err(|e| e.to_string()),
                )
            })
        }));
    }
    let tasks = jobs.len();
    assert!(tasks >= 50, "the stress needs at least 50 concurrent tasks, has {tasks}");
    let barrier = Arc::new(Barrier::new(tasks));
    let handles: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let (s, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                job(s).await
            })
        })
        .collect();
    let mut seen = Vec::new();
    for handle in handles {
        seen.push(handle.await.expect("a task panicked"));
    }

    // Top-ups: each payment id credited exactly once, whatever the deliveries.
    let topups: Vec<&TopUpOutcome> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::TopUp(r) => Some(r.as_ref().unwrap()),
            _ => None,
        })
        .collect();
    assert_eq!(topups.iter().filter(|t| t.applied == Applied::Done).count(), TOPUP_IDS);
    assert_eq!(topups.iter().filter(|t| t.applied == Applied::Duplicate).count(), TOPUP_IDS * (TOPUP_DELIVERIES - 1));

    // The callback: one finalization, the rest duplicates.
    let finals: Vec<&FinalizeOutcome> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Finalize(r) => Some(r.as_ref().unwrap()),
            _ => None,
        })
        .collect();
    assert_eq!(finals.iter().filter(|f| matches!(f, FinalizeOutcome::Finalized { .. })).count(), 1);
    assert_eq!(
        finals.iter().filter(|f| matches!(f, FinalizeOutcome::Duplicate { .. })).count(),
        CALLBACK_DELIVERIES - 1
    );

    // Double-tapped purchases: one purchase per key; the replay names the same purchase.
    let mut by_key: BTreeMap<&str, Vec<&PurchaseOutcome>> = BTreeMap::new();
    let mut promo_done = 0;
    let mut hot_spent = 0;
    let mut hot_purchases = Vec::new();
    for s in &seen {
        if let Seen::Purchase { buyer, key, promo, result: Ok(outcome) } = s {
            if let Some(key) = key {
                by_key.entry(key).or_default().push(outcome);
            }
            if outcome.applied == Applied::Done {
                promo_done += usize::from(*promo);
                if *buyer == hot {
                    hot_spent += outcome.amount.minor();
                    hot_purchases.push(outcome.purchase_id);
                }
            }
        }
    }
    for (key, outcomes) in &by_key {
        assert!(outcomes.iter().filter(|o| o.applied == Applied::Done).count() <= 1, "key {key} bought twice");
        let ids: Vec<PurchaseId> = outcomes.iter().map(|o| o.purchase_id).collect();
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "key {key} named different purchases: {ids:?}");
    }
    // The hot code: exactly max_uses redemptions among 65 contenders, the hot user at most once.
    assert_eq!(promo_done, PROMO_MAX_USES as usize);

    // Withdrawals held exactly what they say.
    let withdrawn = 30_000 * seen.iter().filter(|s| matches!(s, Seen::Withdrawal(Ok(_)))).count() as i64;
    let expected_hot = 500_000 + (TOPUP_IDS as i64) * 10_000 - hot_spent - withdrawn;
    assert_eq!(balance(&db, hot).await, expected_hot, "hot user's balance differs from what the tasks saw");

    // Referral rewards: requested three times each, concurrently; granted once each.
    let mut grants = Vec::new();
    for &purchase_id in &hot_purchases {
        for _ in 0..3 {
            let s = store.clone();
            grants.push(tokio::spawn(async move {
                (purchase_id, s.grant_referral_reward(purchase_id, Percent::new(10).unwrap(), t0()).await.unwrap())
            }));
        }
    }
    let mut granted: BTreeMap<PurchaseId, usize> = BTreeMap::new();
    let mut rewarded = 0;
    for g in grants {
        let (purchase_id, outcome) = g.await.unwrap();
        if let ReferralOutcome::Granted { amount, .. } = outcome {
            *granted.entry(purchase_id).or_default() += 1;
            rewarded += amount.minor();
        }
    }
    assert!(granted.values().all(|&n| n == 1), "a reward granted twice: {granted:?}");
    assert_eq!(granted.len(), hot_purchases.len());
    assert_eq!(balance(&db, referrer).await, rewarded);

    assert_ledger_invariants(&db).await.unwrap();
    let redemptions = count(&db, "SELECT count(*) FROM promo_redemptions").await;
    assert_eq!(redemptions, i64::from(PROMO_MAX_USES));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_and_a_cancellation_of_one_purchase_never_both_win() {
    for round in 0..5 {
        let db = TestDb::with_connections(6).await;
        let store = Arc::new(db.store.clone());
        let buyer = user_with_balance(&store, 1, "0").await;
        create_promo(&db, "ONCE", 30, Some(1), None).await;
        let request =
            PurchaseRequest { promo: Some(PromoCode::parse("ONCE").unwrap()), ..basic_request(buyer, false, None) };
        let pending = store
            .create_pending_purchase(request, PaymentProviderKind::Crypto, std::time::Duration::from_secs(3600), t0())
            .await
            .unwrap();
        // Stall the payment between reading the purchase and writing its payment row (an
        // uncommitted row with the same provider payment id), cancel meanwhile, then let go.
        let other = user_with_balance(&store, 2, "0").await;
        let mut holder = db.pool().begin().await.unwrap();
        sqlx::query(
            "INSERT INTO payments (provider, provider_payment_id, user_id, amount, purpose, created_at)
             VALUES ('crypto', 'race-1', $1, 1, 'topup', $2)",
        )
        .bind(other.get())
        .bind(t0())
        .execute(&mut *holder)
        .await
        .unwrap();
        let amount = pending.amount.to_string();
        let (s1, s2) = (store.clone(), store.clone());
        let pay =
            tokio::spawn(
                async move { s1.finalize_purchase(pending.purchase_id, crypto("race-1", &amount), t0()).await },
            );
        tokio::time::sleep(std::time::Duration::from_millis(100 + 20 * round)).await;
        let cancel =
            tokio::spawn(async move { s2.close_pending_purchase(pending.purchase_id, Closure::Cancelled).await });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        holder.rollback().await.unwrap();
        let (paid, cancelled) = (pay.await.unwrap().unwrap(), cancel.await.unwrap());
        match (paid, cancelled) {
            (FinalizeOutcome::Finalized { .. }, Err(CloseError::NotPending(_))) => {}
            (FinalizeOutcome::CreditedToBalance, Ok(())) => {
                assert_eq!(balance(&db, buyer).await, pending.amount.minor())
            }
            other => panic!("round {round}: payment and cancellation both won or both lost: {other:?}"),
        }
        assert_ledger_invariants(&db).await.unwrap();
    }
}
