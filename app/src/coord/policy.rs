//! What the bot does when Redis cannot be asked (connection refused, timed out, mid-reconnect).
//! Nothing panics and nothing waits for Redis: each call gets an answer at once, and the next
//! call after Redis returns uses it again (the connector redials with backoff).
//!
//! - Money actions (withdrawal requests, payment attempts, promo attempts) are refused with
//!   "try again later" ([`RateVerdict::TryLater`]): never let through unlimited.
//! - Other rate-limited actions fall back to this instance's in-memory limiter.
//! - An update whose begin fails is handled *degraded*: as a fresh conversation (main menu),
//!   without dedupe, lease or FSM, and nothing is committed. Commands that need no state still
//!   work; a half-finished conversation resumes once Redis is back (its record is still there).
//!   Money reached from a degraded update still meets the limiter above, which refuses.
//! - A key reissue whose lock cannot be taken is refused with "try again later".
//! - A leader that cannot renew stops at its local deadline; no instance leads until Redis is
//!   back. Leader-only work is idempotent in PostgreSQL, so a gap delays it and loses nothing.

use std::time::Duration;

use super::limits::{self, WhenUnavailable};
use super::memory::MemoryCoordination;
use crate::domain::UserId;
use crate::ports::Coordination;
use crate::ports::coordination::{BeginOutcome, Decision, LimitedAction};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateVerdict {
    Allowed,
    Denied {
        retry_after: Duration,
    },
    /// Redis is unavailable and this action fails closed: reply "try again later".
    TryLater,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intake {
    /// The normal path: the begin script's answer.
    Coordinated(BeginOutcome),
    /// Redis is unavailable: handle statelessly and commit nothing.
    Degraded,
}

/// The shared coordination with the failure policy above, and the local fallback limiter.
pub struct Guarded<C: Coordination> {
    shared: C,
    local: MemoryCoordination,
}

impl<C: Coordination> Guarded<C> {
    pub fn new(shared: C, local: MemoryCoordination) -> Guarded<C> {
        Guarded { shared, local }
    }

    pub fn shared(&self) -> &C {
        &self.shared
    }

    pub async fn check_rate(&self, user: UserId, action: LimitedAction) -> RateVerdict {
        let decision = match self.shared.check_rate(user, action).await {
            Ok(decision) => decision,
            Err(e) => {
                tracing::warn!(error = %e, user_id = user.get(), ?action, "rate limit unavailable");
                match limits::limit(action).when_unavailable {
                    WhenUnavailable::Refuse => return RateVerdict::TryLater,
                    WhenUnavailable::LocalLimiter => match self.local.check_rate(user, action).await {
                        Ok(decision) => decision,
                        Err(_) => return RateVerdict::TryLater,
                    },
                }
            }
        };
        match decision {
            Decision::Allowed => RateVerdict::Allowed,
            Decision::Denied { retry_after } => RateVerdict::Denied { retry_after },
        }
    }

    pub async fn begin_update(&self, user: UserId, update_id: i64) -> Intake {
        match self.shared.begin_update(user, update_id).await {
            Ok(outcome) => Intake::Coordinated(outcome),
            Err(e) => {
                tracing::warn!(error = %e, user_id = user.get(), update_id, "update handled degraded");
                Intake::Degraded
            }
        }
    }
}
