//! Coordination between instances: update intake (dedupe, per-chat lease, flood limit, FSM
//! record), locks with fencing tokens, rate limits and the leader lease. Implemented on Redis
//! with Lua scripts, and in memory as the audit's old single-instance design, `legacy` (which the
//! simulation uses to show the hazards are real). Redis is never the only guard of money: every
//! effect it orders is also fenced or idempotent in PostgreSQL.

use std::future::Future;
use std::time::Duration;

use crate::domain::UserId;

/// A user's conversation state as stored: an opaque, versioned encoding of the dialogue enum.
/// `version` grows by one on every committed change; 0 means no record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsmRecord {
    pub version: u64,
    pub data: Option<Vec<u8>>,
}

/// Permission to handle one update of one chat: the lease token and the state it starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateTicket {
    pub update_id: i64,
    pub lease_token: String,
    /// How long the lease lasts unless extended (`Coordination::extend_update`).
    pub lease_ttl: Duration,
    pub fsm: FsmRecord,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BeginOutcome {
    Proceed(UpdateTicket),
    /// This update id was already handled (or dropped for good): drop it.
    Duplicate,
    /// This update id is being handled right now by some handler, which may still hand it back
    /// (`FsmWrite::Retry`) or die: the update must be delivered again later, not dropped.
    InProgress,
    /// Another handler of this chat holds the lease: retry shortly.
    Busy {
        retry_after: Duration,
    },
    /// The user is over the flood limit: drop quietly.
    Flooded {
        retry_after: Duration,
    },
}

/// What a handler leaves in the conversation record when it commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsmWrite {
    /// The new encoded state (at most `FSM_DATA_MAX_BYTES`).
    Set(Vec<u8>),
    /// The conversation ended: back to the main menu.
    Clear,
    /// Nothing changed (a read-only command, or the handler failed): only release the lease.
    Keep,
    /// The update could not be handled now and must not be lost (money received while the
    /// store failed): the record stays as it was, the lease is released and the update is
    /// forgotten, so that its redelivery is handled.
    Retry,
}

/// Whether an update counts against the user's flood limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Counted; dropped over the limit.
    Counted,
    /// Never dropped by the flood limit: money received (a payment, a pre-checkout query that
    /// Telegram waits on). Still counted while the user is within the limit.
    Exempt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// The lease expired and the update is done or taken by another delivery of it: nothing
    /// was written.
    LeaseLost,
    /// The record changed since begin, or (the lease expired) the chat moved on without this
    /// update: another update holds the lease or changed the record. Nothing was written.
    VersionConflict,
}

/// The actions with a per-user limit (the audit's targets, part 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitedAction {
    /// 3 per hour, exact sliding window; refused when Redis is unreachable.
    WithdrawalRequest,
    /// 5 per minute, exact sliding window; refused when Redis is unreachable.
    PaymentAttempt,
    /// 10 per minute, exact sliding window; refused when Redis is unreachable.
    PromoAttempt,
    /// 100 per minute per admin.
    AdminCommand,
    TrialActivation,
    /// A user's own request for a new key: the cooldown between two.
    KeyReissue,
}

impl LimitedAction {
    pub const ALL: [LimitedAction; 6] = [
        LimitedAction::WithdrawalRequest,
        LimitedAction::PaymentAttempt,
        LimitedAction::PromoAttempt,
        LimitedAction::AdminCommand,
        LimitedAction::TrialActivation,
        LimitedAction::KeyReissue,
    ];

    /// The action's name: part of its Redis key, and how scenarios and logs name it.
    pub fn name(self) -> &'static str {
        match self {
            LimitedAction::WithdrawalRequest => "withdrawal",
            LimitedAction::PaymentAttempt => "payment",
            LimitedAction::PromoAttempt => "promo",
            LimitedAction::AdminCommand => "admin",
            LimitedAction::TrialActivation => "trial",
            LimitedAction::KeyReissue => "reissue",
        }
    }

    pub fn from_name(name: &str) -> Option<LimitedAction> {
        LimitedAction::ALL.into_iter().find(|a| a.name() == name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Denied { retry_after: Duration },
}

/// The locks there are. Keys are built only from these names and integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockName {
    /// Reissuing a user's VPN key (the audit's `_REISSUE_LOCKS`).
    KeyReissue(UserId),
}

/// A held lock. `fencing_token` only grows across all holders of the same lock; PostgreSQL
/// refuses writes made under a token older than the newest it has seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockGuard {
    pub lock: LockName,
    pub token: String,
    pub fencing_token: u64,
}

/// Work that only one instance does at a time (audit part 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    PaymentWatcher,
    Reminders,
    TrialNotices,
    ExpiryCleanup,
    /// Sending admin broadcasts.
    Broadcasts,
    /// The Telegram long-polling loop (only one poller per bot, or Telegram answers 409).
    Poller,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::PaymentWatcher,
        Role::Reminders,
        Role::TrialNotices,
        Role::ExpiryCleanup,
        Role::Broadcasts,
        Role::Poller,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::PaymentWatcher => "payment_watcher",
            Role::Reminders => "reminders",
            Role::TrialNotices => "trial_notices",
            Role::ExpiryCleanup => "expiry_cleanup",
            Role::Broadcasts => "broadcasts",
            Role::Poller => "poller",
        }
    }
}

/// A held leader lease for a role. `epoch` only grows; `valid_until` is on the monotonic clock
/// and was measured from before the acquire or renew was sent, so the holder stops acting no
/// later than the lease really ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    pub role: Role,
    pub token: String,
    pub epoch: u64,
    pub valid_until: Duration,
}

