//! Subscriptions and their VPN keys: the one free trial, auto-renewal from the balance, the
//! first key's activation (bounded attempts), and reissued keys fenced by the reissue lock's
//! token.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::{KeyFacts, KeyLabel, Money, Subscription, SubscriptionId, TariffCode, UserId};
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
    /// The subscription was not pending, or this was not its next generation any more
    /// (another worker finished first, a reissue or a retirement came between): nothing written.
    NotPending,
}

/// A subscription whose key is to be made: the panel is asked for `label`, so a retried attempt
/// (another worker, or this one after a crash) gets the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingActivation {
    pub subscription: SubscriptionId,
    pub user: UserId,
    pub label: KeyLabel,
}

/// A key taken from a subscription that ended: revoked in the store, to be revoked at the panel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetiredKey {
    pub subscription: SubscriptionId,
    pub user: UserId,
    pub panel_key_id: String,
}

/// A key revoked in the store and not yet at the panel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyToRevoke {
    pub key_id: i64,
    pub panel_key_id: String,
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

    /// [`Self::auto_renew_next`] for up to `limit` due subscriptions at once (one transaction
    /// on PostgreSQL); `Busy` outcomes are users with a purchase in flight, tried later.
    fn auto_renew_batch(
        &self,
        now: DateTime<Utc>,
        horizon: Duration,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<RenewalOutcome>, StoreError>> + Send {
        async move {
            let mut outcomes = Vec::new();
            for _ in 0..limit {
                match self.auto_renew_next(now, horizon).await? {
                    Some(outcome) => outcomes.push(outcome),
                    None => break,
                }
            }
            Ok(outcomes)
        }
    }

    /// Grants the one free trial.
    fn activate_trial(
        &self,
        user: UserId,
        tariff: &TariffCode,
        days: u16,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Subscription, TrialError>> + Send;

    /// Takes up to `limit` subscriptions whose key is still to be made, that have not ended and
    /// whose last failed attempt has waited out its backoff (`SKIP LOCKED`): each is held for
    /// `ACTIVATION_CLAIM`, so one worker of all the instances tries it this round.
    fn claim_activations(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<PendingActivation>, StoreError>> + Send;

    /// Records one activation attempt of the key of `generation`: only while the subscription
    /// is pending and that is still its next generation (a late worker's attempt is
    /// `NotPending`). Attempts are bounded by `ACTIVATION_ATTEMPTS_MAX`, and a failed one waits
    /// `activation_backoff` before the next.
    fn record_activation(
        &self,
        subscription: SubscriptionId,
        generation: u32,
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
    /// `request` names the request the reissue answers (`reissued_for`).
    fn install_reissued_key(
        &self,
        subscription: SubscriptionId,
        fencing_token: u64,
        key: PanelKey,
        request: Option<&str>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<KeyInstalled, KeyError>> + Send;

    /// The subscription's active key, if a reissue for `request` installed a key (that one, or
    /// the one that replaced it since): a request delivered again after its reissue was made
    /// reports the key rather than reissuing.
    fn reissued_for(
        &self,
        subscription: SubscriptionId,
        request: &str,
    ) -> impl Future<Output = Result<Option<PanelKey>, StoreError>> + Send;

    /// Takes the keys of subscriptions that ended more than `grace` ago (at most `limit`): each is
    /// revoked in the store, and the subscription's activation goes back to pending so that a
    /// later purchase or renewal gets a new key. The panel follows ([`Self::keys_to_revoke`]).
    fn retire_ended(
        &self,
        now: DateTime<Utc>,
        grace: Duration,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<RetiredKey>, StoreError>> + Send;

    /// Keys revoked in the store but not yet at the panel (an ended subscription's, a reissue's
    /// replaced key whose revocation failed), at most `limit`.
    fn keys_to_revoke(&self, limit: u32) -> impl Future<Output = Result<Vec<KeyToRevoke>, StoreError>> + Send;

    /// Records that the panel revoked these keys.
    fn revoked_at_panel(
        &self,
        key_ids: Vec<i64>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// For the reconciler: which of these panel ids the store has recorded (and whether each is
    /// a subscription's active key), and what it knows of these subscriptions' keys.
    fn key_census(
        &self,
        panel_key_ids: Vec<String>,
        subscriptions: Vec<SubscriptionId>,
    ) -> impl Future<Output = Result<KeyCensus, StoreError>> + Send;
}

/// What the store knows of keys found at the panel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyCensus {
    /// Panel ids the store has a row for, with whether that row is active.
    pub recorded: Vec<(String, bool)>,
    pub facts: Vec<KeyFacts>,
}
