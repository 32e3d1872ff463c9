//! Simulated time and the Clock port on it. Wall-clock time is a fixed epoch plus the simulation's
//! elapsed time (plus a host's skew); monotonic time is the elapsed time. Nothing reads the OS clock.

use std::time::Duration;

use atlas::ports::Clock;
use chrono::{DateTime, TimeZone, Utc};

/// 2026-01-01T00:00:00Z: every run starts at the same instant.
pub const SIM_EPOCH_UNIX_SECS: i64 = 1_767_225_600;

/// Simulated time since the start of the run (zero outside a simulation).
pub fn sim_now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// A host's clock: the simulation's time, its wall clock off by `skew_ms` (either way).
#[derive(Clone, Copy, Debug, Default)]
pub struct SimClock {
    pub skew_ms: i64,
}

/// The wall-clock time `elapsed` into a run (on a clock without skew).
pub fn wall_clock(elapsed: Duration) -> DateTime<Utc> {
    let epoch = Utc.timestamp_opt(SIM_EPOCH_UNIX_SECS, 0).single().expect("a valid epoch");
    epoch + chrono::Duration::from_std(elapsed).unwrap_or_default()
}

impl Clock for SimClock {
    fn now(&self) -> DateTime<Utc> {
        wall_clock(sim_now()) + chrono::Duration::milliseconds(self.skew_ms)
    }

    fn monotonic(&self) -> Duration {
        sim_now()
    }
}
