//! Background work (audit parts 4 and 6), as bounded ticks over the ports: each tick handles at
//! most a batch and returns what it did. The runtime schedules them (`runtime::workers`):
//!
//! - leader-only, under a leader lease checked before each effect ([`Lease::holds`]): the payment
//!   watcher, expiry reminders, trial notices, expiry cleanup with the key reconciler, and the
//!   broadcast sender;
//! - on every instance, coordinated by the database: auto-renewal (`FOR UPDATE SKIP LOCKED`, one
//!   charge per subscription and period) and key activation (only from pending, bounded attempts
//!   with backoff).
//!
//! Every leader-only effect is also idempotent in PostgreSQL (a notice, a broadcast delivery is
//! claimed before it is sent; a payment is counted once by its provider id), so two leaders at
//! once (a paused leader waking up) waste work but never repeat an effect.

pub mod activation;
pub mod broadcast;
pub mod cleanup;
pub mod notices;
pub mod notify;
pub mod payments;
pub mod renewal;

use crate::ports::Clock;
use crate::ports::coordination::Leadership;

/// What a tick did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Effects made (a key created, a notice sent, a payment counted, ...).
    pub done: u32,
    /// Items looked at and left (claimed by someone else, not due, busy).
    pub skipped: u32,
    /// Items that failed this time (a provider or Telegram error); a later tick tries again.
    pub failed: u32,
}

/// Whether this instance may make a leader-only effect now.
#[derive(Clone, Copy)]
pub enum Lease<'a> {
    /// Work coordinated by the database alone: always allowed.
    None,
    /// Work under a leader lease: allowed while the lease's local deadline has not passed.
    Held(&'a Leadership, &'a dyn Clock),
}

impl Lease<'_> {
    pub fn holds(&self) -> bool {
        match self {
            Lease::None => true,
            Lease::Held(leadership, clock) => leadership.is_valid(*clock),
        }
    }
}
