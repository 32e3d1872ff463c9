//! Buying a tariff period: the catalogue, purchases from the balance, purchases paid by a
//! provider (opened, finalized once, cancelled or expired), and the referral reward of a paid
//! purchase.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::ProviderPayment;
use super::{Applied, Invoice, PaymentError, PromoRefusal, StoreError};
use crate::domain::{
    IdempotencyKey, Money, Payable, PaymentProviderKind, Percent, PromoCode, PurchaseId, PurchaseStatus, TariffCode,
    TariffPeriod, UserId,
};

#[derive(Debug, thiserror::Error)]
pub enum PurchaseError {
    #[error("unknown user")]
    UnknownUser,
    #[error("the user is banned")]
    UserBanned,
    #[error("no such tariff or period on sale")]
    UnknownTariff,
    #[error(transparent)]
    Promo(#[from] PromoRefusal),
    #[error("not enough money on the balance")]
    InsufficientBalance,
    #[error("the idempotency key belongs to another user or purchase")]
    IdempotencyKeyReused,
    /// The key names this user's purchase paid (or opened for payment) another way, or with
    /// another promo code: an order is paid once, one way. Nothing was written.
    #[error("this order is already paid another way")]
    PaidAnotherWay,
    /// The promo code makes the purchase free: take it from the balance instead of an invoice.
    #[error("nothing to pay: this purchase is free")]
    NothingToPay,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// A purchase or top-up waiting for a provider's payment, for the payment watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenPayable {
    pub payable: Payable,
    pub user: UserId,
    pub method: PaymentProviderKind,
    pub amount: Money,
    pub expires_at: DateTime<Utc>,
    pub invoice: Option<Invoice>,
}

#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    #[error("unknown purchase")]
    UnknownPurchase,
    #[error("the purchase is no longer pending (it is {})", .0.code())]
    NotPending(PurchaseStatus),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum ReferralError {
    #[error("unknown purchase")]
    UnknownPurchase,
    #[error("the purchase is not paid")]
    PurchaseNotPaid,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Clone, Debug)]
pub struct PurchaseRequest {
    pub user: UserId,
    pub tariff: TariffCode,
    pub days: i32,
    pub promo: Option<PromoCode>,
    pub idempotency_key: Option<IdempotencyKey>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurchaseOutcome {
    pub applied: Applied,
    pub purchase_id: PurchaseId,
    /// What was charged, after the promo discount (zero for a 100% code).
    pub amount: Money,
    pub expires_at: DateTime<Utc>,
    pub balance: Money,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingPurchase {
    pub applied: Applied,
    pub purchase_id: PurchaseId,
    /// Positive: a provider purchase always costs something.
    pub amount: Money,
    /// After this the purchase may be expired and its promo use given back.
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalizeOutcome {
    /// The purchase was pending and is now paid; the subscription runs until `expires_at`.
    Finalized { expires_at: DateTime<Utc> },
    /// This provider payment was already recorded for this purchase: nothing changed.
    /// `to_balance`: it had gone to the balance (the purchase was no longer pending then).
    Duplicate { to_balance: bool },
    /// The purchase was no longer pending (already paid by another payment, cancelled or
    /// expired): the money went to the user's balance instead.
    CreditedToBalance,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closure {
    Cancelled,
    Expired,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferralOutcome {
    Granted {
        referrer: UserId,
        amount: Money,
    },
    Duplicate,
    NoReferrer,
    /// The reward rounds to zero (a tiny or free purchase).
    NothingToReward,
}

/// A purchase as stored (for a pre-checkout answer, a payment, a check).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurchaseInfo {
    pub id: PurchaseId,
    pub user: UserId,
    pub tariff: TariffCode,
    pub days: i32,
    pub amount: Money,
    /// `None`: paid from the balance.
    pub method: Option<PaymentProviderKind>,
    pub status: PurchaseStatus,
    pub expires_at: DateTime<Utc>,
    /// The provider's invoice, once made.
    pub invoice: Option<Invoice>,
}

#[derive(Debug, thiserror::Error)]
pub enum InvoiceError {
    #[error("unknown purchase or top-up")]
    Unknown,
    #[error("another invoice is attached already")]
    AlreadyAttached,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

pub trait Purchases: Send + Sync + 'static {
    /// The periods on sale, cheapest first within each tariff.
    fn catalogue(&self) -> impl Future<Output = Result<Vec<TariffPeriod>, StoreError>> + Send;

    /// Buys a period from the balance under the per-user lock: promo consumption, debit and
    /// extension are one transaction. A replayed idempotency key returns the first purchase.
    fn purchase_from_balance(
        &self,
        request: PurchaseRequest,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<PurchaseOutcome, PurchaseError>> + Send;

    /// Opens a purchase to be paid by a provider, reserving its promo use; it may be expired
    /// after `ttl`. A replayed idempotency key returns the first purchase.
    fn create_pending_purchase(
        &self,
        request: PurchaseRequest,
        provider: PaymentProviderKind,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<PendingPurchase, PurchaseError>> + Send;

    /// Records a provider's payment for a purchase. Idempotent: only a pending purchase is
    /// finalized, and the same provider payment id is never counted twice.
    fn finalize_purchase(
        &self,
        purchase: PurchaseId,
        payment: ProviderPayment,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<FinalizeOutcome, PaymentError>> + Send;

    /// Cancels or expires a pending purchase (only from pending) and gives back its promo use.
    fn close_pending_purchase(
        &self,
        purchase: PurchaseId,
        closure: Closure,
    ) -> impl Future<Output = Result<(), CloseError>> + Send;

    fn purchase(&self, purchase: PurchaseId) -> impl Future<Output = Result<Option<PurchaseInfo>, StoreError>> + Send;

    /// Records the provider's invoice for a purchase or top-up (once: the same id again is
    /// accepted, another one refused), so a payment can be matched to it and polled, and its
    /// link shown again.
    fn attach_invoice(
        &self,
        payable: Payable,
        invoice: &Invoice,
    ) -> impl Future<Output = Result<(), InvoiceError>> + Send;

    /// Rewards the buyer's referrer for a paid purchase; at most once per purchase.
    fn grant_referral_reward(
        &self,
        purchase: PurchaseId,
        percent: Percent,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<ReferralOutcome, ReferralError>> + Send;

    /// Purchases paid within `window` before `now` whose buyer has a referrer, that earn a
    /// reward at `percent` and have none yet (the process stopped between the payment and the
    /// reward), oldest first, at most `limit`: the payment watcher grants them.
    fn unrewarded_purchases(
        &self,
        now: DateTime<Utc>,
        window: Duration,
        percent: Percent,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<PurchaseId>, StoreError>> + Send;

    /// Purchases and top-ups waiting for a provider's payment, purchases first, each by id,
    /// after `after` (a cursor: the last one of the previous page), at most `limit`.
    fn open_payables(
        &self,
        after: Option<Payable>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<OpenPayable>, StoreError>> + Send;
}
