//! The failure policy when Redis goes away: money actions refused with "try again later", other
//! actions on the local limiter, updates handled degraded, readiness false — and everything back
//! to normal by itself when Redis returns. Redis is cut by a proxy in front of the real server.

use std::time::{Duration, Instant};

use atlas::coord::connector::{RedisConnector, RedisTarget, TcpDialer};
use atlas::coord::health::{self, Readiness};
use atlas::coord::legacy::LegacyCoordination;
use atlas::coord::policy::{Guarded, Intake, RateVerdict};
use atlas::coord::redis::RedisCoordination;
use atlas::ports::coordination::{Admission, BeginOutcome, FsmWrite, LimitedAction};
use atlas::runtime::intake::{Handled, handle_update};
use atlas_tests::proxy::Proxy;
use atlas_tests::redis_support::{clock, fresh_keys, ids, target};
use atlas_tests::uid;

/// Coordination through `proxy`, as an instance has it.
fn through(proxy: &Proxy, seed: u64) -> Guarded<RedisCoordination<TcpDialer>> {
    let real = target();
    let through_proxy = RedisTarget { host: "127.0.0.1".into(), port: proxy.port(), ..real };
    let connector = RedisConnector::new(
        TcpDialer::new(&through_proxy, None).expect("plain TCP"),
        through_proxy.info.clone(),
        clock(),
        ids(seed),
    );
    Guarded::new(
        RedisCoordination::new(connector, fresh_keys(), clock(), ids(seed + 1)),
        LegacyCoordination::new(clock(), ids(seed + 2)),
    )
}

async fn proxy() -> Proxy {
    let real = target();
    Proxy::start((real.host.clone(), real.port)).await
}

