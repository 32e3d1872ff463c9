//! What the bot does when Redis cannot be asked (connection refused, timed out, mid-reconnect),
//! every rule in one place. Nothing panics and nothing waits for Redis: each call gets an answer
//! at once, and the next call after Redis returns uses it again (the connector redials with
//! backoff).
//!
//! 1. **Rate limits.** Money actions (withdrawal requests, payment attempts, promo attempts) are
//!    refused with "try again later" ([`RateVerdict::TryLater`]): never let through unlimited.
//!    Other limited actions fall back to this instance's own in-memory limiter.
//! 2. **Intake.** An update whose begin fails is handled *degraded*: as a fresh conversation
//!    (main menu), without dedupe, lease or FSM, and nothing is committed. Commands that need no
//!    state still work; a half-finished conversation resumes once Redis is back (its record is
//!    still there). Money reached from a degraded update still meets rule 1, which refuses.
//! 3. **Commit.** A new state that cannot be stored (too large) keeps the old state and frees the
//!    chat; a commit Redis does not answer leaves the state unsaved (the lease then expires).
//! 4. **Locks.** A key reissue whose lock cannot be taken is refused with "try again later"; a
//!    release that fails is left to the lock's TTL (the fencing token guards the store).
//! 5. **Leadership.** A leader that cannot renew keeps acting only until its lease's local
//!    deadline, then stops; no instance leads until Redis is back. Leader-only work is idempotent
//!    in PostgreSQL, so a gap delays it and loses nothing.

use std::time::Duration;

use super::legacy::LegacyCoordination;
use super::limits::{self, WhenUnavailable};
use crate::domain::UserId;
use crate::ports::coordination::{
    Admission, BeginOutcome, CommitOutcome, CoordinationError, Decision, FsmWrite, Leadership, LimitedAction,
    LockGuard, LockName, Role, UpdateTicket,
};
use crate::ports::{Clock, Coordination};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitVerdict {
    Committed,
    /// The new state was refused (too large): the old one stays, the chat is free.
    StateRefused,
    LeaseLost,
    VersionConflict,
    /// Redis did not answer: the state was not saved (the lease expires by itself).
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockVerdict {
    Held(LockGuard),
    /// Someone else holds it.
    Busy,
    /// Redis is unavailable: refuse with "try again later".
    TryLater,
}

/// The shared coordination with the failure policy above, and the local fallback limiter.
pub struct Guarded<C: Coordination> {
    shared: C,
    local: LegacyCoordination,
}

/// What became of a try to extend a running handler's chat lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extended {
    Yes,
    /// The lease is gone or someone else's.
    Lost,
    /// Redis did not answer.
    Unknown,
}

impl<C: Coordination> Guarded<C> {
    pub fn new(shared: C, local: LegacyCoordination) -> Guarded<C> {
        Guarded { shared, local }
    }

    pub fn shared(&self) -> &C {
        &self.shared
    }

