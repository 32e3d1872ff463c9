//! Leader-only work (audit part 6): the payment watcher, reminders, trial notices, expiry
//! cleanup and the poller run on one instance at a time. This loop holds the role's lease,
//! renewing it every TTL/3, and runs the work only while the lease's local deadline (monotonic,
//! counted from before the renewal was sent) has not passed. A paused or cut-off leader therefore
//! stops no later than its lease ends in Redis. Every leader-only effect is still idempotent in
//! PostgreSQL: two leaders could waste work, never repeat an effect.

use std::future::Future;
use std::time::Duration;

use crate::coord::policy::Guarded;
use crate::ports::coordination::{Leadership, Role};
use crate::ports::{Clock, Coordination};

/// The shortest sleep of the loop, so a zero interval cannot spin.
const TICK_MIN: Duration = Duration::from_millis(1);

/// Holds `role` when it can and calls `work` every `work_interval` while it does, until
/// `shutdown` resolves; then resigns, so a standby takes over at once.
pub async fn lead<C, W, Fut>(
    coordination: &Guarded<C>,
    clock: &dyn Clock,
    role: Role,
    ttl: Duration,
    work_interval: Duration,
    mut work: W,
    shutdown: impl Future<Output = ()>,
) where
    C: Coordination,
    W: FnMut(Leadership) -> Fut,
    Fut: Future<Output = ()>,
{
    tokio::pin!(shutdown);
    let renew_every = ttl / 3;
    let mut current: Option<Leadership> = None;
    let (mut next_renew, mut next_work) = (Duration::ZERO, Duration::ZERO);
    loop {
        if clock.monotonic() >= next_renew {
            // Rule 5 of the failure policy: without Redis, act on the old lease until its deadline.
            let renewed = coordination.lead(clock, role, current.as_ref(), ttl).await;
            match (&current, &renewed) {
                (None, Some(l)) => tracing::info!(role = role.name(), epoch = l.epoch, "leading"),
                (Some(l), None) => {
                    tracing::info!(role = role.name(), epoch = l.epoch, "no longer leading")
                }
                _ => {}
            }
            metrics::gauge!("atlas_leader", "role" => role.name()).set(if renewed.is_some() { 1.0 } else { 0.0 });
            current = renewed;
            next_renew = clock.monotonic() + renew_every;
        }
        if let Some(held) = current.clone().filter(|l| l.is_valid(clock))
            && clock.monotonic() >= next_work
        {
            work(held).await;
            next_work = clock.monotonic() + work_interval;
        }
        // A standby (or a leader whose lease ran out) has no work due: it wakes to renew only.
        // (Waking for work it cannot do spun every millisecond on every standby instance, found
        // by profiling the simulation.)
        let working = current.as_ref().is_some_and(|l| l.is_valid(clock));
        let due = if working { next_renew.min(next_work) } else { next_renew };
        let wake = due.saturating_sub(clock.monotonic()).max(TICK_MIN);
        tokio::select! {
            _ = &mut shutdown => {
                if let Some(held) = &current {
                    coordination.resign(held).await;
                }
                metrics::gauge!("atlas_leader", "role" => role.name()).set(0.0);
                return;
            }
            _ = tokio::time::sleep(wake) => {}
        }
    }
}
