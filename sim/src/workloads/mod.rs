//! The workloads: what the instances are asked to do. Each runs the real `atlas` code (the
//! intake function, the guarded rate limiter, the leader loop) with the scenario's ports and
//! records what it saw; only the "dialogue" they drive is the workload's own (append the update
//! to the conversation state), so that checkers can tell exactly what each handler read.

pub mod chat;
pub mod leader;
pub mod limits;
pub mod reissue;

use std::time::Duration;

use atlas::ports::Ids;

use crate::clock::{SimClock, sim_now};
use crate::history::SharedHistory;
use crate::runner::Mode;
use crate::scenario::{Fault, Scenario};

/// Everything an instance's software needs; cloned into the host on every (re)start.
#[derive(Clone)]
pub struct InstanceCtx {
    pub index: usize,
    pub seed: u64,
    pub mode: Mode,
    pub scenario: std::sync::Arc<Scenario>,
    pub history: SharedHistory,
    pub clock: SimClock,
    pub lease: Duration,
}

impl InstanceCtx {
    /// Randomness for this instance's workload, different on every start.
    pub fn workload_ids(&self, start: Duration) -> atlas::ports::SeededIds {
        atlas::ports::SeededIds::new(self.seed ^ ((self.index as u64 + 1) << 40) ^ start.as_millis() as u64)
    }

    /// Waits out any pause of this instance that covers now (a frozen process resumes where it was).
    pub async fn wait_out_pause(&self) {
        for fault in &self.scenario.faults {
            if let Fault::Pause { instance, at_secs, for_secs } = fault {
                let (from, to) = (Duration::from_secs_f64(*at_secs), Duration::from_secs_f64(at_secs + for_secs));
                let now = sim_now();
                if *instance == self.index && now >= from && now < to {
                    tokio::time::sleep(to - now).await;
                }
            }
        }
    }
}

/// A uniformly random duration in `[lo, hi]` milliseconds.
pub fn between(ids: &dyn Ids, [lo, hi]: [u64; 2]) -> Duration {
    Duration::from_millis(lo + ids.next_u64() % (hi.saturating_sub(lo) + 1))
}

/// Sleeps until simulated time `at` (returns at once if it has passed).
pub async fn sleep_until(at: Duration) {
    let now = sim_now();
    if at > now {
        tokio::time::sleep(at - now).await;
    }
}
