//! The intake function and the leader loop, on real Redis with two instances.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use atlas::coord::legacy::LegacyCoordination;
use atlas::coord::policy::Guarded;
use atlas::ports::coordination::{Admission, FsmWrite, Role};
use atlas::runtime::intake::{Handled, handle_update};
use atlas::runtime::leader;
use atlas_tests::redis_support::{clock, fresh_keys, ids, instance};
use atlas_tests::uid;

fn guarded(
    keys: &atlas::coord::keys::KeySpace,
    seed: u64,
) -> Guarded<atlas::coord::redis::RedisCoordination<atlas::coord::connector::TcpDialer>> {
    Guarded::new(instance(keys, clock(), seed), LegacyCoordination::new(clock(), ids(seed)))
}

/// Appends the update id to the conversation state (a comma-separated list).
fn append(ctx: &atlas::runtime::intake::UpdateContext) -> FsmWrite {
    let previous = ctx.fsm.as_ref().and_then(|r| r.data.clone()).unwrap_or_default();
    let mut text = String::from_utf8(previous).unwrap();
    if !text.is_empty() {
        text.push(',');
    }
    text.push_str(&ctx.update_id.to_string());
    FsmWrite::Set(text.into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_update_is_applied_once_in_order_across_two_instances() {
    let keys = fresh_keys();
    let (a, b) = (Arc::new(guarded(&keys, 1)), Arc::new(guarded(&keys, 2)));
    let user = uid(5);
    // 15 updates: with the read below, within the flood limit of 20 per 10 s.
    for update in 1..=15i64 {
        // Each update reaches both instances at once (a redelivery racing the first delivery).
        let (ra, rb) = tokio::join!(
            handle_update(&a, user, update, Admission::Counted, |ctx| async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                append(&ctx)
            }),
            handle_update(&b, user, update, Admission::Counted, |ctx| async move { append(&ctx) }),
        );
        let outcomes = [ra, rb];
        assert_eq!(outcomes.iter().filter(|h| **h == Handled::Committed).count(), 1, "update {update}: {outcomes:?}");
        // The other delivery finds it in progress (or, if it came late, done): not handled twice.
        let other = |h: &&Handled| matches!(h, Handled::InProgress | Handled::Duplicate);
        assert_eq!(outcomes.iter().filter(other).count(), 1, "update {update}: {outcomes:?}");
    }
    let seen = Rc::new(RefCell::new(None));
    let read = seen.clone();
    let handled = handle_update(&a, user, 16, Admission::Counted, |ctx| async move {
        *read.borrow_mut() = ctx.fsm.clone();
        FsmWrite::Keep
    })
    .await;
    assert_eq!(handled, Handled::Committed);
    let record = seen.borrow().clone().unwrap();
    let expected: Vec<String> = (1..=15).map(|n: i64| n.to_string()).collect();
    assert_eq!(String::from_utf8(record.data.unwrap()).unwrap(), expected.join(","));
    assert_eq!(record.version, 15);
}

#[tokio::test]
async fn a_state_too_large_to_store_keeps_the_old_one_and_frees_the_chat() {
    let keys = fresh_keys();
    let a = guarded(&keys, 6);
    let user = uid(8);
    let set = |text: &'static [u8]| move |_| async move { FsmWrite::Set(text.to_vec()) };
    assert_eq!(handle_update(&a, user, 1, Admission::Counted, set(b"small")).await, Handled::Committed);
    let huge = handle_update(&a, user, 2, Admission::Counted, |_| async { FsmWrite::Set(vec![b'x'; 100_000]) }).await;
    assert_eq!(huge, Handled::StateRefused, "the chat is released with the old state");
    let seen = Rc::new(RefCell::new(None));
    let read = seen.clone();
    let next = handle_update(&a, user, 3, Admission::Counted, |ctx| async move {
        *read.borrow_mut() = ctx.fsm;
        FsmWrite::Keep
    })
    .await;
    assert_eq!(next, Handled::Committed, "the next update is not kept waiting");
    assert_eq!(seen.borrow().as_ref().and_then(|r| r.data.clone()), Some(b"small".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_works_at_a_time_and_a_standby_takes_over() {
    let keys = fresh_keys();
    let (a, b) = (guarded(&keys, 3), guarded(&keys, 4));
    let ttl = Duration::from_millis(300);
    let effects = Arc::new(std::sync::Mutex::new(Vec::<(u64, &'static str)>::new()));
    let (stop_a, stopped_a) = tokio::sync::oneshot::channel::<()>();
    let (stop_b, stopped_b) = tokio::sync::oneshot::channel::<()>();
    let (clock_a, clock_b) = (clock(), clock());
    // One instance's leader loop, recording each tick of work with its epoch and its name.
    let run = |instance,
               clock: &Arc<dyn atlas::ports::Clock>,
               name: &'static str,
               stopped: tokio::sync::oneshot::Receiver<()>| {
        let effects = effects.clone();
        let clock = clock.clone();
        async move {
            let work = move |l: atlas::ports::coordination::Leadership| {
                let effects = effects.clone();
                async move { effects.lock().unwrap().push((l.epoch, name)) }
            };
            leader::lead(instance, clock.as_ref(), Role::Reminders, ttl, Duration::from_millis(20), work, async {
                let _ = stopped.await;
            })
            .await
        }
    };
    let run_a = run(&a, &clock_a, "a", stopped_a);
    let run_b = run(&b, &clock_b, "b", stopped_b);
    let script = async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        // Whoever leads steps down; the other must take over at once (resignation).
        let first = effects.lock().unwrap().first().map(|e| e.1).expect("someone led");
        let (leader, standby) = if first == "a" { (stop_a, stop_b) } else { (stop_b, stop_a) };
        let _ = leader.send(());
        tokio::time::sleep(Duration::from_millis(400)).await;
        let _ = standby.send(());
    };
    tokio::join!(run_a, run_b, script);
    let effects = effects.lock().unwrap().clone();
    // Effects come in runs of one epoch; an epoch never comes back after a newer one.
    let mut epochs: Vec<u64> = effects.iter().map(|e| e.0).collect();
    epochs.dedup();
    assert_eq!(epochs.len(), 2, "expected exactly one handover: {effects:?}");
    assert!(epochs[1] > epochs[0]);
    let holders: Vec<&str> = {
        let mut h: Vec<&str> = effects.iter().map(|e| e.1).collect();
        h.dedup();
        h
    };
    assert_eq!(holders.len(), 2, "both instances led, one after the other: {effects:?}");
}

/// An update handed back (`FsmWrite::Retry`) wants redelivery whatever became of the commit,
/// even when its handler outlived its lease; a delivery that arrives while it is still being
/// handled wants redelivery too (that run may still hand it back), and the redelivery after the
/// hand-back is handled.
#[tokio::test]
async fn a_handed_back_update_is_delivered_again_even_after_its_lease_ran_out() {
    let keys = fresh_keys();
    let lease = Duration::from_millis(300);
    let a = Arc::new(Guarded::new(
        instance(&keys, clock(), 9).with_lease_ttl(lease),
        LegacyCoordination::new(clock(), ids(9)),
    ));
    let user = uid(11);
    let slow = {
        let a = a.clone();
        tokio::spawn(async move {
            handle_update(&a, user, 1, Admission::Exempt, |_| async move {
                tokio::time::sleep(Duration::from_millis(150)).await;
                FsmWrite::Retry
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let meanwhile = handle_update(&a, user, 1, Admission::Exempt, |_| async { FsmWrite::Keep }).await;
    assert_eq!(meanwhile, Handled::InProgress);
    assert!(meanwhile.wants_redelivery());
    assert_eq!(slow.await.unwrap(), Handled::Retry);
    // Handed back after its lease ran out: still to be delivered again, and then handled.
    let late = handle_update(&a, user, 2, Admission::Exempt, |_| async move {
        tokio::time::sleep(lease + Duration::from_millis(100)).await;
        FsmWrite::Retry
    })
    .await;
    assert_eq!(late, Handled::Retry);
    assert!(late.wants_redelivery());
    for update in [1, 2] {
        let again = handle_update(&a, user, update, Admission::Exempt, |_| async { FsmWrite::Keep }).await;
        assert_eq!(again, Handled::Committed, "update {update} is handled when delivered again");
    }
}

/// An instance's guarded coordination on real Redis with chat leases of `lease`.
fn with_lease(
    keys: &atlas::coord::keys::KeySpace,
    seed: u64,
    lease: Duration,
) -> Arc<Guarded<atlas::coord::redis::RedisCoordination<atlas::coord::connector::TcpDialer>>> {
    Arc::new(Guarded::new(
        instance(keys, clock(), seed).with_lease_ttl(lease),
        LegacyCoordination::new(clock(), ids(seed)),
    ))
}

/// A handler that runs longer than its lease (waiting out Telegram's per-chat pacing, a slow
/// provider) keeps the lease: its commit lands, and the same update delivered meanwhile to
/// another instance is left to it, not run a second time (the fuzzer's first find).
#[tokio::test]
async fn a_handler_running_past_its_lease_keeps_it() {
    let keys = fresh_keys();
    let lease = Duration::from_millis(300);
    let on = |seed| with_lease(&keys, seed, lease);
    let (a, b) = (on(21), on(22));
    let user = uid(12);
    let slow = {
        let a = a.clone();
        tokio::spawn(async move {
            handle_update(&a, user, 1, Admission::Exempt, |ctx| async move {
                tokio::time::sleep(lease * 2).await;
                append(&ctx)
            })
            .await
        })
    };
    tokio::time::sleep(lease + Duration::from_millis(150)).await;
    let ran_again = Rc::new(RefCell::new(false));
    let flag = ran_again.clone();
    let meanwhile = handle_update(&b, user, 1, Admission::Exempt, |_| async move {
        *flag.borrow_mut() = true;
        FsmWrite::Keep
    })
    .await;
    assert_eq!(meanwhile, Handled::InProgress, "the update is still its first handler's");
    assert!(!*ran_again.borrow());
    assert_eq!(slow.await.unwrap(), Handled::Committed, "the slow handler's commit lands");
    let record = atlas::ports::Coordination::begin_update(a.shared(), user, 2, Admission::Exempt).await.unwrap();
    let atlas::ports::coordination::BeginOutcome::Proceed(ticket) = record else { panic!("{record:?}") };
    assert_eq!(ticket.fsm.data.as_deref(), Some(&b"1"[..]));
}

/// A handler stuck for longer than `HOLD_MAX_LEASES` leases does not block its chat for ever: its
/// lease is left to expire, the chat goes on, and the stuck handler's commit is refused.
#[tokio::test]
async fn a_stuck_handler_lets_its_chat_go_after_the_longest_hold() {
    let keys = fresh_keys();
    let lease = Duration::from_millis(200);
    let on = |seed| with_lease(&keys, seed, lease);
    let (a, b) = (on(23), on(24));
    let user = uid(13);
    let longest = lease * atlas::runtime::intake::HOLD_MAX_LEASES;
    let stuck = {
        let a = a.clone();
        tokio::spawn(async move {
            handle_update(&a, user, 1, Admission::Exempt, |_| async move {
                tokio::time::sleep(longest * 2).await;
                FsmWrite::Keep
            })
            .await
        })
    };
    tokio::time::sleep(longest + lease).await;
    let next = handle_update(&b, user, 2, Admission::Exempt, |_| async { FsmWrite::Set(b"2".to_vec()) }).await;
    assert_eq!(next, Handled::Committed, "the chat went on");
    let stuck = stuck.await.unwrap();
    assert_eq!(stuck, Handled::Conflict, "the chat moved on without it");
    assert!(!stuck.wants_redelivery(), "run again, it would come after update 2");
}

/// A clock that counts how often it is read: a loop that wakes reads it.
struct Counting(Arc<dyn atlas::ports::Clock>, std::sync::atomic::AtomicU64);

impl atlas::ports::Clock for Counting {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.now()
    }

    fn monotonic(&self) -> Duration {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.0.monotonic()
    }
}

/// A standby wakes to try for the lease (every TTL/3), not for work it cannot do: the loop once
/// woke every millisecond on every standby instance, for every role (found by profiling the
/// simulation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_wakes_only_to_try_for_the_lease() {
    let keys = fresh_keys();
    let (a, b) = (guarded(&keys, 5), guarded(&keys, 6));
    let ttl = Duration::from_millis(300);
    let work = Duration::from_millis(20);
    let leader_clock = clock();
    let held = a.lead(leader_clock.as_ref(), Role::Broadcasts, None, Duration::from_secs(5)).await;
    assert!(held.is_some(), "a leads first");
    let standby_clock = Counting(clock(), Default::default());
    let worked = std::sync::atomic::AtomicBool::new(false);
    leader::lead(
        &b,
        &standby_clock,
        Role::Broadcasts,
        ttl,
        work,
        |_| async { worked.store(true, std::sync::atomic::Ordering::Relaxed) },
        tokio::time::sleep(Duration::from_millis(600)),
    )
    .await;
    assert!(!worked.load(std::sync::atomic::Ordering::Relaxed), "the standby never leads while a holds the role");
    // Six tries for the lease in 600 ms, a few clock reads each; spinning read it thousands of times.
    let reads = standby_clock.1.load(std::sync::atomic::Ordering::Relaxed);
    assert!(reads < 100, "the standby's loop woke {reads} times for 6 tries");
}

/// Two instances whose clocks are an hour apart (either way) agree on the wall clock after
/// setting theirs by Redis `TIME`: what one stores as a deadline means the same to the other.
/// Without it a purchase opened on the slow one is born expired for the other's watcher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_with_skewed_clocks_agree_on_the_time() {
    use atlas::ports::Clock;
    use atlas::runtime::agreed_clock::{AgreedClock, Reading};
    use atlas_tests::redis_support::SkewedClock;
    let keys = fresh_keys();
    let hour = Duration::from_secs(3600);
    let slow = AgreedClock::new(Arc::new(SkewedClock::new(hour, false)));
    let fast = AgreedClock::new(Arc::new(SkewedClock::new(hour, true)));
    let apart = |a: &AgreedClock, b: &AgreedClock| (a.now() - b.now()).num_milliseconds().abs();
    assert!(apart(&slow, &fast) > 7_000_000, "the hosts' clocks start two hours apart");
    for (at, host) in [(1, &slow), (2, &fast)] {
        assert_eq!(host.agree(&guarded(&keys, at)).await, Reading::Taken, "Redis TIME was read");
    }
    // Redis and this host share one clock here: each instance is within a round trip of it.
    assert!(apart(&slow, &fast) < 1_000, "the agreed clocks are {} ms apart", apart(&slow, &fast));
    let system = atlas_tests::redis_support::clock();
    assert!((slow.now() - system.now()).num_milliseconds().abs() < 1_000, "the slow host goes by the shared time");
    // The monotonic clock is the host's own.
    assert!(fast.monotonic() > slow.monotonic() + hour, "monotonic time is not moved");
}

/// The legacy design has no shared clock: each process keeps its own.
#[tokio::test]
async fn the_legacy_design_keeps_each_clock_its_own() {
    use atlas::ports::Clock;
    use atlas::runtime::agreed_clock::{AgreedClock, Reading};
    use atlas_tests::redis_support::SkewedClock;
    let hour = Duration::from_secs(3600);
    let slow = AgreedClock::new(Arc::new(SkewedClock::new(hour, false)));
    let legacy = LegacyCoordination::new(clock(), ids(9));
    let coordination = Guarded::new(legacy, LegacyCoordination::new(clock(), ids(10)));
    assert_eq!(slow.agree(&coordination).await, Reading::NoSharedClock, "nothing to agree with");
    let behind = (clock().now() - slow.now()).num_seconds();
    assert!((3599..=3601).contains(&behind), "still an hour behind ({behind} s)");
}

/// A host whose wall clock jumps (an NTP step, a VM resumed) after the instance set its clock.
struct Jumping(Arc<dyn atlas::ports::Clock>, std::sync::atomic::AtomicI64);

impl atlas::ports::Clock for Jumping {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.now() + chrono::Duration::seconds(self.1.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn monotonic(&self) -> Duration {
        self.0.monotonic()
    }
}

/// Between readings the agreed clock runs on the monotonic clock: a jump of the host's wall
/// clock does not move it.
#[tokio::test]
async fn a_jump_of_the_host_clock_does_not_move_the_agreed_one() {
    use atlas::ports::Clock;
    use atlas::runtime::agreed_clock::{AgreedClock, Reading};
    let host = Arc::new(Jumping(clock(), Default::default()));
    let agreed = AgreedClock::new(host.clone());
    assert_eq!(agreed.agree(&guarded(&fresh_keys(), 15)).await, Reading::Taken);
    host.1.store(-1800, std::sync::atomic::Ordering::Relaxed);
    let off = (agreed.now() - clock().now()).num_milliseconds().abs();
    assert!(off < 1_000, "the host's jump of half an hour moved the agreed clock by {off} ms");
}
