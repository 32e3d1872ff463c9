//! Live adapters of the Clock and Ids ports: the system clock and OS-seeded randomness.
//! The only place in the core's crate that reads the OS clock.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::ports::{Clock, Ids, SeededIds};

pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock { origin: Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// Randomness seeded once from the OS.
pub struct OsIds(SeededIds);

impl OsIds {
    pub fn new() -> anyhow::Result<OsIds> {
        let seed = getrandom::u64().map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        Ok(OsIds(SeededIds::new(seed)))
    }
}

impl Ids for OsIds {
    fn next_u64(&self) -> u64 {
        self.0.next_u64()
    }
}
