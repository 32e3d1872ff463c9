//! Scheduling the background work of `workers/` in a running instance: each leader-only worker
//! under its own leader lease (`leader::lead`), auto-renewal and activation on every instance.
//! A tick that filled its batch is followed at once by another; otherwise the worker sleeps its
//! interval. On shutdown every loop finishes the tick in hand and the leases are resigned.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::leader::lead;
use super::wiring::{Adapters, App};
use crate::domain::Payable;
use crate::ports::coordination::Role;
use crate::workers::{Lease, Tally, activation, broadcast, cleanup, notices, payments, renewal};

/// How the workers run.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Off: this instance runs no background work (a load benchmark, a test of the intake).
    pub enabled: bool,
    /// The pause between two ticks of a worker that found less than a batch.
    pub interval: Duration,
    /// The most items one tick handles.
    pub batch: u32,
    /// The leader lease of each leader-only worker.
    pub leader_ttl: Duration,
    /// Expiry reminders this many hours before the end (and one at the end).
    pub reminder_hours: Vec<u16>,
    /// Trial notices this many hours before the trial ends (and one at the end).
    pub trial_hours: Vec<u16>,
    /// Auto-renewal renews this long before the expiry.
    pub renewal_horizon: Duration,
    /// A key is taken back this long after its subscription ended.
    pub retire_grace: Duration,
    /// The pause between two broadcast messages.
    pub broadcast_pace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> WorkerConfig {
        WorkerConfig {
            enabled: true,
            interval: Duration::from_secs(10),
            batch: 100,
            // Longer than the longest tick (a page of the watcher with Crypto Pay's retries): the
            // lease is renewed between rounds of work; a round that runs past it stops at its
            // next effect (`Lease::holds`) and the lease is renewed or lost.
            leader_ttl: Duration::from_secs(60),
            reminder_hours: vec![72, 24, 3],
            trial_hours: vec![24],
            renewal_horizon: Duration::from_secs(24 * 3600),
            retire_grace: Duration::from_secs(3600),
            broadcast_pace: broadcast::BROADCAST_PACE,
        }
    }
}

/// Runs every worker until `stop` turns true.
pub async fn run_workers<A: Adapters>(
    app: Arc<App<A>>,
    config: WorkerConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    if !config.enabled {
        return;
    }
    let stopped = || {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    let config = &config;
    let app = &app;
    let stopping = &stop;
    let cursor: Arc<Mutex<Option<Payable>>> = Arc::default();
    let led = |role: Role| {
        let cursor = cursor.clone();
        lead(
            &app.coordination,
            &*app.clock,
            role,
            config.leader_ttl,
            config.interval,
            move |held| {
                let cursor = cursor.clone();
                async move {
                    let lease = Lease::Held(&held, &*app.clock);
                    let batch = config.batch;
                    // A full batch is followed at once by the next, while the lease holds.
                    loop {
                        let full = |tally: Tally| {
                            counted(role.name(), tally);
                            tally.done >= batch
                        };
                        let more = match role {
                            // The watcher walks every page of open orders.
                            Role::PaymentWatcher => {
                                let mut at = *cursor.lock().unwrap_or_else(|p| p.into_inner());
                                let tally = payments::tick(app, lease, &mut at, batch).await;
                                full(tally);
                                *cursor.lock().unwrap_or_else(|p| p.into_inner()) = at;
                                // A page that failed (the store, the provider) waits for the
                                // next interval instead of spinning.
                                at.is_some() && tally.failed == 0
                            }
                            Role::Reminders => {
                                full(notices::tick(app, lease, false, &config.reminder_hours, batch).await)
                            }
                            Role::TrialNotices => {
                                full(notices::tick(app, lease, true, &config.trial_hours, batch).await)
                            }
                            Role::ExpiryCleanup => {
                                let retired = cleanup::tick(app, lease, config.retire_grace, batch).await;
                                let reconciled = cleanup::reconcile(app, lease, batch).await;
                                full(retired) || full(reconciled)
                            }
                            Role::Broadcasts => full(broadcast::tick(app, lease, config.broadcast_pace, batch).await),
                            Role::Poller => unreachable!("the poller is the intake's"),
                        };
                        if !more || !lease.holds() || *stopping.borrow() {
                            break;
                        }
                    }
                }
            },
            stopped(),
        )
    };
    let everywhere = |activating: bool| {
        let mut stop = stop.clone();
        async move {
            loop {
                let (name, tally) = if activating {
                    ("activation", activation::tick(app, Lease::None, config.batch).await)
                } else {
                    ("renewal", renewal::tick(app, Lease::None, config.renewal_horizon, config.batch).await)
                };
                counted(name, tally);
                if tally.done >= config.batch && !*stop.borrow() {
                    continue;
                }
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(config.interval) => {}
                }
            }
        }
    };
    tokio::join!(
        led(Role::PaymentWatcher),
        led(Role::Reminders),
        led(Role::TrialNotices),
        led(Role::ExpiryCleanup),
        led(Role::Broadcasts),
        everywhere(true),
        everywhere(false),
    );
}

/// `atlas_worker_items_total{worker, outcome}`: what each worker did.
fn counted(worker: &'static str, tally: Tally) {
    for (outcome, n) in [("done", tally.done), ("skipped", tally.skipped), ("failed", tally.failed)] {
        if n > 0 {
            metrics::counter!("atlas_worker_items_total", "worker" => worker, "outcome" => outcome)
                .increment(u64::from(n));
        }
    }
}
