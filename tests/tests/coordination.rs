//! The Coordination port against real Redis: update intake (dedupe, lease, flood limit, FSM
//! compare-and-set), lease expiry, locks with fencing tokens (checked by PostgreSQL too), rate
//! limits shared by two instances with skewed clocks, leader failover, and a TTL on every key.
//! Where the in-memory single-instance design means the same thing, the same contract runs on it.

use std::sync::Arc;
use std::time::Duration;

use atlas::coord::fsm::{self, Loaded};
use atlas::coord::keys::KeySpace;
use atlas::coord::legacy::LegacyCoordination;
use atlas::coord::limits::{FLOOD_MAX, FLOOD_WINDOW, FSM_DATA_MAX_BYTES};
use atlas::ports::Coordination;
use atlas::ports::coordination::*;
use atlas::ports::store::*;
use atlas::ports::vpn::PanelKey;
use atlas_tests::redis_support::*;
use atlas_tests::{TestDb, t0, uid, user_with_balance};
use redis::AsyncCommands as _;

/// Short enough that tests can outwait it.
const SHORT_LEASE: Duration = Duration::from_millis(300);

fn redis_instance(
    keys: &KeySpace,
    seed: u64,
) -> atlas::coord::redis::RedisCoordination<atlas::coord::connector::TcpDialer> {
    instance(keys, clock(), seed).with_lease_ttl(SHORT_LEASE)
}

fn memory_instance(seed: u64) -> LegacyCoordination {
    LegacyCoordination::new(clock(), ids(seed)).with_lease_ttl(SHORT_LEASE)
}

fn proceed(outcome: BeginOutcome) -> UpdateTicket {
    match outcome {
        BeginOutcome::Proceed(ticket) => ticket,
        other => panic!("expected to proceed, got {other:?}"),
    }
}