    /// Rule 1. (The Redis adapter tries a check once more, with the same attempt id, before it
    /// says Redis is unavailable.)
    pub async fn check_rate(&self, user: UserId, action: LimitedAction, attempt: &str) -> RateVerdict {
        let decision = match self.shared.check_rate(user, action, attempt).await {
            Ok(decision) => decision,
            Err(e) => {
                tracing::warn!(error = %e, user_id = user.get(), action = action.name(), "rate limit unavailable");
                match limits::limit(action).when_unavailable {
                    WhenUnavailable::Refuse => return RateVerdict::TryLater,
                    WhenUnavailable::LocalLimiter => match self.local.check_rate(user, action, attempt).await {
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

    /// Rule 2. (The Redis adapter tries a begin once more, with the same token, before it says
    /// Redis is unavailable: the first call after a restart fails on the old connection.)
    pub async fn begin_update(&self, user: UserId, update_id: i64, admission: Admission) -> Intake {
        match self.shared.begin_update(user, update_id, admission).await {
            Ok(outcome) => {
                if let BeginOutcome::Proceed(ticket) = &outcome {
                    assert_eq!(ticket.update_id, update_id, "a ticket for another update");
                }
                Intake::Coordinated(outcome)
            }
            Err(e) => {
                tracing::warn!(error = %e, user_id = user.get(), update_id, "update handled degraded");
                Intake::Degraded
            }
        }
    }

    /// Keeps a running handler's chat lease (a Redis that does not answer is not an answer: the
    /// commit will tell whether the lease held).
    pub async fn extend_update(&self, user: UserId, ticket: &UpdateTicket) -> Extended {
        match self.shared.extend_update(user, ticket).await {
            Ok(true) => Extended::Yes,
            Ok(false) => Extended::Lost,
            Err(e) => {
                let (user_id, update_id) = (user.get(), ticket.update_id);
                if matches!(e, CoordinationError::Unavailable) {
                    tracing::debug!(error = %e, user_id, update_id, "chat lease not extended");
                } else {
                    tracing::warn!(error = %e, user_id, update_id, "chat lease not extended");
                }
                Extended::Unknown
            }
        }
    }

    /// Rule 3.
    pub async fn commit_update(&self, user: UserId, ticket: &UpdateTicket, write: FsmWrite) -> CommitVerdict {
        let mut verdict = CommitVerdict::Committed;
        let mut committed = self.shared.commit_update(user, ticket, write).await;
        if let Err(CoordinationError::Invalid(why)) = &committed {
            tracing::warn!(user_id = user.get(), update_id = ticket.update_id, why = why.as_str(), "state refused");
            verdict = CommitVerdict::StateRefused;
            committed = self.shared.commit_update(user, ticket, FsmWrite::Keep).await;
        }
        match committed {
            Ok(CommitOutcome::Committed) => verdict,
            Ok(CommitOutcome::LeaseLost) => CommitVerdict::LeaseLost,
            Ok(CommitOutcome::VersionConflict) => CommitVerdict::VersionConflict,
            Err(e) => {
                tracing::warn!(user_id = user.get(), update_id = ticket.update_id, error = %e, "commit failed");
                CommitVerdict::Failed
            }
        }
    }

    /// Rule 4, taking a lock.
    pub async fn acquire_lock(&self, lock: LockName, ttl: Duration) -> LockVerdict {
        match self.shared.acquire_lock(lock, ttl).await {
            Ok(Some(guard)) => {
                assert!(guard.fencing_token > 0, "fencing tokens start above zero");
                LockVerdict::Held(guard)
            }
            Ok(None) => LockVerdict::Busy,
            Err(e) => {
                tracing::warn!(error = %e, ?lock, "lock unavailable");
                LockVerdict::TryLater
            }
        }
    }

    /// Rule 4, releasing it.
    pub async fn release_lock(&self, guard: &LockGuard) {
        if let Err(e) = self.shared.release_lock(guard).await {
            tracing::warn!(error = %e, lock = ?guard.lock, "lock not released; it ends at its TTL");
        }
    }

    /// Rule 5: acquires or renews the lease of `role`. A renewal keeps the epoch and token.
    pub async fn lead(
        &self,
        clock: &dyn Clock,
        role: Role,
        current: Option<&Leadership>,
        ttl: Duration,
    ) -> Option<Leadership> {
        match self.shared.lead(role, current, ttl).await {
            Ok(held) => {
                if let (Some(old), Some(new)) = (current, &held) {
                    assert_eq!((old.epoch, &old.token), (new.epoch, &new.token), "a renewal changed the lease");
                }
                held
            }
            Err(e) => {
                tracing::warn!(error = %e, role = role.name(), "leader lease not renewed");
                current.cloned().filter(|l| l.is_valid(clock))
            }
        }
    }

    /// Gives up a lease on shutdown; a failure is left to the lease's TTL.
    /// Whether the shared coordination answers (the fallback is not asked: `/readyz` reports
    /// Redis itself).
    pub async fn ping(&self) -> Result<(), CoordinationError> {
        self.shared.ping().await
    }

    /// The shared clock's time, `None` when the design has none.
    pub async fn shared_time(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, CoordinationError> {
        self.shared.shared_time().await
    }

    pub async fn resign(&self, leadership: &Leadership) {
        if let Err(e) = self.shared.resign(leadership).await {
            tracing::warn!(error = %e, role = leadership.role.name(), "lease not resigned; it ends at its TTL");
        }
    }
}
