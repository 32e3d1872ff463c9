//! Users and their balances: registration, top-ups by a payment provider, an admin's credit or
//! debit.

use std::future::Future;

use chrono::{DateTime, Utc};

use super::{Applied, StoreError};
use crate::domain::{Language, Money, PaymentProviderKind, ProviderPaymentId, User, UserId};

/// A payment confirmed by a provider, for a top-up or a purchase.
#[derive(Clone, Debug)]
pub struct ProviderPayment {
    pub provider: PaymentProviderKind,
    pub payment_id: ProviderPaymentId,
    /// Positive (the provider's amount goes through `Money::positive` at the edge).
    pub amount: Money,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("unknown user")]
    UnknownUser,
    #[error("the user is banned")]
    UserBanned,
    #[error("unknown purchase")]
    UnknownPurchase,
    /// The provider payment id was already recorded for another user, amount or purchase.
    #[error("the provider payment id was already used for something else")]
    PaymentIdReused,
    #[error("the paid amount differs from the purchase amount")]
    AmountMismatch,
    #[error("the purchase is not paid with this provider")]
    MethodMismatch,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopUpOutcome {
    pub applied: Applied,
    pub payment_row_id: i64,
    pub balance: Money,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Credit,
    Debit,
}

#[derive(Clone, Debug)]
pub struct AdminAdjustment {
    pub admin: UserId,
    pub user: UserId,
    pub amount: Money,
    pub direction: Direction,
    pub reason: String,
    pub correlation_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BalanceError {
    #[error("unknown user")]
    UnknownUser,
    #[error("not enough money on the balance")]
    InsufficientBalance,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdjustOutcome {
    pub audit_id: i64,
    pub balance: Money,
}

pub trait Accounts: Send + Sync + 'static {
    /// Registers a user, or returns the existing one unchanged. The referrer is kept only on
    /// first registration, only if it is a known user, and never the user themself.
    fn register_user(
        &self,
        user: UserId,
        language: Language,
        referrer: Option<UserId>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<User, StoreError>> + Send;

    fn user(&self, user: UserId) -> impl Future<Output = Result<Option<User>, StoreError>> + Send;

    /// Credits a provider-paid top-up. MUST credit a provider payment id at most once; a
    /// redelivery returns `Duplicate`. Money received is recorded even for a banned user.
    fn top_up(
        &self,
        user: UserId,
        payment: ProviderPayment,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<TopUpOutcome, PaymentError>> + Send;

    /// An admin's credit or debit with its audit log entry. A debit MUST NOT take the balance
    /// below zero.
    fn admin_adjust(
        &self,
        adjustment: AdminAdjustment,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<AdjustOutcome, BalanceError>> + Send;
}
