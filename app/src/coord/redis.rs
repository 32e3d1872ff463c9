//! The Coordination port on Redis: every operation is one of the Lua scripts in `lua/`, run
//! atomically by Redis on its own clock (`TIME`), loaded by SHA with a fallback on NOSCRIPT.

use std::sync::Arc;
use std::time::Duration;

use redis::{Script, Value};

use super::connector::{Dialer, RedisConnector};
use super::fsm::check_size;
use super::keys::KeySpace;
use super::limits::{self, Algorithm, FENCE_TTL, FSM_TTL, Flood, LEASE_TTL, UPDATE_DONE_TTL};
use crate::domain::UserId;
use crate::ports::coordination::*;
use crate::ports::{Clock, Ids};

/// The scripts, one per file. `Script` sends EVALSHA and, on NOSCRIPT (Redis restarted or its
/// script cache was flushed), loads the script and tries again.
struct Scripts {
    begin_update: Script,
    commit_update: Script,
    extend_update: Script,
    acquire: Script,
    renew: Script,
    release: Script,
    rate_limit: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            begin_update: Script::new(include_str!("lua/begin_update.lua")),
            commit_update: Script::new(include_str!("lua/commit_update.lua")),
            extend_update: Script::new(include_str!("lua/extend_update.lua")),
            acquire: Script::new(include_str!("lua/acquire.lua")),
            renew: Script::new(include_str!("lua/renew.lua")),
            release: Script::new(include_str!("lua/release.lua")),
            rate_limit: Script::new(include_str!("lua/rate_limit.lua")),
        }
    }
}

pub struct RedisCoordination<D: Dialer> {
    connector: RedisConnector<D>,
    keys: KeySpace,
    scripts: Scripts,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    lease_ttl: Duration,
    flood: Flood,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn unexpected(what: &str, value: &Value) -> CoordinationError {
    CoordinationError::Unexpected(anyhow::anyhow!("unexpected reply to {what}: {value:?}"))
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(s) => Some(s),
        Value::Okay => Some("OK"),
        _ => None,
    }
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

fn array(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        _ => &[],
    }
}

/// `{flag, number}` replies of acquire and rate_limit.
fn flag_and_number(what: &str, value: &Value) -> Result<(bool, i64), CoordinationError> {
    match array(value) {
        [flag, n] => match (int(flag), int(n)) {
            (Some(flag), Some(n)) => Ok((flag == 1, n)),
            _ => Err(unexpected(what, value)),
        },
        _ => Err(unexpected(what, value)),
    }
}

fn after_ms(n: i64) -> Duration {
    Duration::from_millis(n.max(0) as u64)
}

impl<D: Dialer> RedisCoordination<D> {
    pub fn new(
        connector: RedisConnector<D>,
        keys: KeySpace,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn Ids>,
    ) -> RedisCoordination<D> {
        RedisCoordination {
            connector,
            keys,
            scripts: Scripts::new(),
            clock,
            ids,
            lease_ttl: LEASE_TTL,
            flood: Flood::default(),
        }
    }

    /// Overrides how long a handler holds its chat's lease (tests and the simulation shorten it).
    pub fn with_lease_ttl(mut self, lease_ttl: Duration) -> Self {
        self.lease_ttl = lease_ttl;
        self
    }

    /// Overrides the per-user flood limit (tests that drive one user faster than a person can).
    pub fn with_flood(mut self, flood: Flood) -> Self {
        self.flood = flood;
        self
    }

    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// The start-up and periodic health check: a short-lived write, so that a replica or a
    /// demoted primary (which still answers PING) counts as unhealthy.
    pub async fn ping(&self) -> Result<(), CoordinationError> {
        let key = self.keys.health();
        let reply: String =
            self.connector
                .call(|mut c| async move {
                    redis::cmd("SET").arg(key).arg(1).arg("PX").arg(10_000).query_async(&mut c).await
                })
                .await?;
        if reply == "OK" {
            Ok(())
        } else {
            Err(CoordinationError::Unexpected(anyhow::anyhow!("health write answered {reply:?}")))
        }
    }

    async fn run(&self, invocation: redis::ScriptInvocation<'_>) -> Result<Value, CoordinationError> {
        self.connector.call(|mut c| async move { invocation.invoke_async(&mut c).await }).await
    }

