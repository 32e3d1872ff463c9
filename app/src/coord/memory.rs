//! The Coordination port in this process's memory: the old bot's design (audit parts 1, 2, 5,
//! 6) — conversation state in a map, the reissue lock a per-process mutex, rate limits in
//! per-process buckets on the local clock, and every instance its own leader.
//!
//! It is correct for exactly one instance, and that is its use: a single-instance deployment,
//! the tests where its semantics coincide with Redis, the fallback limiter when Redis is down, and
//! the simulation's `--coordination legacy`, which must show each hazard of the audit.
//! Its maps hold one entry per active user; expired entries are dropped as they are met.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::fsm::check_size;
use super::limits::{self, Algorithm, FLOOD_MAX, FLOOD_WINDOW, LEASE_TTL, UPDATE_DONE_TTL, algorithms};
use crate::domain::UserId;
use crate::ports::coordination::*;
use crate::ports::{Clock, Ids};

/// Update ids remembered at most (oldest forgotten first): a day of a busy bot's updates.
const SEEN_UPDATES_MAX: usize = 1_000_000;

#[derive(Default)]
struct Inner {
    fsm: BTreeMap<UserId, FsmRecord>,
    /// Chat leases: holder token and deadline.
    leases: BTreeMap<UserId, (String, Duration)>,
    /// Update ids taken, with the deadline of the mark; pruned in order of insertion.
    seen: BTreeMap<(UserId, i64), Duration>,
    seen_order: VecDeque<(UserId, i64)>,
    flood: BTreeMap<UserId, u64>,
    windows: BTreeMap<(UserId, LimitedAction), VecDeque<u64>>,
    cells: BTreeMap<(UserId, LimitedAction), u64>,
    locks: BTreeMap<LockName, (String, Duration)>,
    fence: u64,
}

pub struct MemoryCoordination {
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    lease_ttl: Duration,
    inner: Mutex<Inner>,
}

impl MemoryCoordination {
    pub fn new(clock: Arc<dyn Clock>, ids: Arc<dyn Ids>) -> MemoryCoordination {
        MemoryCoordination { clock, ids, lease_ttl: LEASE_TTL, inner: Mutex::new(Inner::default()) }
    }

    /// Overrides how long a handler holds its chat's lease (tests and the simulation shorten it).
    pub fn with_lease_ttl(mut self, lease_ttl: Duration) -> Self {
        self.lease_ttl = lease_ttl;
        self
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner, Duration) -> T) -> T {
        let now = self.clock.monotonic();
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut inner, now)
    }

    fn mark(inner: &mut Inner, key: (UserId, i64), until: Duration) {
        if inner.seen.insert(key, until).is_none() {
            inner.seen_order.push_back(key);
        }
        while inner.seen_order.len() > SEEN_UPDATES_MAX {
            if let Some(old) = inner.seen_order.pop_front() {
                inner.seen.remove(&old);
            }
        }
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

impl Coordination for MemoryCoordination {
    async fn begin_update(&self, user: UserId, update_id: i64) -> CoordResult<BeginOutcome> {
        let token = self.ids.token();
        let lease_ttl = self.lease_ttl;
        Ok(self.with(|inner, now| {
            if inner.seen.get(&(user, update_id)).is_some_and(|&until| until > now) {
                return BeginOutcome::Duplicate;
            }
            if let Some((_, until)) = inner.leases.get(&user).filter(|(_, until)| *until > now) {
                return BeginOutcome::Busy { retry_after: *until - now };
            }
            let tat = inner.flood.entry(user).or_default();
            if let Decision::Denied { retry_after } =
                algorithms::gcra(tat, micros(now), FLOOD_MAX, micros(FLOOD_WINDOW))
            {
                Self::mark(inner, (user, update_id), now + UPDATE_DONE_TTL);
                return BeginOutcome::Flooded { retry_after };
            }
            inner.leases.insert(user, (token.clone(), now + lease_ttl));
            Self::mark(inner, (user, update_id), now + lease_ttl);
            let fsm = inner.fsm.get(&user).cloned().unwrap_or_default();
            BeginOutcome::Proceed(UpdateTicket { update_id, lease_token: token, fsm })
        }))
    }

    async fn commit_update(&self, user: UserId, ticket: &UpdateTicket, write: FsmWrite) -> CoordResult<CommitOutcome> {
        if let FsmWrite::Set(data) = &write {
            check_size(data)?;
        }
        Ok(self.with(|inner, now| {
            let holds =
                inner.leases.get(&user).is_some_and(|(token, until)| *token == ticket.lease_token && *until > now);
            if !holds {
                return CommitOutcome::LeaseLost;
            }
            inner.leases.remove(&user);
            Self::mark(inner, (user, ticket.update_id), now + UPDATE_DONE_TTL);
            let record = inner.fsm.entry(user).or_default();
            let version = record.version.max(ticket.fsm.version);
            match write {
                FsmWrite::Keep => CommitOutcome::Committed,
                _ if record.version != ticket.fsm.version && record.version != 0 => CommitOutcome::VersionConflict,
                FsmWrite::Set(data) => {
                    *record = FsmRecord { version: version + 1, data: Some(data) };
                    CommitOutcome::Committed
                }
                FsmWrite::Clear => {
                    *record = FsmRecord { version: version + 1, data: None };
                    CommitOutcome::Committed
                }
            }
        }))
    }

    async fn acquire_lock(&self, lock: LockName, ttl: Duration) -> CoordResult<Option<LockGuard>> {
        let token = self.ids.token();
        Ok(self.with(|inner, now| {
            if inner.locks.get(&lock).is_some_and(|(_, until)| *until > now) {
                return None;
            }
            inner.locks.insert(lock, (token.clone(), now + ttl));
            inner.fence += 1;
            Some(LockGuard { lock, token, fencing_token: inner.fence })
        }))
    }

    async fn release_lock(&self, guard: &LockGuard) -> CoordResult<bool> {
        Ok(self.with(|inner, now| {
            let held = inner.locks.get(&guard.lock).is_some_and(|(token, until)| *token == guard.token && *until > now);
            if held {
                inner.locks.remove(&guard.lock);
            }
            held
        }))
    }

    async fn check_rate(&self, user: UserId, action: LimitedAction) -> CoordResult<Decision> {
        let limit = limits::limit(action);
        Ok(self.with(|inner, now| match limit.algorithm {
            Algorithm::SlidingWindow => {
                let log = inner.windows.entry((user, action)).or_default();
                algorithms::sliding_window(log, micros(now), limit.max, micros(limit.window))
            }
            Algorithm::Gcra => {
                let tat = inner.cells.entry((user, action)).or_default();
                algorithms::gcra(tat, micros(now), limit.max, micros(limit.window))
            }
        }))
    }

    /// Every instance is its own leader: the old design ran every worker everywhere.
    async fn lead(&self, role: Role, current: Option<&Leadership>, ttl: Duration) -> CoordResult<Option<Leadership>> {
        let now = self.clock.monotonic();
        Ok(Some(match current {
            Some(current) => Leadership { valid_until: now + ttl, ..current.clone() },
            None => {
                let epoch = self.with(|inner, _| {
                    inner.fence += 1;
                    inner.fence
                });
                Leadership { role, token: self.ids.token(), epoch, valid_until: now + ttl }
            }
        }))
    }

    async fn resign(&self, _leadership: &Leadership) -> CoordResult<()> {
        Ok(())
    }
}
