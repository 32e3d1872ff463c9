//! Withdrawals: a user asks for money out of the balance (held at once), an admin approves or
//! rejects it, once.

use std::future::Future;

use chrono::{DateTime, Utc};

use super::{Applied, StoreError};
use crate::domain::{IdempotencyKey, Money, Requisites, UserId, WithdrawalId, WithdrawalStatus};

#[derive(Debug, thiserror::Error)]
pub enum WithdrawalError {
    #[error("unknown user")]
    UnknownUser,
    #[error("the user is banned")]
    UserBanned,
    #[error("the amount is below the minimum withdrawal")]
    BelowMinimum,
    #[error("not enough money on the balance")]
    InsufficientBalance,
    #[error("unknown withdrawal request")]
    UnknownWithdrawal,
    #[error("the withdrawal request is no longer pending")]
    NotPending(WithdrawalStatus),
    #[error("the idempotency key belongs to another request")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WithdrawalCreated {
    pub applied: Applied,
    pub withdrawal: WithdrawalId,
    pub balance: Money,
}

/// A withdrawal request as an admin sees it. The requisites are personal data: shown to admins
/// only, never logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WithdrawalRequest {
    pub id: WithdrawalId,
    pub user: UserId,
    pub amount: Money,
    pub requisites: Requisites,
    pub status: WithdrawalStatus,
    pub created_at: DateTime<Utc>,
}

/// What an admin decided about a pending withdrawal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The money was paid out: the hold becomes final.
    Approve,
    /// Refused: the held amount goes back to the balance.
    Reject,
}

#[derive(Clone, Debug)]
pub struct WithdrawalDecision {
    pub withdrawal: WithdrawalId,
    pub admin: UserId,
    pub verdict: Verdict,
    /// Written to the admin audit log with the decision.
    pub reason: Option<String>,
    pub correlation_id: Option<String>,
    /// The decision replayed with its own key returns it again (`Duplicate`).
    pub idempotency_key: Option<IdempotencyKey>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WithdrawalDecided {
    pub applied: Applied,
    pub user: UserId,
    pub amount: Money,
    pub status: WithdrawalStatus,
}

pub trait Withdrawals: Send + Sync + 'static {
    /// Creates a withdrawal request and holds its amount out of the balance. The balance is
    /// checked here, under the user's lock, whatever the conversation saw earlier. A replayed
    /// idempotency key returns the request it made (`Duplicate`).
    fn create_withdrawal(
        &self,
        user: UserId,
        amount: Money,
        requisites: Requisites,
        minimum: Money,
        idempotency_key: Option<IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<WithdrawalCreated, WithdrawalError>> + Send;

    fn withdrawal(
        &self,
        id: WithdrawalId,
    ) -> impl Future<Output = Result<Option<WithdrawalRequest>, StoreError>> + Send;

    /// Pending requests, oldest first, at most `limit`.
    fn pending_withdrawals(
        &self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<WithdrawalRequest>, StoreError>> + Send;

    /// Approves or rejects a withdrawal, only from pending; rejecting returns the held amount.
    fn decide_withdrawal(
        &self,
        decision: WithdrawalDecision,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<WithdrawalDecided, WithdrawalError>> + Send;
}
