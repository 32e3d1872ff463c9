//! Redis health: a ping at start-up (in prod the bot refuses to start without Redis, naming the
//! variable) and a periodic check whose result is the instance's readiness.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::connector::Dialer;
use super::redis::RedisCoordination;

/// How often the health check pings Redis: often enough that readiness follows an outage
/// within seconds, rarely enough to cost nothing.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// Readiness as a load balancer or orchestrator reads it.
#[derive(Debug, Default)]
pub struct Readiness {
    redis: AtomicBool,
}

impl Readiness {
    pub fn redis_ok(&self) -> bool {
        self.redis.load(Ordering::Relaxed)
    }

    pub fn set_redis(&self, ok: bool) {
        if self.redis.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                tracing::info!("Redis is reachable: ready");
            } else {
                tracing::warn!("Redis is unreachable: not ready (money actions are refused)");
            }
        }
    }
}

/// Pings once and records the result.
pub async fn check<D: Dialer>(redis: &RedisCoordination<D>, readiness: &Readiness) -> bool {
    let ok = redis.ping().await.is_ok();
    readiness.set_redis(ok);
    ok
}

/// Pings every `interval` until `shutdown` resolves.
pub async fn watch<D: Dialer>(
    redis: &RedisCoordination<D>,
    readiness: &Readiness,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        check(redis, readiness).await;
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