impl Leadership {
    /// Whether the lease surely still holds. Leader-only work checks this before each effect:
    /// after a pause (GC, a stalled VM) the deadline has passed and the work stops.
    pub fn is_valid(&self, clock: &dyn crate::ports::Clock) -> bool {
        clock.monotonic() < self.valid_until
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CoordinationError {
    /// Redis did not answer in time or refused the connection. Money actions are then refused
    /// with "try again later"; other updates degrade.
    #[error("coordination is unavailable")]
    Unavailable,
    /// A record that no longer decodes or is too large.
    #[error("invalid coordination data: {0}")]
    Invalid(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

pub type CoordResult<T> = Result<T, CoordinationError>;

pub trait Coordination: Send + Sync + 'static {
    /// Dedupe the update, take the chat's lease, check the flood limit (unless `admission`
    /// exempts the update), return the FSM record: one round trip.
    fn begin_update(
        &self,
        user: UserId,
        update_id: i64,
        admission: Admission,
    ) -> impl Future<Output = CoordResult<BeginOutcome>> + Send;

    /// Compare-and-set the FSM record on the ticket's version and lease token, release the
    /// lease and mark the update done: one round trip. A ticket whose lease expired commits only
    /// when nobody touched the chat since (no holder, the update's marker its own or gone, the
    /// version it read); else it MUST write nothing: `LeaseLost` when the update is done or
    /// another's, `VersionConflict` when the chat moved on without it.
    fn commit_update(
        &self,
        user: UserId,
        ticket: &UpdateTicket,
        write: FsmWrite,
    ) -> impl Future<Output = CoordResult<CommitOutcome>> + Send;

    /// Extends the chat lease of a handler still running (and its update's in-progress mark) by
    /// a whole lease: `false` when the ticket no longer holds the lease. One round trip.
    fn extend_update(&self, user: UserId, ticket: &UpdateTicket) -> impl Future<Output = CoordResult<bool>> + Send;

    /// Tries to take a lock for `ttl`; `None` when someone else holds it.
    fn acquire_lock(
        &self,
        lock: LockName,
        ttl: Duration,
    ) -> impl Future<Output = CoordResult<Option<LockGuard>>> + Send;

    /// Releases a lock if this guard still holds it; `false` when it had expired.
    fn release_lock(&self, guard: &LockGuard) -> impl Future<Output = CoordResult<bool>> + Send;

    /// Counts one attempt of `action` by `user` and says whether it is allowed. `attempt` names
    /// the attempt: on the exact (sliding window) limits, the money ones, counting the same
    /// attempt again while it is in the window (a retry after a lost reply, the same update
    /// delivered again) allows it without counting it twice.
    fn check_rate(
        &self,
        user: UserId,
        action: LimitedAction,
        attempt: &str,
    ) -> impl Future<Output = CoordResult<Decision>> + Send;

    /// Acquires or renews the leader lease of `role`; `None` when another instance leads (or
    /// `current` was lost). A renewal keeps the epoch; a new acquisition gets a larger one.
    fn lead(
        &self,
        role: Role,
        current: Option<&Leadership>,
        ttl: Duration,
    ) -> impl Future<Output = CoordResult<Option<Leadership>>> + Send;

    /// Gives up a lease (on shutdown), so a standby takes over without waiting for the TTL.
    fn resign(&self, leadership: &Leadership) -> impl Future<Output = CoordResult<()>> + Send;

    /// Whether the coordination can serve this instance now (for `/readyz` and start-up): Redis
    /// answers and accepts a write.
    fn ping(&self) -> impl Future<Output = CoordResult<()>> + Send;

    /// The wall clock every instance shares (Redis `TIME`), which instances set their own by so
    /// that what one stores as a deadline means the same to the others; `None` where the design
    /// has no shared clock (the legacy design: each process its own).
    fn shared_time(&self) -> impl Future<Output = CoordResult<Option<chrono::DateTime<chrono::Utc>>>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ALL` lists every variant: the match below stops compiling when one is added, and the
    /// assertion fails until it is listed.
    #[test]
    fn the_lists_hold_every_variant() {
        let action_index = |a: LimitedAction| match a {
            LimitedAction::WithdrawalRequest => 0,
            LimitedAction::PaymentAttempt => 1,
            LimitedAction::PromoAttempt => 2,
            LimitedAction::AdminCommand => 3,
            LimitedAction::TrialActivation => 4,
            LimitedAction::KeyReissue => 5,
        };
        let mut seen: Vec<usize> = LimitedAction::ALL.iter().map(|a| action_index(*a)).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..LimitedAction::ALL.len()).collect::<Vec<_>>());
        let role_index = |r: Role| match r {
            Role::PaymentWatcher => 0,
            Role::Reminders => 1,
            Role::TrialNotices => 2,
            Role::ExpiryCleanup => 3,
            Role::Broadcasts => 4,
            Role::Poller => 5,
        };
        let mut seen: Vec<usize> = Role::ALL.iter().map(|r| role_index(*r)).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..Role::ALL.len()).collect::<Vec<_>>());
    }

    #[test]
    fn every_action_and_role_has_one_name_that_reads_back() {
        for action in LimitedAction::ALL {
            assert_eq!(LimitedAction::from_name(action.name()), Some(action));
        }
        let mut names: Vec<&str> = LimitedAction::ALL.iter().map(|a| a.name()).collect();
        names.extend(Role::ALL.iter().map(|r| r.name()));
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "names repeat: {names:?}");
        assert_eq!(LimitedAction::from_name("promos"), None);
    }
}
