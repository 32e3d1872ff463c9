//! The Coordination port in this process's memory: the old bot's design (audit parts 1, 2, 5,
//! 6), called `legacy` everywhere — conversation state in a map, the reissue lock a per-process
//! mutex, rate limits in per-process buckets on the local clock, and every instance its own
//! leader.
//!
//! It is correct for exactly one instance, and that is its use: a single-instance deployment,
//! the tests where its semantics coincide with Redis, the fallback limiter when Redis is down, and
//! the simulation's `--coordination legacy`, which must show each hazard of the audit.
//! Every entry expires as its Redis counterpart would (conversation records after `FSM_TTL`,
//! leases and locks at their deadline, limiter state once it no longer limits): an expired entry
//! is dropped when it is met, and a sweep every `SWEEP_EVERY_CALLS` calls drops the rest, so the
//! maps hold only what is alive.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::fsm::check_size;
use super::limits::{self, Algorithm, FSM_TTL, Flood, LEASE_TTL, UPDATE_DONE_TTL, algorithms};
use crate::domain::UserId;
use crate::ports::coordination::*;
use crate::ports::{Clock, Ids};

/// Update ids remembered at most (oldest forgotten first): a day of a busy bot's updates.
const SEEN_UPDATES_MAX: usize = 1_000_000;

/// How many calls pass between two sweeps of expired entries. A sweep walks the per-user maps
/// once (one entry per active user) and the front of the update marks; spread over this many
/// calls it costs little per call.
const SWEEP_EVERY_CALLS: u64 = 1_024;

/// What an update's mark says, as `begin_update.lua`'s marker values do.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Mark {
    /// Being handled under the lease of this token (`p:<token>`).
    Taken(String),
    /// Handled, or dropped for good (`done`, `flood`).
    Done,
}

#[derive(Default)]
struct Inner {
    /// Conversation records with the deadline of their TTL.
    fsm: BTreeMap<UserId, (FsmRecord, Duration)>,
    /// Chat leases: holder token and deadline.
    leases: BTreeMap<UserId, (String, Duration)>,
    /// Update ids taken, with the deadline of the mark and whether it is done (or still being
    /// handled under a lease); pruned in order of insertion.
    seen: BTreeMap<(UserId, i64), (Duration, Mark)>,
    seen_order: VecDeque<(UserId, i64)>,
    flood: BTreeMap<UserId, u64>,
    windows: BTreeMap<(UserId, LimitedAction), VecDeque<u64>>,
    cells: BTreeMap<(UserId, LimitedAction), u64>,
    locks: BTreeMap<LockName, (String, Duration)>,
    fence: u64,
    calls: u64,
}

impl Inner {
    /// Drops every entry that has expired by `now` (microseconds for the limiter state).
    fn sweep(&mut self, now: Duration) {
        let now_us = micros(now);
        self.fsm.retain(|_, (_, until)| *until > now);
        self.leases.retain(|_, (_, until)| *until > now);
        self.locks.retain(|_, (_, until)| *until > now);
        // Update marks expire roughly in the order they were made: drop from the front while the
        // oldest is gone or expired (amortized O(1); a live mark holds the ones behind it until
        // it expires, and SEEN_UPDATES_MAX bounds them all).
        while let Some(key) = self.seen_order.front() {
            if self.seen.get(key).is_some_and(|(until, _)| *until > now) {
                break;
            }
            self.seen.remove(key);
            self.seen_order.pop_front();
        }
        // A GCRA cell whose theoretical arrival time has passed limits nothing: as new.
        self.flood.retain(|_, tat| *tat > now_us);
        self.cells.retain(|_, tat| *tat > now_us);
        self.windows.retain(|(_, action), log| {
            let window_us = micros(limits::limit(*action).window);
            log.back().is_some_and(|&newest| newest + window_us > now_us)
        });
    }