    /// Runs a script, and once more, with the same arguments, when Redis was unavailable: after
    /// Redis restarts (or fails over) the first call on the old connection fails though Redis
    /// answers, and the connector redials at once. Only for scripts whose second run with the
    /// same arguments is safe should the first have run after all: a begin under the same token
    /// (the script lets it proceed), a rate check of the same attempt (counted once).
    async fn run_twice<'a>(
        &self,
        invocation: impl Fn() -> redis::ScriptInvocation<'a>,
    ) -> Result<Value, CoordinationError> {
        match self.run(invocation()).await {
            Err(CoordinationError::Unavailable) => self.run(invocation()).await,
            reply => reply,
        }
    }

    async fn acquire(
        &self,
        lease_key: String,
        fence_key: String,
        token: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, CoordinationError> {
        let mut invocation = self.scripts.acquire.prepare_invoke();
        invocation.key(lease_key).key(fence_key).arg(token).arg(ms(ttl)).arg(ms(FENCE_TTL));
        let reply = self.run(invocation).await?;
        let (acquired, n) = flag_and_number("acquire", &reply)?;
        Ok(acquired.then_some(n as u64))
    }

    async fn release(&self, lease_key: String, token: &str) -> Result<bool, CoordinationError> {
        let mut invocation = self.scripts.release.prepare_invoke();
        invocation.key(lease_key).arg(token);
        let reply = self.run(invocation).await?;
        Ok(int(&reply) == Some(1))
    }
}

impl<D: Dialer> Coordination for RedisCoordination<D> {
    async fn begin_update(&self, user: UserId, update_id: i64, admission: Admission) -> CoordResult<BeginOutcome> {
        let token = self.ids.token();
        let invocation = || {
            let mut invocation = self.scripts.begin_update.prepare_invoke();
            invocation
                .key(self.keys.fsm(user))
                .key(self.keys.lease(user))
                .key(self.keys.update(user, update_id))
                .key(self.keys.flood(user))
                .arg(&token)
                .arg(ms(self.lease_ttl))
                .arg(ms(UPDATE_DONE_TTL))
                .arg(self.flood.window.as_micros() as u64 / u64::from(self.flood.max.max(1)))
                .arg(self.flood.window.as_micros() as u64)
                .arg(if admission == Admission::Exempt { "1" } else { "0" });
            invocation
        };
        // Should the first try have run after all, the script finds the update in progress under
        // this very token and proceeds with it (no lease to wait out).
        let reply = self.run_twice(invocation).await?;
        let items = array(&reply);
        match (items.first().and_then(text), items.get(1).and_then(int)) {
            (Some("dup"), _) => Ok(BeginOutcome::Duplicate),
            (Some("taken"), _) => Ok(BeginOutcome::InProgress),
            (Some("busy"), Some(n)) => Ok(BeginOutcome::Busy { retry_after: after_ms(n) }),
            (Some("flood"), Some(n)) => Ok(BeginOutcome::Flooded { retry_after: after_ms(n) }),
            (Some("ok"), Some(version)) => {
                let data = match items.get(2) {
                    Some(Value::BulkString(bytes)) => Some(bytes.clone()),
                    _ => None,
                };
                Ok(BeginOutcome::Proceed(UpdateTicket {
                    update_id,
                    lease_token: token,
                    lease_ttl: self.lease_ttl,
                    fsm: FsmRecord { version: version as u64, data },
                }))
            }
            _ => Err(unexpected("begin_update", &reply)),
        }
    }

    async fn extend_update(&self, user: UserId, ticket: &UpdateTicket) -> CoordResult<bool> {
        let mut invocation = self.scripts.extend_update.prepare_invoke();
        invocation
            .key(self.keys.lease(user))
            .key(self.keys.update(user, ticket.update_id))
            .arg(&ticket.lease_token)
            .arg(ms(ticket.lease_ttl));
        let reply = self.run(invocation).await?;
        match int(&reply) {
            Some(n) => Ok(n == 1),
            None => Err(unexpected("extend_update", &reply)),
        }
    }

