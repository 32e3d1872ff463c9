//! The store: users, subscriptions, keys and every money operation, each with the guarantee the
//! audit found in the old system (parts 2-4). Live: PostgreSQL (`crate::store::PgStore`);
//! simulation: a model behind an RPC, kept honest by a differential test.
//!
//! Every operation that takes `now` uses it for what it stores and decides (expiry, promo
//! validity); the caller reads it from the Clock port. A refused operation writes nothing.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::domain::{
    IdempotencyKey, Language, Money, NoticeKind, PaymentProviderKind, PromoCode, ProviderPaymentId, Requisites,
    Subscription, TariffCode, TariffPeriod, User, UserId, WithdrawalStatus,
};

/// Why a promo code cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PromoRefusal {
    #[error("no such promo code")]
    NotFound,
    #[error("the promo code is disabled")]
    Disabled,
    #[error("the promo code has expired")]
    Expired,
    /// The audit's `PROMOCODE_ALREADY_USED_OR_EXPIRED`: every use is taken.
    #[error("PROMOCODE_ALREADY_USED_OR_EXPIRED")]
    Exhausted,
    #[error("you have already used this promo code")]
    AlreadyUsedByUser,
}

/// Errors every operation may return besides its own refusals.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum PromoError {
    #[error(transparent)]
    Refused(#[from] PromoRefusal),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

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
    #[error("the idempotency key belongs to another user")]
    IdempotencyKeyReused,
    /// The promo code makes the purchase free: take it from the balance instead of an invoice.
    #[error("nothing to pay: this purchase is free")]
    NothingToPay,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
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

#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    #[error("unknown purchase")]
    UnknownPurchase,
    #[error("the purchase is no longer pending (it is {0})")]
    NotPending(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
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

#[derive(Debug, thiserror::Error)]
pub enum ReferralError {
    #[error("unknown purchase")]
    UnknownPurchase,
    #[error("the purchase is not paid")]
    PurchaseNotPaid,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

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

#[derive(Debug, thiserror::Error)]
pub enum TrialError {
    #[error("unknown user")]
    UnknownUser,
    #[error("the user is banned")]
    UserBanned,
    #[error("the trial was already used")]
    AlreadyUsed,
    #[error("the trial is only for users without a subscription")]
    NotForSubscribers,
    #[error("no such tariff")]
    UnknownTariff,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("unknown subscription")]
    UnknownSubscription,
    /// The fencing token is not newer than the newest the store has seen: the writer's lock
    /// expired and another holder has written since.
    #[error("stale fencing token (the store has seen {current})")]
    StaleFencingToken { current: i64 },
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// A payment confirmed by a provider, for a top-up or a purchase.
#[derive(Clone, Debug)]
pub struct ProviderPayment {
    pub provider: PaymentProviderKind,
    pub payment_id: ProviderPaymentId,
    pub amount: Money,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The operation took effect now.
    Done,
    /// It had already taken effect (a redelivered callback, a replayed key): nothing changed.
    Duplicate,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopUpOutcome {
    pub applied: Applied,
    pub payment_row_id: i64,
    pub balance: i64,
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
    pub purchase_id: i64,
    /// What was charged, after the promo discount (minor units; 0 for a 100% code).
    pub amount: i64,
    pub expires_at: DateTime<Utc>,
    pub balance: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingPurchase {
    pub applied: Applied,
    pub purchase_id: i64,
    pub amount: i64,
    /// After this the purchase may be expired and its promo use given back.
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalizeOutcome {
    /// The purchase was pending and is now paid; the subscription runs until `expires_at`.
    Finalized { expires_at: DateTime<Utc> },
    /// This provider payment was already recorded for this purchase: nothing changed.
    Duplicate,
    /// The purchase was no longer pending (already paid by another payment, cancelled or
    /// expired): the money went to the user's balance instead.
    CreditedToBalance,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closure {
    Cancelled,
    Expired,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromoQuote {
    pub code: PromoCode,
    pub discount_percent: i32,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Credit,
    Debit,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdjustOutcome {
    pub audit_id: i64,
    pub balance: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferralOutcome {
    Granted {
        referrer: UserId,
        amount: i64,
    },
    Duplicate,
    NoReferrer,
    /// The reward rounds to zero (a tiny or free purchase).
    NothingToReward,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WithdrawalCreated {
    pub withdrawal_id: i64,
    pub balance: i64,
}

#[derive(Clone, Debug)]
pub struct WithdrawalDecision {
    pub withdrawal_id: i64,
    pub admin: UserId,
    pub approve: bool,
    pub reason: Option<String>,
    pub correlation_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WithdrawalDecided {
    pub user: UserId,
    pub amount: i64,
    pub status: WithdrawalStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewalOutcome {
    Renewed {
        subscription_id: i64,
        user: UserId,
        amount: i64,
        expires_at: DateTime<Utc>,
    },
    InsufficientFunds {
        subscription_id: i64,
        user: UserId,
    },
    TariffUnavailable {
        subscription_id: i64,
        user: UserId,
    },
    /// The due subscription's user is busy (a purchase in flight): try on a later tick.
    Busy,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActivationResult {
    /// The panel created the first key.
    Succeeded {
        panel_key_id: String,
        access_uri: String,
    },
    Failed {
        error: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationOutcome {
    Activated,
    /// Failed this time; the worker tries again.
    WillRetry {
        attempts: i32,
    },
    /// Failed for the last allowed time: the subscription is marked failed.
    GaveUp,
    /// The subscription was not pending (another worker finished first): the caller revokes
    /// the key it created, if any.
    NotPending,
}

/// A promo code as an admin creates it.
#[derive(Clone, Debug)]
pub struct NewPromo {
    pub code: PromoCode,
    /// 1 to 100.
    pub discount_percent: i32,
    /// `None`: unlimited.
    pub max_uses: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by: UserId,
}

impl NewPromo {
    /// The limits every store enforces before it writes (and the schema's CHECKs again).
    pub fn check(&self) -> Result<(), PromoCreateError> {
        if !(1..=100).contains(&self.discount_percent) {
            return Err(PromoCreateError::InvalidDiscount);
        }
        if self.max_uses.is_some_and(|m| m <= 0) {
            return Err(PromoCreateError::InvalidMaxUses);
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PromoCreateError {
    #[error("a promo code with this name exists")]
    AlreadyExists,
    #[error("the discount must be 1 to 100 percent")]
    InvalidDiscount,
    #[error("the maximum number of uses must be positive")]
    InvalidMaxUses,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInstalled {
    pub key_id: i64,
    /// The panel id of the key this one replaced: revoke it at the panel.
    pub replaced_panel_key_id: Option<String>,
}

pub trait Store: Send + Sync + 'static {
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

    /// The periods on sale, cheapest first within each tariff.
    fn catalogue(&self) -> impl Future<Output = Result<Vec<TariffPeriod>, StoreError>> + Send;

    fn subscription(&self, user: UserId) -> impl Future<Output = Result<Option<Subscription>, StoreError>> + Send;

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

    /// Creates a promo code (admin); refuses a code that exists, in any state.
    fn create_promo(
        &self,
        promo: NewPromo,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), PromoCreateError>> + Send;

    /// Turns auto-renewal on or off; `false` when the user has no subscription.
    fn set_auto_renew(
        &self,
        user: UserId,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Read-only check that `user` could use `code` now (what the user sees before paying).
    fn validate_promo(
        &self,
        user: UserId,
        code: &PromoCode,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<PromoQuote, PromoError>> + Send;

    /// Buys a period from the balance under the per-user lock: promo consumption, debit and
    /// extension are one transaction. A replayed idempotency key returns the first purchase.
    fn purchase_from_balance(
        &self,
        request: PurchaseRequest,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<PurchaseOutcome, PurchaseError>> + Send;

    /// Opens a purchase to be paid by a provider, reserving its promo use.
    fn create_pending_purchase(
        &self,
        request: PurchaseRequest,
        provider: PaymentProviderKind,
        ttl_seconds: i32,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<PendingPurchase, PurchaseError>> + Send;

    /// Records a provider's payment for a purchase. Idempotent: only a pending purchase is
    /// finalized, and the same provider payment id is never counted twice.
    fn finalize_purchase(
        &self,
        purchase_id: i64,
        payment: ProviderPayment,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<FinalizeOutcome, PaymentError>> + Send;

    /// Cancels or expires a pending purchase (only from pending) and gives back its promo use.
    fn close_pending_purchase(
        &self,
        purchase_id: i64,
        closure: Closure,
    ) -> impl Future<Output = Result<(), CloseError>> + Send;

    /// Rewards the buyer's referrer for a paid purchase; at most once per purchase.
    fn grant_referral_reward(
        &self,
        purchase_id: i64,
        percent: u8,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<ReferralOutcome, ReferralError>> + Send;

    /// Creates a withdrawal request and holds its amount out of the balance.
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

    /// Claims and processes the next subscription due for auto-renewal within `horizon_seconds`
    /// (`FOR UPDATE SKIP LOCKED`, unique per subscription and period). `None`: nothing is due.
    fn auto_renew_next(
        &self,
        now: DateTime<Utc>,
        horizon_seconds: i32,
    ) -> impl Future<Output = Result<Option<RenewalOutcome>, StoreError>> + Send;

    /// Grants the one free trial.
    fn activate_trial(
        &self,
        user: UserId,
        tariff: &TariffCode,
        days: i32,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Subscription, TrialError>> + Send;

    /// Subscriptions whose first key is still to be created, oldest first.
    fn pending_activations(&self, limit: i64) -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send;

    /// Records one activation attempt (only while pending; attempts are bounded by
    /// `ACTIVATION_ATTEMPTS_MAX`).
    fn record_activation(
        &self,
        subscription_id: i64,
        result: ActivationResult,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<ActivationOutcome, StoreError>> + Send;

    /// Registers a reissue's fencing token right after its lock was taken, before the panel is
    /// called; refuses a token not newer than the stored one. From then on every older holder's
    /// install is refused.
    fn claim_key_fence(
        &self,
        subscription_id: i64,
        fencing_token: u64,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), KeyError>> + Send;

    /// Writes a reissued key under a fencing token; refuses a token older than the stored one.
    fn install_reissued_key(
        &self,
        subscription_id: i64,
        fencing_token: u64,
        key: crate::ports::vpn::PanelKey,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<KeyInstalled, KeyError>> + Send;

    /// Claims the right to send one notice; `false` if it was claimed before (by any instance).
    fn claim_notice(
        &self,
        subscription_id: i64,
        kind: NoticeKind,
        threshold: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
