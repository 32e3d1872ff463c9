//! How a provider call copes with a provider that fails: a bounded number of attempts with
//! exponential backoff and jitter (the jitter drawn from the Ids port, so the simulation replays
//! it), and a per-instance circuit breaker that stops calling a provider after a run of failures
//! and lets one call through after a cool-down. Only failures that say nothing about the request
//! (timeouts, connection errors, 5xx) are retried or counted by the breaker; a refusal is not.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ports::{Clock, Ids};

/// Consecutive failures that open the breaker.
pub const BREAKER_FAILURES: u32 = 5;
/// How long an open breaker refuses calls before letting one through.
pub const BREAKER_COOL_DOWN: Duration = Duration::from_secs(30);

/// What a failed attempt was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The provider did not answer, or answered 5xx: the call may be repeated.
    Transient,
    /// The provider refused the request: repeating it would not help.
    Refused,
}

/// Attempts, backoff and the breaker of one provider.
pub struct Resilience {
    pub name: &'static str,
    pub attempts: u32,
    pub backoff: Duration,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    breaker: Mutex<Breaker>,
}

#[derive(Default)]
struct Breaker {
    failures: u32,
    /// While open: when (on the monotonic clock) one call may try again.
    open_until: Option<Duration>,
}

/// The breaker is open: the provider was not called.
#[derive(Debug, thiserror::Error)]
#[error("{0} is failing; calls paused for a while")]
pub struct BreakerOpen(pub &'static str);

impl Resilience {
    pub fn new(name: &'static str, clock: Arc<dyn Clock>, ids: Arc<dyn Ids>) -> Resilience {
        Resilience {
            name,
            attempts: 3,
            backoff: Duration::from_millis(200),
            clock,
            ids,
            breaker: Mutex::new(Breaker::default()),
        }
    }

    /// Calls `call` up to `attempts` times (once when `retry` is false) while it fails
    /// transiently, waiting `backoff`·2ⁿ plus up to as much again of jitter between attempts.
    /// `Err(None)`: the breaker is open and nothing was called.
    pub async fn call<T, E, F, Fut>(
        &self,
        retry: bool,
        classify: impl Fn(&E) -> Failure,
        mut call: F,
    ) -> Result<T, Option<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if !self.admit() {
            tracing::warn!(event = "PROVIDER_CIRCUIT_OPEN", provider = self.name, "call not made");
            return Err(None);
        }
        let attempts = if retry { self.attempts.max(1) } else { 1 };
        let mut pause = self.backoff;
        for attempt in 1..=attempts {
            match call().await {
                Ok(value) => {
                    self.record(true);
                    return Ok(value);
                }
                Err(e) => {
                    let failure = classify(&e);
                    if failure == Failure::Refused {
                        self.record(true);
                        return Err(Some(e));
                    }
                    if attempt == attempts {
                        self.record(false);
                        tracing::warn!(event = "PROVIDER_FAILED", provider = self.name, attempts, "gave up");
                        return Err(Some(e));
                    }
                    let jitter_ms = self.ids.next_u64() % (pause.as_millis() as u64 + 1);
                    tokio::time::sleep(pause + Duration::from_millis(jitter_ms)).await;
                    pause *= 2;
                }
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    fn admit(&self) -> bool {
        let mut breaker = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        match breaker.open_until {
            Some(until) if self.clock.monotonic() < until => false,
            Some(_) => {
                // Half open: this call tries; a failure opens the breaker again at once.
                breaker.open_until = None;
                breaker.failures = BREAKER_FAILURES - 1;
                true
            }
            None => true,
        }
    }

    fn record(&self, healthy: bool) {
        let mut breaker = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        if healthy {
            breaker.failures = 0;
            return;
        }
        breaker.failures += 1;
        if breaker.failures >= BREAKER_FAILURES {
            tracing::warn!(event = "PROVIDER_CIRCUIT_OPENED", provider = self.name, "pausing calls");
            breaker.open_until = Some(self.clock.monotonic() + BREAKER_COOL_DOWN);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::ports::SeededIds;

    struct Manual(Mutex<Duration>);

    impl Clock for Manual {
        fn now(&self) -> chrono::DateTime<chrono::Utc> {
            chrono::DateTime::from_timestamp(0, 0).unwrap()
        }

        fn monotonic(&self) -> Duration {
            *self.0.lock().unwrap()
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_refusals_are_not_and_the_breaker_opens() {
        let clock = Arc::new(Manual(Mutex::new(Duration::ZERO)));
        let mut r = Resilience::new("test", clock.clone(), Arc::new(SeededIds::new(1)));
        r.backoff = Duration::from_millis(1);
        let calls = AtomicU32::new(0);
        let classify = |e: &&str| if *e == "refused" { Failure::Refused } else { Failure::Transient };
        let failing = || {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err::<(), _>("timeout") }
        };
        assert!(r.call(true, classify, failing).await.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 3, "three attempts");
        let refused = || {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err::<(), _>("refused") }
        };
        assert!(r.call(true, classify, refused).await.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 4, "a refusal is not repeated");
        for _ in 0..BREAKER_FAILURES {
            let _ = r.call(false, classify, failing).await;
        }
        let before = calls.load(Ordering::Relaxed);
        assert!(matches!(r.call(true, classify, failing).await, Err(None)), "open: not called");
        assert_eq!(calls.load(Ordering::Relaxed), before);
        *clock.0.lock().unwrap() += BREAKER_COOL_DOWN;
        assert!(r.call(false, classify, || async { Ok::<_, &str>(()) }).await.is_ok(), "half open: one call");
        assert!(r.call(false, classify, failing).await.is_err());
        assert!(matches!(r.call(false, classify, failing).await, Err(Some(_))), "closed again after a success");
    }
}
