//! Time, as the core sees it. Live: the system clock; simulation: a fixed epoch plus simulated
//! time. Nothing in the core reads the OS clock directly.

use std::time::Duration;

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync + 'static {
    /// Wall-clock time in UTC, for what is stored (expiries, created_at). It MAY jump (NTP,
    /// skew between instances): never measure a lease or a timeout with it.
    fn now(&self) -> DateTime<Utc>;

    /// Time since an arbitrary origin fixed for this process. It MUST never go backwards; leases
    /// and deadlines are measured on it.
    fn monotonic(&self) -> Duration;
}