/// The intake contract: dedupe, per-chat serialization, CAS commits, lease expiry.
async fn intake_contract(c: &impl Coordination) {
    let user = uid(42);
    let first = proceed(c.begin_update(user, 1, Admission::Counted).await.unwrap());
    assert_eq!(first.fsm, FsmRecord::default());
    // The same update again, while in progress: never handled twice, and not settled either
    // (the handler may still hand it back).
    assert_eq!(c.begin_update(user, 1, Admission::Counted).await.unwrap(), BeginOutcome::InProgress);
    // Another update of the same chat waits for the lease.
    assert!(
        matches!(c.begin_update(user, 2, Admission::Counted).await.unwrap(), BeginOutcome::Busy { retry_after } if retry_after <= SHORT_LEASE)
    );
    // Another chat is independent.
    let other = proceed(c.begin_update(uid(43), 2, Admission::Counted).await.unwrap());
    assert_eq!(c.commit_update(uid(43), &other, FsmWrite::Keep).await.unwrap(), CommitOutcome::Committed);

    assert_eq!(
        c.commit_update(user, &first, FsmWrite::Set(b"state-1".to_vec())).await.unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(
        c.begin_update(user, 1, Admission::Counted).await.unwrap(),
        BeginOutcome::Duplicate,
        "a done update stays done"
    );
    let second = proceed(c.begin_update(user, 2, Admission::Counted).await.unwrap());
    assert_eq!(second.fsm, FsmRecord { version: 1, data: Some(b"state-1".to_vec()) });
    assert_eq!(c.commit_update(user, &second, FsmWrite::Clear).await.unwrap(), CommitOutcome::Committed);
    // Clearing keeps the version growing: the record's history is linear.
    let third = proceed(c.begin_update(user, 3, Admission::Counted).await.unwrap());
    assert_eq!(third.fsm, FsmRecord { version: 2, data: None });

    // The third handler stalls past its lease; the next update takes the chat: the chat moved
    // on without the third.
    tokio::time::sleep(SHORT_LEASE + Duration::from_millis(100)).await;
    let fourth = proceed(c.begin_update(user, 4, Admission::Counted).await.unwrap());
    assert_eq!(
        c.commit_update(user, &third, FsmWrite::Set(b"stale".to_vec())).await.unwrap(),
        CommitOutcome::VersionConflict
    );
    assert_eq!(
        c.commit_update(user, &fourth, FsmWrite::Set(b"state-3".to_vec())).await.unwrap(),
        CommitOutcome::Committed
    );
    // The stalled handler's update was never marked done, so its redelivery is handled.
    let retried = proceed(c.begin_update(user, 3, Admission::Counted).await.unwrap());
    assert_eq!(retried.fsm.data.as_deref(), Some(&b"state-3"[..]));
    // A lease that ran out with nobody touching the chat since (a frozen process): the handler's
    // replies went out, so its state is kept, once.
    tokio::time::sleep(SHORT_LEASE + Duration::from_millis(100)).await;
    assert_eq!(c.commit_update(user, &retried, FsmWrite::Clear).await.unwrap(), CommitOutcome::Committed);
    assert_eq!(
        c.begin_update(user, 3, Admission::Counted).await.unwrap(),
        BeginOutcome::Duplicate,
        "committed late, the update is done"
    );
    // Not when another update of the chat changed the record meanwhile. (One that kept the
    // record as it was does not count: the late commit then lands on the state both read.)
    let late = proceed(c.begin_update(user, 6, Admission::Counted).await.unwrap());
    tokio::time::sleep(SHORT_LEASE + Duration::from_millis(100)).await;
    let between = proceed(c.begin_update(user, 7, Admission::Counted).await.unwrap());
    assert_eq!(
        c.commit_update(user, &between, FsmWrite::Set(b"state-4".to_vec())).await.unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(c.commit_update(user, &late, FsmWrite::Keep).await.unwrap(), CommitOutcome::VersionConflict);
    // Nor while another handler holds the chat, nor once another handler finished the update.
    let first_try = proceed(c.begin_update(user, 8, Admission::Counted).await.unwrap());
    tokio::time::sleep(SHORT_LEASE + Duration::from_millis(100)).await;
    let second_try = proceed(c.begin_update(user, 8, Admission::Counted).await.unwrap());
    assert_eq!(c.commit_update(user, &first_try, FsmWrite::Keep).await.unwrap(), CommitOutcome::LeaseLost);
    assert_eq!(c.commit_update(user, &second_try, FsmWrite::Keep).await.unwrap(), CommitOutcome::Committed);
    assert_eq!(c.commit_update(user, &first_try, FsmWrite::Keep).await.unwrap(), CommitOutcome::LeaseLost);

    // Oversized state is refused and the lease stays with its holder.
    let fifth = proceed(c.begin_update(user, 5, Admission::Counted).await.unwrap());
    let oversized = FsmWrite::Set(vec![b'x'; FSM_DATA_MAX_BYTES + 1]);
    assert!(matches!(c.commit_update(user, &fifth, oversized).await, Err(CoordinationError::Invalid(_))));
    assert_eq!(c.commit_update(user, &fifth, FsmWrite::Keep).await.unwrap(), CommitOutcome::Committed);
}

#[tokio::test]
async fn intake_on_redis() {
    intake_contract(&redis_instance(&fresh_keys(), 1)).await;
}

#[tokio::test]
async fn intake_in_memory() {
    intake_contract(&memory_instance(1)).await;
}

/// Redis loses its data (the record, the lease and the marker) under a handler whose lease then
/// runs out: a record that is gone is no move of the chat, so the handler's state is stored, on
/// top of the version it read; a conflict would throw it away after its replies went out.
#[tokio::test]
async fn a_late_commit_after_redis_lost_its_data_is_stored() {
    let keys = fresh_keys();
    let c = redis_instance(&keys, 3);
    let user = uid(44);
    let first = proceed(c.begin_update(user, 1, Admission::Counted).await.unwrap());
    assert_eq!(c.commit_update(user, &first, FsmWrite::Set(b"one".to_vec())).await.unwrap(), CommitOutcome::Committed);
    let second = proceed(c.begin_update(user, 2, Admission::Counted).await.unwrap());
    assert_eq!(second.fsm.version, 1);
    let mut redis = raw().await;
    let _: i64 = redis.del(&[keys.fsm(user), keys.lease(user), keys.update(user, 2)]).await.unwrap();
    tokio::time::sleep(SHORT_LEASE + Duration::from_millis(100)).await;
    assert_eq!(c.commit_update(user, &second, FsmWrite::Set(b"two".to_vec())).await.unwrap(), CommitOutcome::Committed);
    let third = proceed(c.begin_update(user, 3, Admission::Counted).await.unwrap());
    assert_eq!(third.fsm, FsmRecord { version: 2, data: Some(b"two".to_vec()) });
}

/// Flood limit: a burst of FLOOD_MAX updates passes, the next is dropped (and stays dropped).
async fn flood_contract(c: &impl Coordination) {
    let user = uid(7);
    for update in 0..i64::from(FLOOD_MAX) {
        let ticket = proceed(c.begin_update(user, update, Admission::Counted).await.unwrap());
        c.commit_update(user, &ticket, FsmWrite::Keep).await.unwrap();
    }
    let spam = i64::from(FLOOD_MAX);
    assert!(matches!(c.begin_update(user, spam, Admission::Counted).await.unwrap(), BeginOutcome::Flooded { .. }));
    assert_eq!(c.begin_update(user, spam, Admission::Counted).await.unwrap(), BeginOutcome::Duplicate);
    // A payment arriving while the user is over the limit is never dropped, and does not push
    // the limit further out: the next plain update is refused no longer than before.
    let payment = proceed(c.begin_update(user, spam + 1, Admission::Exempt).await.unwrap());
    c.commit_update(user, &payment, FsmWrite::Keep).await.unwrap();
    let BeginOutcome::Flooded { retry_after } = c.begin_update(user, spam + 2, Admission::Counted).await.unwrap()
    else {
        panic!("still over the limit");
    };
    assert!(retry_after <= FLOOD_WINDOW / FLOOD_MAX, "{retry_after:?}");
}

/// A handler that cannot handle its update now hands it back: the record is untouched and the
/// update is not marked done, so its redelivery is handled.
async fn retry_contract(c: &impl Coordination) {
    let user = uid(8);
    let first = proceed(c.begin_update(user, 1, Admission::Counted).await.unwrap());
    c.commit_update(user, &first, FsmWrite::Set(b"before".to_vec())).await.unwrap();
    let paid = proceed(c.begin_update(user, 2, Admission::Exempt).await.unwrap());
    assert_eq!(c.commit_update(user, &paid, FsmWrite::Retry).await.unwrap(), CommitOutcome::Committed);
    let again = proceed(c.begin_update(user, 2, Admission::Exempt).await.unwrap());
    assert_eq!(again.fsm, FsmRecord { version: 1, data: Some(b"before".to_vec()) }, "the record is untouched");
    assert_eq!(c.commit_update(user, &again, FsmWrite::Keep).await.unwrap(), CommitOutcome::Committed);
    assert_eq!(c.begin_update(user, 2, Admission::Exempt).await.unwrap(), BeginOutcome::Duplicate, "handled now");
}

#[tokio::test]
async fn retry_on_redis() {
    retry_contract(&redis_instance(&fresh_keys(), 3)).await;
}

#[tokio::test]
async fn retry_in_memory() {
    retry_contract(&memory_instance(3)).await;
}

#[tokio::test]
async fn flood_limit_on_redis() {
    flood_contract(&redis_instance(&fresh_keys(), 2)).await;
}

#[tokio::test]
async fn flood_limit_in_memory() {
    flood_contract(&memory_instance(2)).await;
}

/// Locks: exclusive, released only by their holder, tokens only grow.
async fn lock_contract(c: &impl Coordination) {
    let lock = LockName::KeyReissue(uid(5));
    let first = c.acquire_lock(lock, SHORT_LEASE).await.unwrap().expect("free lock");
    assert_eq!(c.acquire_lock(lock, SHORT_LEASE).await.unwrap(), None);
    assert!(c.release_lock(&first).await.unwrap());
    assert!(!c.release_lock(&first).await.unwrap(), "released twice");
    let second = c.acquire_lock(lock, SHORT_LEASE).await.unwrap().expect("released lock");
    assert!(second.fencing_token > first.fencing_token);
    // The holder stalls past its lease; a new holder gets a newer token; the old one cannot release.
    tokio::time::sleep(SHORT_LEASE + Duration::from_millis(100)).await;
    let third = c.acquire_lock(lock, SHORT_LEASE).await.unwrap().expect("expired lock");
    assert!(third.fencing_token > second.fencing_token);
    assert!(!c.release_lock(&second).await.unwrap());
    assert!(c.release_lock(&third).await.unwrap());
}

#[tokio::test]
async fn locks_on_redis() {
    lock_contract(&redis_instance(&fresh_keys(), 3)).await;
}

#[tokio::test]
async fn locks_in_memory() {
    lock_contract(&memory_instance(3)).await;
}

#[tokio::test]
async fn a_stale_lock_holder_cannot_write_the_key() {
    let keys = fresh_keys();
    let (a, b) = (redis_instance(&keys, 4), redis_instance(&keys, 5));
    let db = TestDb::new().await;
    let user = user_with_balance(&db.store, 1, "500").await;
    let purchase = atlas::ports::store::PurchaseRequest {
        user,
        tariff: atlas::domain::TariffCode::parse("basic").unwrap(),
        days: 30,
        promo: None,
        idempotency_key: None,
    };
    db.store.purchase_from_balance(purchase, t0()).await.unwrap();
    let sub = db.store.subscription(user).await.unwrap().unwrap().id;
    let lock = LockName::KeyReissue(user);
    let key = |n: &str| PanelKey { panel_key_id: n.into(), access_uri: format!("vless://{n}@host") };

    // Instance A takes the lock, then pauses longer than its lease; B takes it and writes.
    let stale = a.acquire_lock(lock, SHORT_LEASE).await.unwrap().unwrap();
    tokio::time::sleep(SHORT_LEASE + Duration::from_millis(100)).await;
    let fresh = b.acquire_lock(lock, SHORT_LEASE).await.unwrap().unwrap();
    db.store.install_reissued_key(sub, fresh.fencing_token, key("from-b"), None, t0()).await.unwrap();
    // A wakes up and tries to write under its old token: PostgreSQL refuses.
    let late = db.store.install_reissued_key(sub, stale.fencing_token, key("from-a"), None, t0()).await;
    assert!(matches!(late, Err(KeyError::StaleFencingToken { .. })), "{late:?}");
    assert!(!a.release_lock(&stale).await.unwrap());

    // Redis loses the fencing counter (restart without persistence): tokens still grow.
    let mut raw = raw().await;
    let _: () = raw.del(keys.fence(lock)).await.unwrap();
    assert!(b.release_lock(&fresh).await.unwrap());
    let after_loss = a.acquire_lock(lock, SHORT_LEASE).await.unwrap().unwrap();
    assert!(after_loss.fencing_token > fresh.fencing_token);
    db.store.install_reissued_key(sub, after_loss.fencing_token, key("after-loss"), None, t0()).await.unwrap();
}

/// Fires `attempts` attempts of `action` for one user, alternating between the instances, all at
/// once; returns how many were allowed.
async fn race_attempts<C: Coordination>(instances: &[Arc<C>], action: LimitedAction, attempts: usize) -> usize {
    let user = uid(99);
    let tasks: Vec<_> = (0..attempts)
        .map(|i| {
            let c = instances[i % instances.len()].clone();
            tokio::spawn(async move { c.check_rate(user, action, &format!("try-{i}")).await.unwrap() })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        allowed += usize::from(t.await.unwrap() == Decision::Allowed);
    }
    allowed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_across_instances_whatever_their_clocks() {
    let keys = fresh_keys();
    // Two instances, one an hour ahead and one an hour behind: the scripts use Redis TIME.
    let ahead = Arc::new(instance(&keys, Arc::new(SkewedClock::new(Duration::from_secs(3600), true)), 6));
    let behind = Arc::new(instance(&keys, Arc::new(SkewedClock::new(Duration::from_secs(3600), false)), 7));
    let both = [ahead, behind];
    assert_eq!(race_attempts(&both, LimitedAction::PromoAttempt, 40).await, 10);
    assert_eq!(race_attempts(&both, LimitedAction::WithdrawalRequest, 12).await, 3);
    assert_eq!(race_attempts(&both, LimitedAction::PaymentAttempt, 20).await, 5);
    assert_eq!(race_attempts(&both, LimitedAction::AdminCommand, 150).await, 100);
    match both[0].check_rate(uid(99), LimitedAction::WithdrawalRequest, "one more").await.unwrap() {
        Decision::Denied { retry_after } => {
            assert!(retry_after > Duration::from_secs(3500) && retry_after <= Duration::from_secs(3600))
        }
        Decision::Allowed => panic!("a fourth withdrawal request in an hour was allowed"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_per_instance_limiter_multiplies_the_limit() {
    // The audit's hazard, shown on the design it describes: each instance counts alone.
    let instances = [Arc::new(memory_instance(8)), Arc::new(memory_instance(9))];
    assert_eq!(race_attempts(&instances, LimitedAction::PromoAttempt, 40).await, 20);
    // One instance alone holds the limit exactly.
    assert_eq!(race_attempts(&[Arc::new(memory_instance(10))], LimitedAction::PromoAttempt, 40).await, 10);
}

#[tokio::test]
async fn a_sliding_window_reopens_only_as_old_attempts_leave_it() {
    // Exactness at the edge, on real Redis time: 5 payment attempts, then none until the first
    // of them is a minute old. (Checked by asking how long to wait, not by waiting a minute.)
    let c = redis_instance(&fresh_keys(), 11);
    for i in 0..5 {
        let attempt = format!("pay-{i}");
        assert_eq!(c.check_rate(uid(1), LimitedAction::PaymentAttempt, &attempt).await.unwrap(), Decision::Allowed);
    }
    // The same attempt again (a retry, the update delivered again) is not a sixth one.
    assert_eq!(c.check_rate(uid(1), LimitedAction::PaymentAttempt, "pay-4").await.unwrap(), Decision::Allowed);
    let Decision::Denied { retry_after } = c.check_rate(uid(1), LimitedAction::PaymentAttempt, "pay-5").await.unwrap()
    else {
        panic!("a sixth payment attempt within a minute was allowed");
    };
    assert!(retry_after > Duration::from_secs(58) && retry_after <= Duration::from_secs(60), "{retry_after:?}");
}

/// An attempt run again (its update handed back, or lost with its instance and delivered again
/// later) counts once, at the time it last ran: a promo guess checked 17 s after it was first
/// counted is a guess then, and the window holds it from then (swarm seed 5136 checked 11 guesses
/// within 45 s of store time while the log held 10 within a minute).
#[tokio::test]
async fn an_attempt_run_again_counts_once_from_when_it_last_ran() {
    let c = redis_instance(&fresh_keys(), 14);
    let pay = LimitedAction::PaymentAttempt;
    assert_eq!(c.check_rate(uid(1), pay, "pay-0").await.unwrap(), Decision::Allowed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 1..5 {
        assert_eq!(c.check_rate(uid(1), pay, &format!("pay-{i}")).await.unwrap(), Decision::Allowed);
    }
    assert_eq!(c.check_rate(uid(1), pay, "pay-0").await.unwrap(), Decision::Allowed, "the same attempt again");
    let Decision::Denied { retry_after } = c.check_rate(uid(1), pay, "pay-5").await.unwrap() else {
        panic!("a sixth payment attempt within a minute was allowed");
    };
    // The oldest attempt in the window is now pay-1 (just made), not pay-0 (two seconds older).
    assert!(retry_after > Duration::from_secs(59), "pay-0 still counts from its first run: {retry_after:?}");
}

#[tokio::test]
async fn leadership_fails_over_and_epochs_grow() {
    let keys = fresh_keys();
    // One clock for the instances and the test: deadlines are compared on the same origin.
    let clock = clock();
    let (a, b) = (instance(&keys, clock.clone(), 12), instance(&keys, clock.clone(), 13));
    let ttl = Duration::from_millis(400);

    let before = clock.monotonic();
    let la = a.lead(Role::Reminders, None, ttl).await.unwrap().expect("first leader");
    let after = clock.monotonic();
    // The local deadline counts from before the request was sent.
    assert!(la.valid_until >= before + ttl && la.valid_until <= after + ttl);
    assert_eq!(b.lead(Role::Reminders, None, ttl).await.unwrap(), None, "two leaders");
    // Other roles are independent.
    assert!(b.lead(Role::Poller, None, ttl).await.unwrap().is_some());
    // Renewing keeps the epoch.
    let renewed = a.lead(Role::Reminders, Some(&la), ttl).await.unwrap().expect("renewed");
    assert_eq!(renewed.epoch, la.epoch);

    // A stops renewing (crashed or paused): B takes over after the TTL with a larger epoch.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let lb = b.lead(Role::Reminders, None, ttl).await.unwrap().expect("failover");
    assert!(lb.epoch > la.epoch);
    assert_eq!(a.lead(Role::Reminders, Some(&renewed), ttl).await.unwrap(), None, "the old leader must learn it lost");

    // Resigning hands over at once.
    b.resign(&lb).await.unwrap();
    let la2 = a.lead(Role::Reminders, None, ttl).await.unwrap().expect("after resignation");
    assert!(la2.epoch > lb.epoch);
}

#[tokio::test]
async fn in_memory_every_instance_is_leader() {
    let (a, b) = (memory_instance(14), memory_instance(15));
    let ttl = Duration::from_secs(1);
    assert!(a.lead(Role::Reminders, None, ttl).await.unwrap().is_some());
    assert!(b.lead(Role::Reminders, None, ttl).await.unwrap().is_some(), "the old design: everyone leads");
}

#[tokio::test]
async fn a_corrupt_record_resets_the_conversation_without_blocking_the_user() {
    let keys = fresh_keys();
    let c = redis_instance(&keys, 16);
    let user = uid(3);
    let mut raw = raw().await;
    let _: () = redis::cmd("HSET")
        .arg(keys.fsm(user))
        .arg("v")
        .arg(7)
        .arg("d")
        .arg(&b"\xff\xfenot json"[..])
        .query_async(&mut raw)
        .await
        .unwrap();
    let ticket = proceed(c.begin_update(user, 1, Admission::Counted).await.unwrap());
    assert_eq!(fsm::decode::<String>(&ticket.fsm), Loaded::Reset);
    let fresh = fsm::encode(&"main menu".to_owned()).unwrap();
    assert_eq!(c.commit_update(user, &ticket, FsmWrite::Set(fresh)).await.unwrap(), CommitOutcome::Committed);
    let next = proceed(c.begin_update(user, 2, Admission::Counted).await.unwrap());
    assert_eq!(fsm::decode::<String>(&next.fsm), Loaded::Resumed("main menu".to_owned()));
    assert_eq!(next.fsm.version, 8);

    // A record changed behind the lease's back is not overwritten.
    let _: () = raw.hset(keys.fsm(user), "v", 99).await.unwrap();
    assert_eq!(c.commit_update(user, &next, FsmWrite::Clear).await.unwrap(), CommitOutcome::VersionConflict);
}

#[tokio::test]
async fn every_key_has_a_ttl() {
    let keys = fresh_keys();
    let c = instance(&keys, clock(), 17);
    let user = uid(11);
    let ticket = proceed(c.begin_update(user, 1, Admission::Counted).await.unwrap());
    c.commit_update(user, &ticket, FsmWrite::Set(b"s".to_vec())).await.unwrap();
    let ticket = proceed(c.begin_update(user, 2, Admission::Counted).await.unwrap()); // leaves a lease and an in-progress marker
    for action in [LimitedAction::PromoAttempt, LimitedAction::AdminCommand, LimitedAction::TrialActivation] {
        c.check_rate(user, action, "a").await.unwrap();
    }
    c.acquire_lock(LockName::KeyReissue(user), Duration::from_secs(5)).await.unwrap().unwrap();
    c.lead(Role::ExpiryCleanup, None, Duration::from_secs(5)).await.unwrap().unwrap();

    let mut raw = raw().await;
    let found: Vec<String> = raw.keys(format!("{}:*", keys.base())).await.unwrap();
    assert_eq!(found.len(), 12, "{found:?}");
    for key in &found {
        let ttl: i64 = raw.pttl(key).await.unwrap();
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
    }
    c.commit_update(user, &ticket, FsmWrite::Keep).await.unwrap();
}

#[tokio::test]
async fn a_record_that_vanished_under_a_live_handler_is_rewritten_and_keep_refreshes_its_ttl() {
    let keys = fresh_keys();
    let c = redis_instance(&keys, 18);
    let user = uid(4);
    let mut raw = raw().await;
    let first = proceed(c.begin_update(user, 1, Admission::Counted).await.unwrap());
    c.commit_update(user, &first, FsmWrite::Set(b"a".to_vec())).await.unwrap();
    let second = proceed(c.begin_update(user, 2, Admission::Counted).await.unwrap());
    // The record expires (or Redis loses it) while the handler runs: its state is not lost.
    let _: () = raw.del(keys.fsm(user)).await.unwrap();
    assert_eq!(c.commit_update(user, &second, FsmWrite::Set(b"b".to_vec())).await.unwrap(), CommitOutcome::Committed);
    let third = proceed(c.begin_update(user, 3, Admission::Counted).await.unwrap());
    assert_eq!(third.fsm, FsmRecord { version: 2, data: Some(b"b".to_vec()) });
    // A commit that changes nothing still keeps an active conversation alive.
    let _: () = raw.pexpire(keys.fsm(user), 5_000).await.unwrap();
    c.commit_update(user, &third, FsmWrite::Keep).await.unwrap();
    let ttl: i64 = raw.pttl(keys.fsm(user)).await.unwrap();
    assert!(ttl > 3_600_000, "keep did not refresh the record's TTL ({ttl} ms left)");
}

/// A begin whose first try ran but whose reply was lost is tried again under the same token
/// (`RedisCoordination::run_twice`): the script lets it proceed, and its lease (with the update's
/// marker) starts again at that try, as the caller counts it, rather than running out early.
#[tokio::test]
async fn a_begin_tried_again_under_its_token_starts_its_lease_again() {
    let keys = fresh_keys();
    let user = uid(77);
    let script = redis::Script::new(include_str!("../../app/src/coord/lua/begin_update.lua"));
    let mut redis = raw().await;
    let begin = |ttl_ms: u64| {
        let mut call = script.prepare_invoke();
        call.key(keys.fsm(user)).key(keys.lease(user)).key(keys.update(user, 5)).key(keys.flood(user));
        call.arg("token-1").arg(ttl_ms).arg(60_000).arg(1_000).arg(60_000_000).arg("0");
        call
    };
    let first: redis::Value = begin(1_000).invoke_async(&mut redis).await.unwrap();
    assert!(format!("{first:?}").contains("ok"), "{first:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again: redis::Value = begin(1_000).invoke_async(&mut redis).await.unwrap();
    assert!(format!("{again:?}").contains("ok"), "the same token proceeds: {again:?}");
    let lease: i64 = redis.pttl(keys.lease(user)).await.unwrap();
    let marker: i64 = redis.pttl(keys.update(user, 5)).await.unwrap();
    assert!(lease > 800 && marker > 800, "the lease ({lease} ms) and the marker ({marker} ms) start again");
}
