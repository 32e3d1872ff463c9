//! What only admins use: finding a user, the audit log of their actions, the shop's figures, and
//! broadcasts (stored as jobs the workers send).

use std::future::Future;

use chrono::{DateTime, Utc};

use super::{Applied, StoreError};
use crate::domain::{BroadcastId, IdempotencyKey, Money, User, UserId, Username};

/// How an admin names a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserQuery {
    Id(UserId),
    Username(Username),
}

/// One admin action for the audit log (money actions write their own rows).
#[derive(Clone, Debug)]
pub struct AdminAction {
    pub admin: UserId,
    /// A fixed name (`find_user`, `reissue_key`, ...).
    pub action: &'static str,
    pub target: Option<UserId>,
    pub correlation_id: Option<String>,
}

/// The shop at a glance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShopStats {
    pub users: u64,
    /// Subscriptions running now (trials included).
    pub active_subscriptions: u64,
    pub trials: u64,
    pub pending_withdrawals: u64,
    /// Paid purchases in the 24 hours before `now`, and what they brought.
    pub purchases_day: u64,
    pub revenue_day: Money,
}

#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    #[error("the idempotency key belongs to another broadcast")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BroadcastQueued {
    pub applied: Applied,
    pub broadcast: BroadcastId,
}

pub trait AdminTools: Send + Sync + 'static {
    /// A user by id, or by username as last seen (case-insensitive).
    fn find_user(&self, query: UserQuery) -> impl Future<Output = Result<Option<User>, StoreError>> + Send;

    /// Appends one row to the admin audit log.
    fn record_admin_action(
        &self,
        action: AdminAction,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn stats(&self, now: DateTime<Utc>) -> impl Future<Output = Result<ShopStats, StoreError>> + Send;

    /// Queues a broadcast to every user (with its audit row); a replayed key returns the first.
    fn create_broadcast(
        &self,
        broadcast: NewBroadcast,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<BroadcastQueued, BroadcastError>> + Send;
}

/// A broadcast as an admin confirms it.
#[derive(Clone, Debug)]
pub struct NewBroadcast {
    pub admin: UserId,
    pub text: String,
    /// Written to the admin audit log with the job.
    pub correlation_id: Option<String>,
    pub idempotency_key: Option<IdempotencyKey>,
}
