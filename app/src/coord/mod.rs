//! Coordination between instances (DESIGN.md §3): the Redis implementation (Lua scripts in
//! `lua/`, one per file), the in-memory single-instance one, the key layout, the limits, the
//! failure policy and the health check. Redis never guards money alone: every effect it orders
//! is also fenced or idempotent in PostgreSQL.

pub mod connector;
pub mod fsm;
pub mod health;
pub mod keys;
pub mod limits;
pub mod memory;
pub mod policy;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use crate::domain::UserId;
use crate::ports::coordination::*;
use crate::ports::{Clock, Ids};
use crate::runtime::{CoordinationMode, Settings};
use connector::{RedisConnector, RedisTarget, TcpDialer};
use keys::KeySpace;
use memory::MemoryCoordination;

pub type LiveRedis = redis::RedisCoordination<TcpDialer>;

/// The implementation chosen by `COORDINATION`. Built once per process, so the size of its
/// variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum AnyCoordination {
    Redis(LiveRedis),
    Memory(MemoryCoordination),
}

impl AnyCoordination {
    /// Builds the configured implementation. Connecting is lazy: use the health check to know
    /// whether Redis answers.
    pub fn from_settings(
        settings: &Settings,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn Ids>,
    ) -> Result<AnyCoordination, String> {
        let prefix = settings.app_env.prefix();
        match (settings.coordination, &settings.redis_url) {
            (CoordinationMode::Memory, _) => Ok(AnyCoordination::Memory(MemoryCoordination::new(clock, ids))),
            (CoordinationMode::Redis, None) => Err(format!("{prefix}_REDIS_URL is required")),
            (CoordinationMode::Redis, Some(url)) => {
                let target = RedisTarget::from_url(url.url()).map_err(|e| format!("{prefix}_REDIS_URL: {e}"))?;
                let ca = match &settings.redis_ca_file {
                    Some(path) => Some(
                        std::fs::read(path)
                            .map_err(|e| format!("{prefix}_REDIS_CA_FILE: cannot read {}: {e}", path.display()))?,
                    ),
                    None => None,
                };
                let dialer =
                    TcpDialer::new(&target, ca.as_deref()).map_err(|e| format!("{prefix}_REDIS_CA_FILE: {e}"))?;
                let bot_id = settings.bot_token.as_ref().map_or(0, |t| t.bot_id());
                let keys = KeySpace::new(&settings.redis_prefix, settings.app_env.name(), bot_id);
                let connector = RedisConnector::new(dialer, target.info.clone(), clock.clone(), ids.clone());
                Ok(AnyCoordination::Redis(redis::RedisCoordination::new(connector, keys, clock, ids)))
            }
        }
    }
}

impl Coordination for AnyCoordination {
    async fn begin_update(&self, user: UserId, update_id: i64) -> CoordResult<BeginOutcome> {
        match self {
            AnyCoordination::Redis(c) => c.begin_update(user, update_id).await,
            AnyCoordination::Memory(c) => c.begin_update(user, update_id).await,
        }
    }

    async fn commit_update(&self, user: UserId, ticket: &UpdateTicket, write: FsmWrite) -> CoordResult<CommitOutcome> {
        match self {
            AnyCoordination::Redis(c) => c.commit_update(user, ticket, write).await,
            AnyCoordination::Memory(c) => c.commit_update(user, ticket, write).await,
        }
    }

    async fn acquire_lock(&self, lock: LockName, ttl: Duration) -> CoordResult<Option<LockGuard>> {
        match self {
            AnyCoordination::Redis(c) => c.acquire_lock(lock, ttl).await,
            AnyCoordination::Memory(c) => c.acquire_lock(lock, ttl).await,
        }
    }

    async fn release_lock(&self, guard: &LockGuard) -> CoordResult<bool> {
        match self {
            AnyCoordination::Redis(c) => c.release_lock(guard).await,
            AnyCoordination::Memory(c) => c.release_lock(guard).await,
        }
    }

    async fn check_rate(&self, user: UserId, action: LimitedAction) -> CoordResult<Decision> {
        match self {
            AnyCoordination::Redis(c) => c.check_rate(user, action).await,
            AnyCoordination::Memory(c) => c.check_rate(user, action).await,
        }
    }

    async fn lead(&self, role: Role, current: Option<&Leadership>, ttl: Duration) -> CoordResult<Option<Leadership>> {
        match self {
            AnyCoordination::Redis(c) => c.lead(role, current, ttl).await,
            AnyCoordination::Memory(c) => c.lead(role, current, ttl).await,
        }
    }

    async fn resign(&self, leadership: &Leadership) -> CoordResult<()> {
        match self {
            AnyCoordination::Redis(c) => c.resign(leadership).await,
            AnyCoordination::Memory(c) => c.resign(leadership).await,
        }
    }
}
