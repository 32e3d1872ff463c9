//! One wall clock for every instance. What an instance stores as a deadline (a purchase's
//! expiry, a subscription's end, a promo code's validity) is read by the others: the payment
//! watcher on another instance closes a purchase whose `expires_at` it sees passed. An instance
//! whose clock is an hour slow would open purchases born expired (the simulation's swarm found
//! one: the buyer never got the invoice). So each instance sets its wall clock by the clock the
//! coordination shares (Redis `TIME`, which the leases and rate limits already go by): at start,
//! before it takes an update, and every [`AGREE_EVERY`] after. The monotonic clock is the
//! instance's own, untouched.
//!
//! Between readings the clock is the last reading moved on by the instance's monotonic clock, so
//! a jump of the host's wall clock (an NTP step, a VM resumed) does not move it. When the shared
//! clock does not answer the instance keeps going from its last reading (from its own wall clock
//! until the first); a reading whose round trip took longer than [`TRUSTED_ROUND_TRIP`] is not
//! trusted. The legacy design has no shared clock: each process goes by its own, as the Python
//! bot did.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::coord::policy::Guarded;
use crate::ports::coordination::CoordinationError;
use crate::ports::{Clock, Coordination};

/// How often an instance sets its clock again (clocks drift slowly; NTP steps are rare).
pub const AGREE_EVERY: Duration = Duration::from_secs(60);
/// The next try after a reading that was not taken.
pub const AGREE_AGAIN: Duration = Duration::from_secs(5);
/// Tries at start, and the pause between them.
const START_TRIES: u32 = 3;
const AGREE_AGAIN_AT_START: Duration = Duration::from_millis(500);
/// Readings missed in a row (every 5 s) before an operator is told: a minute.
const MISSED_WORTH_A_WARNING: u32 = 12;
/// A reading is only as good as half its round trip.
pub const TRUSTED_ROUND_TRIP: Duration = Duration::from_secs(1);
/// An offset beyond this is worth an operator's look (the host's clock is off).
const SKEW_WORTH_A_WARNING: chrono::Duration = chrono::Duration::seconds(2);

#[derive(Default)]
struct State {
    /// The shared time last read, and the monotonic time it stands for.
    anchor: Option<(DateTime<Utc>, Duration)>,
    /// The latest time told: a new reading a little behind the last one holds the clock still
    /// rather than step it back (what one instance writes keeps its order).
    told: Option<DateTime<Utc>>,
}

/// What one try to read the shared clock came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    Taken,
    /// No answer, or one too slow to trust.
    Missed,
    /// The design shares no clock (legacy).
    NoSharedClock,
}

/// The instance's clock: after a reading of the shared clock, that reading moved on by the
/// instance's monotonic clock (a jump of the host's wall clock, an NTP step or a VM resumed,
/// does not move it); before the first, the host's own wall clock.
pub struct AgreedClock {
    own: Arc<dyn Clock>,
    state: Mutex<State>,
    /// Readings not taken in a row (for the warning).
    missed: AtomicU32,
}

impl AgreedClock {
    pub fn new(own: Arc<dyn Clock>) -> AgreedClock {
        AgreedClock { own, state: Mutex::default(), missed: AtomicU32::new(0) }
    }

    /// Reads the shared clock and takes it. A call that met Redis unavailable is made once more
    /// (the first after a restart meets the dead connection); only the call that answered is
    /// timed.
    pub async fn agree<C: Coordination>(&self, coordination: &Guarded<C>) -> Reading {
        let mut again = true;
        let (shared, sent) = loop {
            let sent = self.own.monotonic();
            match coordination.shared_time().await {
                Ok(Some(shared)) => break (shared, sent),
                Ok(None) => return Reading::NoSharedClock,
                Err(CoordinationError::Unavailable) if again => again = false,
                Err(e) => {
                    tracing::debug!(error = %e, "shared clock not read");
                    return self.missed();
                }
            }
        };
        let round_trip = self.own.monotonic().saturating_sub(sent);
        if round_trip > TRUSTED_ROUND_TRIP {
            tracing::debug!(round_trip_ms = round_trip.as_millis() as u64, "shared clock read too slowly; not taken");
            return self.missed();
        }
        // The shared clock was read somewhere within the round trip: its middle.
        let at = sent + round_trip / 2;
        let offset = shared - self.own.now();
        let first = {
            let mut state = self.state();
            let first = state.anchor.replace((shared, at)).is_none();
            if first {
                // The host's own clock, told before, may be hours off: it is not held to.
                state.told = None;
            }
            first
        };
        if first && offset.abs() > SKEW_WORTH_A_WARNING {
            let offset_ms = offset.num_milliseconds();
            tracing::warn!(offset_ms, "this host's clock is off the shared clock; going by the shared one");
        }
        self.missed.store(0, Ordering::Relaxed);
        Reading::Taken
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn missed(&self) -> Reading {
        let missed = self.missed.fetch_add(1, Ordering::Relaxed) + 1;
        if missed == MISSED_WORTH_A_WARNING {
            tracing::warn!(missed, "the shared clock has not been read for a while; keeping the last reading");
        }
        Reading::Missed
    }

    /// Sets the clock at start: a few tries, [`AGREE_AGAIN_AT_START`] apart, before the first
    /// update is taken (the first one also dials Redis). `Missed` when none was taken: the
    /// instance starts on its own clock and keeps trying.
    pub async fn agree_at_start<C: Coordination>(&self, coordination: &Guarded<C>) -> Reading {
        for _ in 0..START_TRIES {
            match self.agree(coordination).await {
                Reading::Missed => tokio::time::sleep(AGREE_AGAIN_AT_START).await,
                reading => return reading,
            }
        }
        tracing::warn!("the shared clock could not be read at start; going by this host's clock until it can");
        Reading::Missed
    }

    /// Sets the clock again every [`AGREE_EVERY`] (every [`AGREE_AGAIN`] after a reading that
    /// was not taken), for as long as it is polled; at once done where there is no shared clock.
    pub async fn keep_agreeing<C: Coordination>(&self, coordination: &Guarded<C>, mut last: Reading) {
        loop {
            match last {
                Reading::NoSharedClock => return,
                Reading::Taken => tokio::time::sleep(AGREE_EVERY).await,
                Reading::Missed => tokio::time::sleep(AGREE_AGAIN).await,
            }
            last = self.agree(coordination).await;
        }
    }
}

impl Clock for AgreedClock {
    fn now(&self) -> DateTime<Utc> {
        let mut state = self.state();
        let now = match state.anchor {
            Some((shared, at)) => {
                let since = self.own.monotonic().saturating_sub(at);
                shared + chrono::Duration::from_std(since).unwrap_or_default()
            }
            None => self.own.now(),
        };
        let now = state.told.map_or(now, |told| told.max(now));
        state.told = Some(now);
        now
    }

    fn monotonic(&self) -> Duration {
        self.own.monotonic()
    }
}