    async fn commit_update(&self, user: UserId, ticket: &UpdateTicket, write: FsmWrite) -> CoordResult<CommitOutcome> {
        let (mode, data): (&str, &[u8]) = match &write {
            FsmWrite::Set(data) => {
                check_size(data)?;
                ("set", data)
            }
            FsmWrite::Clear => ("clear", b""),
            FsmWrite::Keep => ("keep", b""),
            FsmWrite::Retry => ("retry", b""),
        };
        let mut invocation = self.scripts.commit_update.prepare_invoke();
        invocation
            .key(self.keys.fsm(user))
            .key(self.keys.lease(user))
            .key(self.keys.update(user, ticket.update_id))
            .arg(&ticket.lease_token)
            .arg(ticket.fsm.version)
            .arg(mode)
            .arg(data)
            .arg(ms(FSM_TTL))
            .arg(ms(UPDATE_DONE_TTL));
        let reply = self.run(invocation).await?;
        match text(&reply) {
            Some("ok") => Ok(CommitOutcome::Committed),
            Some("lease_lost") => Ok(CommitOutcome::LeaseLost),
            Some("conflict") => Ok(CommitOutcome::VersionConflict),
            _ => Err(unexpected("commit_update", &reply)),
        }
    }

    async fn acquire_lock(&self, lock: LockName, ttl: Duration) -> CoordResult<Option<LockGuard>> {
        let token = self.ids.token();
        let fencing_token = self.acquire(self.keys.lock(lock), self.keys.fence(lock), &token, ttl).await?;
        Ok(fencing_token.map(|fencing_token| LockGuard { lock, token, fencing_token }))
    }

    async fn release_lock(&self, guard: &LockGuard) -> CoordResult<bool> {
        self.release(self.keys.lock(guard.lock), &guard.token).await
    }

    async fn check_rate(&self, user: UserId, action: LimitedAction, attempt: &str) -> CoordResult<Decision> {
        let limit = limits::limit(action);
        let algorithm = match limit.algorithm {
            Algorithm::SlidingWindow => "window",
            Algorithm::Gcra => "gcra",
        };
        let invocation = || {
            let mut invocation = self.scripts.rate_limit.prepare_invoke();
            invocation
                .key(self.keys.limit(user, action))
                .arg(algorithm)
                .arg(limit.max)
                .arg(limit.window.as_micros() as u64)
                .arg(attempt);
            invocation
        };
        // The attempt keeps its id: one whose first try was counted after all is not counted
        // twice.
        let reply = self.run_twice(invocation).await?;
        let (allowed, retry_ms) = flag_and_number("rate_limit", &reply)?;
        Ok(if allowed { Decision::Allowed } else { Decision::Denied { retry_after: after_ms(retry_ms) } })
    }

    async fn lead(&self, role: Role, current: Option<&Leadership>, ttl: Duration) -> CoordResult<Option<Leadership>> {
        // The deadline counts from before the request: whatever the reply's delay, the lease in
        // Redis lasts at least until `valid_until`.
        let sent_at = self.clock.monotonic();
        if let Some(current) = current {
            let mut invocation = self.scripts.renew.prepare_invoke();
            invocation.key(self.keys.leader(role)).arg(&current.token).arg(ms(ttl));
            let reply = self.run(invocation).await?;
            return Ok((int(&reply) == Some(1)).then(|| Leadership { valid_until: sent_at + ttl, ..current.clone() }));
        }
        let token = self.ids.token();
        let epoch = self.acquire(self.keys.leader(role), self.keys.leader_epoch(role), &token, ttl).await?;
        Ok(epoch.map(|epoch| Leadership { role, token, epoch, valid_until: sent_at + ttl }))
    }

    async fn resign(&self, leadership: &Leadership) -> CoordResult<()> {
        self.release(self.keys.leader(leadership.role), &leadership.token).await.map(drop)
    }

    async fn ping(&self) -> CoordResult<()> {
        RedisCoordination::ping(self).await
    }

    /// Redis `TIME`: the clock the leases and the rate limits already go by.
    async fn shared_time(&self) -> CoordResult<Option<chrono::DateTime<chrono::Utc>>> {
        let (secs, micros): (i64, i64) =
            self.connector.call(|mut c| async move { redis::cmd("TIME").query_async(&mut c).await }).await?;
        let time = chrono::DateTime::from_timestamp(secs, 0)
            .map(|t| t + chrono::Duration::microseconds(micros))
            .ok_or_else(|| CoordinationError::Invalid(format!("TIME answered {secs} {micros}")))?;
        Ok(Some(time))
    }
}
