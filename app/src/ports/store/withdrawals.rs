//! Withdrawals: a user asks for money out of the balance (held at once), an admin approves or
//! rejects it, once.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::domain::{Money, Requisites, UserId, WithdrawalId, WithdrawalStatus};

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
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WithdrawalCreated {
    pub withdrawal: WithdrawalId,
    pub balance: Money,
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
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WithdrawalDecided {
    pub user: UserId,
    pub amount: Money,
    pub status: WithdrawalStatus,
}

pub trait Withdrawals: Send + Sync + 'static {
    /// Creates a withdrawal request and holds its amount out of the balance. The balance is
    /// checked here, under the user's lock, whatever the conversation saw earlier.
    fn create_withdrawal(
        &self,
        user: UserId,
        amount: Money,
        requisites: Requisites,
        minimum: Money,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<WithdrawalCreated, WithdrawalError>> + Send;

    /// Approves or rejects a withdrawal, only from pending; rejecting returns the held amount.
    fn decide_withdrawal(
        &self,
        decision: WithdrawalDecision,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<WithdrawalDecided, WithdrawalError>> + Send;
}
