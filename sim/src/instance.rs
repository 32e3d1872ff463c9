//! What one simulated instance's software is given on each (re)start, and the small helpers of
//! simulated time every workload uses. Below the workloads, the VPN panel and the world: they
//! all import it, it imports none of them.

use std::time::Duration;

use atlas::ports::{Ids, SeededIds};

use crate::clock::{SimClock, sim_now};
use crate::history::SharedHistory;
use crate::scenario::{Mode, Scenario};

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
    /// Pauses as the runner starts them: (instance, until).
    pub pauses: Pauses,
}

/// The pauses in force, shared by the runner (which starts them on schedule, or on whoever leads)
/// and the instances (which wait them out at their next await point).
pub type Pauses = std::sync::Arc<std::sync::Mutex<Vec<(usize, Duration)>>>;

impl InstanceCtx {
    /// Randomness for this instance's workload, different on every start.
    pub fn workload_ids(&self, start: Duration) -> SeededIds {
        SeededIds::new(self.seed ^ ((self.index as u64 + 1) << 40) ^ start.as_millis() as u64)
    }

    /// Waits out any pause of this instance that covers now (a frozen process resumes where it was).
    pub async fn wait_out_pause(&self) {
        loop {
            let now = sim_now();
            let until = self
                .pauses
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(i, until)| *i == self.index && *until > now)
                .map(|(_, until)| *until)
                .max();
            match until {
                Some(until) => tokio::time::sleep(until - now).await,
                None => return,
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
