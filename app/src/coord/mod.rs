//! Coordination between instances (DESIGN.md §3): the Redis implementation (Lua scripts in
//! `lua/`, one per file), the legacy in-memory one, the key layout, the limits, the failure
//! policy and the health check. Redis never guards money alone: every effect it orders is also
//! fenced or idempotent in PostgreSQL. Nothing here knows the settings: `runtime::wiring` builds
//! these from them.

pub mod connector;
pub mod fsm;
pub mod health;
pub mod keys;
pub mod legacy;
pub mod limits;
pub mod policy;
pub mod redis;

use std::time::Duration;

use crate::domain::UserId;
use crate::ports::Coordination;
use crate::ports::coordination::*;
use connector::Dialer;
use legacy::LegacyCoordination;
use redis::RedisCoordination;

/// One of the two designs, chosen at start-up (live, by `COORDINATION`; in the simulation, by
/// the run's mode). Built once per instance, so the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum AnyCoordination<D: Dialer> {
    Redis(RedisCoordination<D>),
    Legacy(LegacyCoordination),
}

impl<D: Dialer> Coordination for AnyCoordination<D> {
    async fn begin_update(&self, user: UserId, update_id: i64, admission: Admission) -> CoordResult<BeginOutcome> {
        match self {
            AnyCoordination::Redis(c) => c.begin_update(user, update_id, admission).await,
            AnyCoordination::Legacy(c) => c.begin_update(user, update_id, admission).await,
        }
    }

    async fn commit_update(&self, user: UserId, ticket: &UpdateTicket, write: FsmWrite) -> CoordResult<CommitOutcome> {
        match self {
            AnyCoordination::Redis(c) => c.commit_update(user, ticket, write).await,
            AnyCoordination::Legacy(c) => c.commit_update(user, ticket, write).await,
        }
    }

    async fn extend_update(&self, user: UserId, ticket: &UpdateTicket) -> CoordResult<bool> {
        match self {
            AnyCoordination::Redis(c) => c.extend_update(user, ticket).await,
            AnyCoordination::Legacy(c) => c.extend_update(user, ticket).await,
        }
    }

    async fn acquire_lock(&self, lock: LockName, ttl: Duration) -> CoordResult<Option<LockGuard>> {
        match self {
            AnyCoordination::Redis(c) => c.acquire_lock(lock, ttl).await,
            AnyCoordination::Legacy(c) => c.acquire_lock(lock, ttl).await,
        }
    }

    async fn release_lock(&self, guard: &LockGuard) -> CoordResult<bool> {
        match self {
            AnyCoordination::Redis(c) => c.release_lock(guard).await,
            AnyCoordination::Legacy(c) => c.release_lock(guard).await,
        }
    }

    async fn check_rate(&self, user: UserId, action: LimitedAction, attempt: &str) -> CoordResult<Decision> {
        match self {
            AnyCoordination::Redis(c) => c.check_rate(user, action, attempt).await,
            AnyCoordination::Legacy(c) => c.check_rate(user, action, attempt).await,
        }
    }

    async fn lead(&self, role: Role, current: Option<&Leadership>, ttl: Duration) -> CoordResult<Option<Leadership>> {
        match self {
            AnyCoordination::Redis(c) => c.lead(role, current, ttl).await,
            AnyCoordination::Legacy(c) => c.lead(role, current, ttl).await,
        }
    }

    async fn resign(&self, leadership: &Leadership) -> CoordResult<()> {
        match self {
            AnyCoordination::Redis(c) => c.resign(leadership).await,
            AnyCoordination::Legacy(c) => c.resign(leadership).await,
        }
    }

    async fn shared_time(&self) -> CoordResult<Option<chrono::DateTime<chrono::Utc>>> {
        match self {
            AnyCoordination::Redis(c) => c.shared_time().await,
            AnyCoordination::Legacy(c) => c.shared_time().await,
        }
    }

    async fn ping(&self) -> CoordResult<()> {
        match self {
            AnyCoordination::Redis(c) => Coordination::ping(c).await,
            AnyCoordination::Legacy(c) => c.ping().await,
        }
    }
}
