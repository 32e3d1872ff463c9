//! Users and their balances: registration and profile, top-ups by a payment provider (direct, or
//! through a pending top-up the user opened), an admin's credit or debit, referral earnings.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Applied, CloseError, Invoice, StoreError};
use crate::domain::{
    IdempotencyKey, Language, Money, PaymentProviderKind, ProviderPaymentId, PurchaseStatus, TopUpId, User, UserId,
    Username,
};

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
    #[error("unknown top-up")]
    UnknownTopUp,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// A replay with the same key returns the first adjustment and moves nothing.
    pub idempotency_key: Option<IdempotencyKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum BalanceError {
    #[error("unknown user")]
    UnknownUser,
    #[error("not enough money on the balance")]
    InsufficientBalance,
    #[error("the idempotency key belongs to another adjustment")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdjustOutcome {
    pub applied: Applied,
    pub audit_id: i64,
    pub balance: Money,
}

#[derive(Debug, thiserror::Error)]
pub enum TopUpError {
    #[error("unknown user")]
    UnknownUser,
    #[error("the user is banned")]
    UserBanned,
    #[error("the idempotency key belongs to another top-up")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingTopUp {
    pub applied: Applied,
    pub topup: TopUpId,
    /// After this the top-up may be expired (a payment that comes later is still credited).
    pub expires_at: DateTime<Utc>,
}

/// A top-up as stored (for a pre-checkout answer, a payment, a check).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopUpInfo {
    pub id: TopUpId,
    pub user: UserId,
    pub amount: Money,
    pub method: PaymentProviderKind,
    pub status: PurchaseStatus,
    pub expires_at: DateTime<Utc>,
    /// The provider's invoice, once made.
    pub invoice: Option<Invoice>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopUpCredited {
    pub applied: Applied,
    pub user: UserId,
    pub balance: Money,
}

/// What a user earned by inviting others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReferralStats {
    pub invited: u64,
    pub earned: Money,
}

pub trait Accounts: Send + Sync + 'static {
    /// Registers a user, or returns the existing one with only its username brought up to date.
    /// The referrer and the language are kept from the first registration; the referrer only if
    /// it is a known user, and never the user themself.
    fn register_user(
        &self,
        user: UserId,
        language: Language,
        referrer: Option<UserId>,
        username: Option<Username>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<User, StoreError>> + Send;

    fn user(&self, user: UserId) -> impl Future<Output = Result<Option<User>, StoreError>> + Send;

    /// The user's chosen language; `false` for an unknown user.
    fn set_language(&self, user: UserId, language: Language) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records whether the user can be written to: `false` when they blocked the bot (Telegram
    /// said so), `true` when they came back. Unknown users are ignored.
    fn set_reachable(
        &self,
        user: UserId,
        reachable: bool,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// How many users this one invited, and what their purchases earned this one.
    fn referral_stats(&self, user: UserId) -> impl Future<Output = Result<ReferralStats, StoreError>> + Send;

    /// Credits a provider-paid top-up. MUST credit a provider payment id at most once; a
    /// redelivery returns `Duplicate`. Money received is recorded even for a banned user.
    fn top_up(
        &self,
        user: UserId,
        payment: ProviderPayment,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<TopUpOutcome, PaymentError>> + Send;

    /// An admin's credit or debit with its audit log entry. A debit MUST NOT take the balance
    /// below zero. A replayed idempotency key returns the first adjustment (`Duplicate`).
    fn admin_adjust(
        &self,
        adjustment: AdminAdjustment,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<AdjustOutcome, BalanceError>> + Send;

    /// Opens a top-up of `amount` to be paid with `provider`; it may be expired after `ttl`. A
    /// replayed idempotency key returns the first top-up.
    fn create_topup(
        &self,
        user: UserId,
        amount: Money,
        provider: PaymentProviderKind,
        idempotency_key: Option<IdempotencyKey>,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<PendingTopUp, TopUpError>> + Send;

    fn topup(&self, topup: TopUpId) -> impl Future<Output = Result<Option<TopUpInfo>, StoreError>> + Send;

    /// Credits a provider's payment for a top-up. MUST credit a provider payment id at most once
    /// (a redelivery returns `Duplicate`); money for a top-up that was closed meanwhile is still
    /// credited.
    fn finalize_topup(
        &self,
        topup: TopUpId,
        payment: ProviderPayment,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<TopUpCredited, PaymentError>> + Send;

    /// Cancels or expires a pending top-up (only from pending).
    fn close_topup(
        &self,
        topup: TopUpId,
        closure: super::Closure,
    ) -> impl Future<Output = Result<(), CloseError>> + Send;
}