#[tokio::test]
async fn redis_outage_fails_money_closed_and_recovers_by_itself() {
    let proxy = proxy().await;
    let guarded = through(&proxy, 1);
    let readiness = Readiness::default();
    let user = uid(1);

    assert!(health::check(guarded.shared(), &readiness).await);
    assert!(readiness.redis_ok());
    assert_eq!(guarded.check_rate(user, LimitedAction::PromoAttempt, "promo").await, RateVerdict::Allowed);

    proxy.cut();
    for action in [LimitedAction::PromoAttempt, LimitedAction::WithdrawalRequest, LimitedAction::PaymentAttempt] {
        assert_eq!(guarded.check_rate(user, action, "cut").await, RateVerdict::TryLater, "{action:?} must fail closed");
    }
    assert_eq!(
        guarded.check_rate(user, LimitedAction::AdminCommand, "admin").await,
        RateVerdict::Allowed,
        "local limiter"
    );
    assert_eq!(guarded.begin_update(user, 1, Admission::Counted).await, Intake::Degraded);
    assert!(!health::check(guarded.shared(), &readiness).await);
    assert!(!readiness.redis_ok());

    proxy.restore().await;
    // The connector redials after its backoff (2 s at most, plus jitter): no restart needed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while guarded.check_rate(user, LimitedAction::PromoAttempt, "promo").await != RateVerdict::Allowed {
        assert!(Instant::now() < deadline, "coordination did not recover after Redis returned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(health::check(guarded.shared(), &readiness).await);
    assert!(matches!(
        guarded.begin_update(user, 2, Admission::Counted).await,
        Intake::Coordinated(BeginOutcome::Proceed(_))
    ));
}

#[tokio::test]
async fn the_periodic_health_check_follows_an_outage() {
    let real = target();
    let proxy = Proxy::start((real.host.clone(), real.port)).await;
    let through_proxy = RedisTarget { host: "127.0.0.1".into(), port: proxy.port(), ..real };
    let dialer = TcpDialer::new(&through_proxy, None).expect("plain TCP");
    let redis = RedisCoordination::new(
        RedisConnector::new(dialer, through_proxy.info.clone(), clock(), ids(4)),
        fresh_keys(),
        clock(),
        ids(5),
    );
    let readiness = Readiness::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watching = health::watch(&redis, &readiness, Duration::from_millis(50), async {
        let _ = stopped.await;
    });
    let script = async {
        let until = |want: bool| {
            let readiness = &readiness;
            async move {
                let deadline = Instant::now() + Duration::from_secs(10);
                while readiness.redis_ok() != want {
                    assert!(Instant::now() < deadline, "readiness did not become {want}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        until(true).await;
        proxy.cut();
        until(false).await;
        proxy.restore().await;
        until(true).await;
        let _ = stop.send(());
    };
    tokio::join!(watching, script);
}

/// After Redis restarts, the first call on the old connection fails though Redis answers again:
/// the update is begun on a new connection, not handled without Redis (found by the whole-bot
/// swarm: an update handled degraded after a restart escaped the dedupe and ran twice).
#[tokio::test]
async fn after_a_redis_restart_the_next_update_is_coordinated() {
    let proxy = proxy().await;
    let guarded = through(&proxy, 10);
    let user = uid(2);
    assert!(matches!(guarded.begin_update(user, 1, Admission::Counted).await, Intake::Coordinated(_)));
    proxy.drop_connections();
    // The client notices the closed connection.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(
        guarded.begin_update(user, 2, Admission::Counted).await,
        Intake::Coordinated(BeginOutcome::Busy { .. } | BeginOutcome::Proceed(_))
    ));
}

/// A commit that Redis did not confirm is tried again on a new connection: the state that goes
/// with the replies already sent is stored, and the user's next answer finds their step.
#[tokio::test]
async fn a_commit_lost_to_a_redis_restart_is_stored_on_a_later_try() {
    let proxy = proxy().await;
    let guarded = through(&proxy, 20);
    let user = uid(3);
    let handled = handle_update(&guarded, user, 7, Admission::Counted, |_| async {
        // Redis restarts while the handler works (its replies are on their way).
        proxy.drop_connections();
        tokio::time::sleep(Duration::from_millis(50)).await;
        FsmWrite::Set(b"asked for the amount".to_vec())
    })
    .await;
    assert_eq!(handled, Handled::Committed);
    let next = handle_update(&guarded, user, 8, Admission::Counted, |ctx| async move {
        let data = ctx.fsm.and_then(|r| r.data).unwrap_or_default();
        assert_eq!(data, b"asked for the amount", "the next update reads the state committed on the later try");
        FsmWrite::Keep
    })
    .await;
    assert_eq!(next, Handled::Committed);
    assert_eq!(
        handle_update(&guarded, user, 7, Admission::Counted, |_| async { FsmWrite::Keep }).await,
        Handled::Duplicate
    );
}

/// A commit that cannot be stored before Redis comes back hands the update back, to be
/// delivered again: the user is not left at a step the conversation does not hold.
#[tokio::test]
async fn a_commit_redis_never_confirms_hands_the_update_back() {
    let proxy = proxy().await;
    let guarded = through(&proxy, 30);
    let handled = handle_update(&guarded, uid(4), 9, Admission::Counted, |_| async {
        proxy.cut();
        FsmWrite::Set(b"step".to_vec())
    })
    .await;
    assert_eq!(handled, Handled::CommitFailed);
    assert!(handled.wants_redelivery());
}

/// Real coordination whose next commit lands in Redis but whose reply is lost on the way back
/// (Redis unavailable, as the caller sees it).
struct ReplyLost<C> {
    inner: C,
    lose_next_commit: std::sync::atomic::AtomicBool,
}

impl<C: atlas::ports::Coordination> atlas::ports::Coordination for ReplyLost<C> {
    async fn begin_update(
        &self,
        user: atlas::domain::UserId,
        update_id: i64,
        admission: Admission,
    ) -> atlas::ports::coordination::CoordResult<BeginOutcome> {
        self.inner.begin_update(user, update_id, admission).await
    }

    async fn commit_update(
        &self,
        user: atlas::domain::UserId,
        ticket: &atlas::ports::coordination::UpdateTicket,
        write: FsmWrite,
    ) -> atlas::ports::coordination::CoordResult<atlas::ports::coordination::CommitOutcome> {
        let landed = self.inner.commit_update(user, ticket, write).await;
        if self.lose_next_commit.swap(false, std::sync::atomic::Ordering::SeqCst) {
            assert!(landed.is_ok(), "the commit itself went through");
            return Err(atlas::ports::coordination::CoordinationError::Unavailable);
        }
        landed
    }

    async fn extend_update(
        &self,
        user: atlas::domain::UserId,
        ticket: &atlas::ports::coordination::UpdateTicket,
    ) -> atlas::ports::coordination::CoordResult<bool> {
        self.inner.extend_update(user, ticket).await
    }

    async fn acquire_lock(
        &self,
        lock: atlas::ports::coordination::LockName,
        ttl: Duration,
    ) -> atlas::ports::coordination::CoordResult<Option<atlas::ports::coordination::LockGuard>> {
        self.inner.acquire_lock(lock, ttl).await
    }

    async fn release_lock(
        &self,
        guard: &atlas::ports::coordination::LockGuard,
    ) -> atlas::ports::coordination::CoordResult<bool> {
        self.inner.release_lock(guard).await
    }

    async fn check_rate(
        &self,
        user: atlas::domain::UserId,
        action: LimitedAction,
        attempt: &str,
    ) -> atlas::ports::coordination::CoordResult<atlas::ports::coordination::Decision> {
        self.inner.check_rate(user, action, attempt).await
    }

    async fn lead(
        &self,
        role: atlas::ports::coordination::Role,
        current: Option<&atlas::ports::coordination::Leadership>,
        ttl: Duration,
    ) -> atlas::ports::coordination::CoordResult<Option<atlas::ports::coordination::Leadership>> {
        self.inner.lead(role, current, ttl).await
    }

    async fn resign(
        &self,
        leadership: &atlas::ports::coordination::Leadership,
    ) -> atlas::ports::coordination::CoordResult<()> {
        self.inner.resign(leadership).await
    }

    async fn ping(&self) -> atlas::ports::coordination::CoordResult<()> {
        self.inner.ping().await
    }

    async fn shared_time(&self) -> atlas::ports::coordination::CoordResult<Option<chrono::DateTime<chrono::Utc>>> {
        self.inner.shared_time().await
    }
}

/// The commit landed and only its reply was lost: the later tries find the lease gone (the
/// commit released it), so nobody can tell it landed, and the update is handed back. Delivered
/// again, it is a duplicate: the handler does not run twice, and the state is the one written.
#[tokio::test]
async fn a_commit_that_landed_with_its_reply_lost_makes_the_redelivery_a_duplicate() {
    let inner = atlas_tests::redis_support::instance(&fresh_keys(), clock(), 40);
    let guarded = Guarded::new(
        ReplyLost { inner, lose_next_commit: std::sync::atomic::AtomicBool::new(true) },
        LegacyCoordination::new(clock(), ids(43)),
    );
    let user = uid(5);
    let runs = std::sync::atomic::AtomicU32::new(0);
    let handler = |_| async {
        runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        FsmWrite::Set(b"withdrawal confirmed".to_vec())
    };
    let first = handle_update(&guarded, user, 11, Admission::Counted, handler).await;
    assert_eq!(first, Handled::CommitFailed);
    assert!(first.wants_redelivery());
    let again = handle_update(&guarded, user, 11, Admission::Counted, handler).await;
    assert_eq!(again, Handled::Duplicate);
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1, "the handler ran once");
    let next = handle_update(&guarded, user, 12, Admission::Counted, |ctx| async move {
        assert_eq!(ctx.fsm.and_then(|r| r.data).as_deref(), Some(&b"withdrawal confirmed"[..]));
        FsmWrite::Keep
    })
    .await;
    assert_eq!(next, Handled::Committed);
}
