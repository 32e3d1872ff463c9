//! One wall clock for every instance. What an instance stores as a deadline (a purchase's
//! expiry, a subscription's end, a promo code's validity) is read by the others: the payment
//! watcher on another instance closes a purchase whose `expires_at` it sees passed. An instance
//! whose clock is an hour slow would open purchases born expired (the simulation's swarm found
//! one: the buyer never got the invoice). So each instance sets its wall clock by the clock the
//! coordination shares (Redis `TIME`, which the leases and rate limits already go by): at start,
//! before it takes an update, and every [`AGREE_EVERY`] after. The monotonic clock is the
//! instance's own, untouched.
//!
//! When the shared clock does not answer the instance keeps the last offset it measured (its own
//! clock until the first); a reading whose round trip took longer than [`TRUSTED_ROUND_TRIP`] is
//! not trusted. The legacy design has no shared clock: each process goes by its own, as the
//! Python bot did.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::coord::policy::Guarded;
use crate::ports::{Clock, Coordination};

/// How often an instance sets its clock again (clocks drift slowly; NTP steps are rare).
pub const AGREE_EVERY: Duration = Duration::from_secs(60);
/// The next try after a reading that was not taken (the first one also dials Redis).
pub const AGREE_AGAIN: Duration = Duration::from_secs(5);
/// A reading is only as good as half its round trip.
pub const TRUSTED_ROUND_TRIP: Duration = Duration::from_secs(1);
/// An offset beyond this is worth an operator's look (the host's clock is off).
const SKEW_WORTH_A_WARNING: Duration = Duration::from_secs(2);

/// The instance's clock, its wall time moved by the offset last measured to the shared clock.
pub struct AgreedClock {
    own: Arc<dyn Clock>,
    offset_us: AtomicI64,
}

impl AgreedClock {
    pub fn new(own: Arc<dyn Clock>) -> AgreedClock {
        AgreedClock { own, offset_us: AtomicI64::new(0) }
    }

    /// Reads the shared clock once and takes its offset; `false` when there was nothing to
    /// take (no shared clock, no answer, or a round trip too long to trust).
    pub async fn agree<C: Coordination>(&self, coordination: &Guarded<C>) -> bool {
        let sent = self.own.monotonic();
        let own_at_send = self.own.now();
        let Some(shared) = coordination.shared_time().await else { return false };
        let round_trip = self.own.monotonic().saturating_sub(sent);
        if round_trip > TRUSTED_ROUND_TRIP {
            tracing::debug!(round_trip_ms = round_trip.as_millis() as u64, "shared clock read too slowly; not taken");
            return false;
        }
        // The shared clock was read somewhere within the round trip: its middle.
        let own_then = own_at_send + chrono::Duration::from_std(round_trip / 2).unwrap_or_default();
        let offset = (shared - own_then).num_microseconds().unwrap_or(i64::MAX);
        let before = self.offset_us.swap(offset, Ordering::Relaxed);
        let worth_warning = SKEW_WORTH_A_WARNING.as_micros() as i64;
        if offset.abs() > worth_warning && (offset - before).abs() > worth_warning / 2 {
            tracing::warn!(
                offset_ms = offset / 1000,
                "this host's clock is off the shared clock; going by the shared one"
            );
        }
        true
    }

    /// Sets the clock again every [`AGREE_EVERY`] (every [`AGREE_AGAIN`] after a reading that
    /// was not taken), for as long as it is polled.
    pub async fn keep_agreeing<C: Coordination>(&self, coordination: &Guarded<C>, mut agreed: bool) {
        loop {
            tokio::time::sleep(if agreed { AGREE_EVERY } else { AGREE_AGAIN }).await;
            agreed = self.agree(coordination).await;
        }
    }
}

impl Clock for AgreedClock {
    fn now(&self) -> DateTime<Utc> {
        self.own.now() + chrono::Duration::microseconds(self.offset_us.load(Ordering::Relaxed))
    }

    fn monotonic(&self) -> Duration {
        self.own.monotonic()
    }
}