    fn mark(&mut self, key: (UserId, i64), until: Duration, mark: Mark) {
        if self.seen.insert(key, (until, mark)).is_none() {
            self.seen_order.push_back(key);
        }
        while self.seen_order.len() > SEEN_UPDATES_MAX {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
    }

    fn live_lease(&mut self, user: UserId, now: Duration) -> Option<&(String, Duration)> {
        if self.leases.get(&user).is_some_and(|(_, until)| *until <= now) {
            self.leases.remove(&user);
        }
        self.leases.get(&user)
    }

    fn live_record(&mut self, user: UserId, now: Duration) -> FsmRecord {
        if self.fsm.get(&user).is_some_and(|(_, until)| *until <= now) {
            self.fsm.remove(&user);
        }
        self.fsm.get(&user).map(|(record, _)| record.clone()).unwrap_or_default()
    }
}

pub struct LegacyCoordination {
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    lease_ttl: Duration,
    flood: Flood,
    inner: Mutex<Inner>,
}

impl LegacyCoordination {
    pub fn new(clock: Arc<dyn Clock>, ids: Arc<dyn Ids>) -> LegacyCoordination {
        LegacyCoordination {
            clock,
            ids,
            lease_ttl: LEASE_TTL,
            flood: Flood::default(),
            inner: Mutex::new(Inner::default()),
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

    fn with<T>(&self, f: impl FnOnce(&mut Inner, Duration) -> T) -> T {
        let now = self.clock.monotonic();
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.calls += 1;
        if inner.calls.is_multiple_of(SWEEP_EVERY_CALLS) {
            inner.sweep(now);
        }
        f(&mut inner, now)
    }

    /// How many entries the maps hold (for tests of the sweep).
    pub fn entries(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.fsm.len()
            + inner.leases.len()
            + inner.seen.len()
            + inner.flood.len()
            + inner.windows.len()
            + inner.cells.len()
            + inner.locks.len()
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

impl Coordination for LegacyCoordination {
    async fn begin_update(&self, user: UserId, update_id: i64, admission: Admission) -> CoordResult<BeginOutcome> {
        let token = self.ids.token();
        let (lease_ttl, flood) = (self.lease_ttl, self.flood);
        Ok(self.with(|inner, now| {
            match inner.seen.get(&(user, update_id)) {
                Some((until, Mark::Done)) if *until > now => return BeginOutcome::Duplicate,
                Some((until, Mark::Taken(_))) if *until > now => return BeginOutcome::InProgress,
                _ => {}
            }
            if let Some((_, until)) = inner.live_lease(user, now) {
                return BeginOutcome::Busy { retry_after: *until - now };
            }
            let tat = inner.flood.entry(user).or_default();
            if let Decision::Denied { retry_after } =
                algorithms::gcra(tat, micros(now), flood.max, micros(flood.window))
                && admission == Admission::Counted
            {
                inner.mark((user, update_id), now + UPDATE_DONE_TTL, Mark::Done);
                return BeginOutcome::Flooded { retry_after };
            }
            inner.leases.insert(user, (token.clone(), now + lease_ttl));
            inner.mark((user, update_id), now + lease_ttl, Mark::Taken(token.clone()));
            let fsm = inner.live_record(user, now);
            BeginOutcome::Proceed(UpdateTicket { update_id, lease_token: token, lease_ttl, fsm })
        }))
    }

    async fn extend_update(&self, user: UserId, ticket: &UpdateTicket) -> CoordResult<bool> {
        Ok(self.with(|inner, now| {
            let Some((token, until)) = inner.leases.get_mut(&user).filter(|(_, until)| *until > now) else {
                return false;
            };
            if *token != ticket.lease_token {
                return false;
            }
            *until = now + ticket.lease_ttl;
            if let Some((until, Mark::Taken(taken))) = inner.seen.get_mut(&(user, ticket.update_id))
                && *taken == ticket.lease_token
            {
                *until = now + ticket.lease_ttl;
            }
            true
        }))
    }

    async fn commit_update(&self, user: UserId, ticket: &UpdateTicket, write: FsmWrite) -> CoordResult<CommitOutcome> {
        if let FsmWrite::Set(data) = &write {
            check_size(data)?;
        }
        Ok(self.with(|inner, now| {
            let holder = inner.live_lease(user, now).map(|(token, _)| token.clone());
            if holder.as_ref() != Some(&ticket.lease_token) {
                // As `commit_update.lua`: a lease that ran out still commits when nobody touched
                // the chat since (no holder, the update still this handler's, the same version);
                // refused as lost when the update is done or another's, as a conflict when the
                // chat moved on without it.
                let ours = match inner.seen.get(&(user, ticket.update_id)) {
                    Some((until, mark)) if *until > now => *mark == Mark::Taken(ticket.lease_token.clone()),
                    _ => true,
                };
                if !ours {
                    return CommitOutcome::LeaseLost;
                }
                let stored = inner.live_record(user, now).version;
                if holder.is_some() || (stored != ticket.fsm.version && stored != 0) {
                    return CommitOutcome::VersionConflict;
                }
            }
            inner.leases.remove(&user);
            if write == FsmWrite::Retry {
                inner.seen.remove(&(user, ticket.update_id));
                return CommitOutcome::Committed;
            }
            inner.mark((user, ticket.update_id), now + UPDATE_DONE_TTL, Mark::Done);
            let record = inner.live_record(user, now);
            if matches!(write, FsmWrite::Keep) {
                // As `commit_update.lua`: every update refreshes the conversation's TTL.
                if let Some((_, until)) = inner.fsm.get_mut(&user) {
                    *until = now + FSM_TTL;
                }
                return CommitOutcome::Committed;
            }
            if record.version != ticket.fsm.version && record.version != 0 {
                return CommitOutcome::VersionConflict;
            }
            let version = record.version.max(ticket.fsm.version) + 1;
            let data = match write {
                FsmWrite::Set(data) => Some(data),
                _ => None,
            };
            inner.fsm.insert(user, (FsmRecord { version, data }, now + FSM_TTL));
            CommitOutcome::Committed
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

    /// The old design's per-process buckets know nothing of attempts: each call counts.
    async fn check_rate(&self, user: UserId, action: LimitedAction, _attempt: &str) -> CoordResult<Decision> {
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

    /// This process's memory is always there.
    async fn ping(&self) -> CoordResult<()> {
        Ok(())
    }

    /// The legacy design shares nothing, its clock neither: each process goes by its own.
    async fn shared_time(&self) -> CoordResult<Option<chrono::DateTime<chrono::Utc>>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::ports::SeededIds;

    /// A clock the test moves by hand.
    #[derive(Default)]
    struct HandClock(AtomicU64);

    impl Clock for HandClock {
        fn now(&self) -> chrono::DateTime<chrono::Utc> {
            chrono::DateTime::UNIX_EPOCH + self.monotonic()
        }

        fn monotonic(&self) -> Duration {
            Duration::from_millis(self.0.load(Ordering::Relaxed))
        }
    }

    #[tokio::test]
    async fn expired_entries_are_swept_and_live_ones_kept() {
        let clock = Arc::new(HandClock::default());
        let c = LegacyCoordination::new(clock.clone(), Arc::new(SeededIds::new(1)));
        let advance = |d: Duration| clock.0.fetch_add(d.as_millis() as u64, Ordering::Relaxed);
        for n in 1..=200 {
            let user = UserId::new(n).unwrap();
            let BeginOutcome::Proceed(ticket) = c.begin_update(user, n, Admission::Counted).await.unwrap() else {
                panic!()
            };
            c.commit_update(user, &ticket, FsmWrite::Set(b"state".to_vec())).await.unwrap();
            c.check_rate(user, LimitedAction::PromoAttempt, "a").await.unwrap();
            c.acquire_lock(LockName::KeyReissue(user), Duration::from_secs(30)).await.unwrap();
        }
        assert!(c.entries() >= 200 * 5, "{} entries", c.entries());
        // A week and a day later, one user is active again: a conversation, a full promo window,
        // a held lock. The sweep must keep all of it and drop everything else.
        advance(FSM_TTL + Duration::from_secs(86_400));
        let keeper = UserId::new(1).unwrap();
        let BeginOutcome::Proceed(ticket) = c.begin_update(keeper, 9_999, Admission::Counted).await.unwrap() else {
            panic!()
        };
        assert_eq!(ticket.fsm, FsmRecord::default(), "the record outlived its TTL");
        c.commit_update(keeper, &ticket, FsmWrite::Set(b"alive".to_vec())).await.unwrap();
        for _ in 0..limits::limit(LimitedAction::PromoAttempt).max {
            assert_eq!(c.check_rate(keeper, LimitedAction::PromoAttempt, "a").await.unwrap(), Decision::Allowed);
        }
        let lock = c.acquire_lock(LockName::KeyReissue(keeper), Duration::from_secs(30)).await.unwrap();
        assert!(lock.is_some());
        for _ in 0..SWEEP_EVERY_CALLS {
            c.check_rate(UserId::new(2).unwrap(), LimitedAction::AdminCommand, "a").await.unwrap();
        }
        assert!(c.entries() <= 8, "{} entries left after the sweep", c.entries());
        assert!(
            matches!(c.check_rate(keeper, LimitedAction::PromoAttempt, "a").await.unwrap(), Decision::Denied { .. }),
            "the live window was swept"
        );
        assert_eq!(c.acquire_lock(LockName::KeyReissue(keeper), Duration::from_secs(30)).await.unwrap(), None);
        let BeginOutcome::Proceed(ticket) = c.begin_update(keeper, 10_000, Admission::Counted).await.unwrap() else {
            panic!()
        };
        assert_eq!(ticket.fsm.data.as_deref(), Some(&b"alive"[..]), "the live record was swept");
        // A conversation kept alive by updates that change nothing does not expire.
        c.commit_update(keeper, &ticket, FsmWrite::Keep).await.unwrap();
        for update in 10_001..10_010 {
            advance(FSM_TTL / 2);
            let BeginOutcome::Proceed(t) = c.begin_update(keeper, update, Admission::Counted).await.unwrap() else {
                panic!()
            };
            assert_eq!(t.fsm.data.as_deref(), Some(&b"alive"[..]), "an active conversation expired");
            c.commit_update(keeper, &t, FsmWrite::Keep).await.unwrap();
        }
    }
}
