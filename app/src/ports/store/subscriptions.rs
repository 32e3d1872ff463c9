//! Subscriptions and their VPN keys: the one free trial, auto-renewal from the balance, the
//! first key's activation (bounded attempts), and reissued keys fenced by the reissue lock's
//! token.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::{Money, Subscription, SubscriptionId, TariffCode, UserId};
use crate::ports::vpn::PanelKey;

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
    StaleFencingToken { current: u64 },
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewalOutcome {
    Renewed {
        subscription: SubscriptionId,
        user: UserId,
        amount: Money,
        expires_at: DateTime<Utc>,
    },
    InsufficientFunds {
        subscription: SubscriptionId,
        user: UserId,
    },
    TariffUnavailable {
        subscription: SubscriptionId,
        user: UserId,
    },
    /// The due subscription's user is busy (a purchase in flight): try on a later tick.
    Busy,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActivationResult {
    /// The panel created the first key.
    Succeeded(PanelKey),
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInstalled {
    pub key_id: i64,
    /// The panel id of the key this one replaced: revoke it at the panel.
    pub replaced_panel_key_id: Option<String>,
}

pub trait Subscriptions: Send + Sync + 'static {
    fn subscription(&self, user: UserId) -> impl Future<Output = Result<Option<Subscription>, StoreError>> + Send;

    /// The subscription's active key, if it has one yet.
    fn current_key(
        &self,
        subscription: SubscriptionId,
    ) -> impl Future<Output = Result<Option<PanelKey>, StoreError>> + Send;

    /// Turns auto-renewal on or off; `false` when the user has no subscription.
    fn set_auto_renew(
        &self,
        user: UserId,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Claims and processes the next subscription due for auto-renewal within `horizon`
    /// (`FOR UPDATE SKIP LOCKED`, unique per subscription and period). `None`: nothing is due.
    fn auto_renew_next(
        &self,
        now: DateTime<Utc>,
        horizon: Duration,
    ) -> impl Future<Output = Result<Option<RenewalOutcome>, StoreError>> + Send;

    /// Grants the one free trial.
    fn activate_trial(
        &self,
        user: UserId,
        tariff: &TariffCode,
        days: u16,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Subscription, TrialError>> + Send;

    /// Subscriptions whose first key is still to be created, oldest first, at most `limit`.
    fn pending_activations(&self, limit: u32) -> impl Future<Output = Result<Vec<SubscriptionId>, StoreError>> + Send;

    /// Records one activation attempt (only while pending; attempts are bounded by
    /// `ACTIVATION_ATTEMPTS_MAX`).
    fn record_activation(
        &self,
        subscription: SubscriptionId,
        result: ActivationResult,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<ActivationOutcome, StoreError>> + Send;

    /// Registers a reissue's fencing token right after its lock was taken, before the panel is
    /// called; refuses a token not newer than the stored one. From then on every older holder's
    /// install is refused.
    fn claim_key_fence(
        &self,
        subscription: SubscriptionId,
        fencing_token: u64,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), KeyError>> + Send;

    /// Writes a reissued key under a fencing token; refuses a token older than the stored one.
    fn install_reissued_key(
        &self,
        subscription: SubscriptionId,
        fencing_token: u64,
        key: PanelKey,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<KeyInstalled, KeyError>> + Send;
}
