//! The failure policy when Redis goes away: money actions refused with "try again later", other
//! actions on the local limiter, updates handled degraded, readiness false — and everything back
//! to normal by itself when Redis returns. Redis is cut by a proxy in front of the real server.

use std::time::{Duration, Instant};

use atlas::coord::connector::{RedisConnector, RedisTarget, TcpDialer};
use atlas::coord::health::{self, Readiness};
use atlas::coord::legacy::LegacyCoordination;
use atlas::coord::policy::{Guarded, Intake, RateVerdict};
use atlas::coord::redis::RedisCoordination;
use atlas::ports::coordination::{Admission, BeginOutcome, LimitedAction};
use atlas_tests::proxy::Proxy;
use atlas_tests::redis_support::{clock, fresh_keys, ids, target};
use atlas_tests::uid;

#[tokio::test]
async fn redis_outage_fails_money_closed_and_recovers_by_itself() {
    let real = target();
    let proxy = Proxy::start((real.host.clone(), real.port)).await;
    let through_proxy = RedisTarget { host: "127.0.0.1".into(), port: proxy.port(), ..real };
    let connector = RedisConnector::new(
        TcpDialer::new(&through_proxy, None).expect("plain TCP"),
        through_proxy.info.clone(),
        clock(),
        ids(1),
    );
    let guarded = Guarded::new(
        RedisCoordination::new(connector, fresh_keys(), clock(), ids(2)),
        LegacyCoordination::new(clock(), ids(3)),
    );
    let readiness = Readiness::default();
    let user = uid(1);

    assert!(health::check(guarded.shared(), &readiness).await);
    assert!(readiness.redis_ok());
    assert_eq!(guarded.check_rate(user, LimitedAction::PromoAttempt).await, RateVerdict::Allowed);

    proxy.cut();
    for action in [LimitedAction::PromoAttempt, LimitedAction::WithdrawalRequest, LimitedAction::PaymentAttempt] {
        assert_eq!(guarded.check_rate(user, action).await, RateVerdict::TryLater, "{action:?} must fail closed");
    }
    assert_eq!(guarded.check_rate(user, LimitedAction::AdminCommand).await, RateVerdict::Allowed, "local limiter");
    assert_eq!(guarded.begin_update(user, 1, Admission::Counted).await, Intake::Degraded);
    assert!(!health::check(guarded.shared(), &readiness).await);
    assert!(!readiness.redis_ok());

    proxy.restore().await;
    // The connector redials after its backoff (2 s at most, plus jitter): no restart needed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while guarded.check_rate(user, LimitedAction::PromoAttempt).await != RateVerdict::Allowed {
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
