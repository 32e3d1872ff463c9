//! Subscriptions and keys on PostgreSQL: trial, auto-renewal, activation, fenced reissues.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::{Failure, PgStore, Refusal, text_code, timed};
use crate::domain::{
    ACTIVATION_ATTEMPTS_MAX, ACTIVATION_CLAIM, ActivationStatus, KeyFacts, KeyLabel, Money, Subscription,
    SubscriptionId, TariffCode, UserId,
};
use crate::ports::store::*;
use crate::ports::vpn::PanelKey;

/// A `subscriptions` row.
#[derive(FromRow)]
struct SubscriptionRow {
    id: SubscriptionId,
    user_id: UserId,
    tariff_id: i64,
    period_days: i32,
    expires_at: DateTime<Utc>,
    is_trial: bool,
    auto_renew: bool,
    last_auto_renewal_at: Option<DateTime<Utc>>,
    activation_status: String,
    activation_attempts: i32,
    key_fence: i64,
}

impl SubscriptionRow {
    fn into_subscription(self) -> anyhow::Result<Subscription> {
        let status = &self.activation_status;
        Ok(Subscription {
            id: self.id,
            user: self.user_id,
            tariff_id: self.tariff_id,
            period_days: self.period_days,
            expires_at: self.expires_at,
            is_trial: self.is_trial,
            auto_renew: self.auto_renew,
            last_auto_renewal_at: self.last_auto_renewal_at,
            activation_status: ActivationStatus::from_code(status)
                .with_context(|| format!("unknown activation status {status:?}"))?,
            activation_attempts: self.activation_attempts,
            key_fence: u64::try_from(self.key_fence).context("a stored fencing token is negative")?,
        })
    }
}

text_code!(RenewalCode {
    Renewed = "renewed",
    InsufficientFunds = "insufficient_funds",
    TariffUnavailable = "tariff_unavailable",
    Busy = "busy",
});

/// What `atlas_auto_renew_next` returns.
#[derive(FromRow)]
struct RenewalRow {
    outcome: RenewalCode,
    subscription_id: SubscriptionId,
    user_id: UserId,
    amount: Money,
    expires_at: DateTime<Utc>,
}

impl RenewalRow {
    fn into_outcome(self) -> RenewalOutcome {
        let (subscription, user) = (self.subscription_id, self.user_id);
        match self.outcome {
            RenewalCode::Renewed => {
                tracing::info!(
                    event = "BALANCE_DECREASED",
                    user_id = user.get(),
                    subscription_id = subscription.get(),
                    amount = self.amount.minor(),
                    "auto-renewal"
                );
                RenewalOutcome::Renewed { subscription, user, amount: self.amount, expires_at: self.expires_at }
            }
            RenewalCode::InsufficientFunds => RenewalOutcome::InsufficientFunds { subscription, user },
            RenewalCode::TariffUnavailable => RenewalOutcome::TariffUnavailable { subscription, user },
            RenewalCode::Busy => RenewalOutcome::Busy,
        }
    }
}

/// What a failed activation attempt leaves.
#[derive(FromRow)]
struct AttemptRow {
    activation_status: String,
    activation_attempts: i32,
}

/// An active key.
#[derive(FromRow)]
struct KeyRow {
    panel_key_id: String,
    access_uri: String,
}

impl From<KeyRow> for PanelKey {
    fn from(row: KeyRow) -> PanelKey {
        PanelKey { panel_key_id: row.panel_key_id, access_uri: row.access_uri }
    }
}

/// What `atlas_install_reissued_key` returns.
#[derive(FromRow)]
struct InstalledRow {
    key_id: i64,
    replaced_panel_key_id: Option<String>,
}

fn key_error(failure: Failure) -> KeyError {
    match failure {
        Failure::Refused(Refusal::UnknownSubscription) => KeyError::UnknownSubscription,
        Failure::Refused(Refusal::StaleFencingToken { current }) => KeyError::StaleFencingToken { current },
        other => other.unexpected("key"),
    }
}

fn token(fencing_token: u64) -> Result<i64, KeyError> {
    i64::try_from(fencing_token).map_err(|_| KeyError::Unexpected(anyhow::anyhow!("fencing token out of range")))
}

impl Subscriptions for PgStore {
    async fn subscription(&self, user: UserId) -> Result<Option<Subscription>, StoreError> {
        let row: Option<SubscriptionRow> = timed(
            sqlx::query_as("SELECT * FROM subscriptions WHERE user_id = $1")
                .bind(user.get())
                .fetch_optional(self.pool()),
        )
        .await?;
        Ok(row.map(SubscriptionRow::into_subscription).transpose()?)
    }

    async fn current_key(&self, subscription: SubscriptionId) -> Result<Option<PanelKey>, StoreError> {
        let sql = "SELECT panel_key_id, access_uri FROM vpn_keys WHERE subscription_id = $1 AND status = 'active'";
        let row: Option<KeyRow> =
            timed(sqlx::query_as(sql).bind(subscription.get()).fetch_optional(self.pool())).await?;
        Ok(row.map(PanelKey::from))
    }

    async fn reissued_for(&self, subscription: SubscriptionId, request: &str) -> Result<Option<PanelKey>, StoreError> {
        let sql = "SELECT panel_key_id, access_uri FROM vpn_keys
                   WHERE subscription_id = $1 AND status = 'active'
                     AND EXISTS (SELECT 1 FROM vpn_keys WHERE subscription_id = $1 AND request = $2)";
        let row: Option<KeyRow> =
            timed(sqlx::query_as(sql).bind(subscription.get()).bind(request).fetch_optional(self.pool())).await?;
        Ok(row.map(PanelKey::from))
    }

    async fn set_auto_renew(&self, user: UserId, enabled: bool, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let sql = "UPDATE subscriptions SET auto_renew = $2, updated_at = $3 WHERE user_id = $1";
        let done = timed(sqlx::query(sql).bind(user.get()).bind(enabled).bind(now).execute(self.pool())).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn auto_renew_next(
        &self,
        now: DateTime<Utc>,
        horizon: Duration,
    ) -> Result<Option<RenewalOutcome>, StoreError> {
        let horizon = i32::try_from(horizon.as_secs()).context("renewal horizon out of range")?;
        let row: Option<RenewalRow> = timed(
            sqlx::query_as("SELECT * FROM atlas_auto_renew_next($1, $2)")
                .bind(now)
                .bind(horizon)
                .fetch_optional(self.pool()),
        )
        .await?;
        Ok(row.map(RenewalRow::into_outcome))
    }

    async fn auto_renew_batch(
        &self,
        now: DateTime<Utc>,
        horizon: Duration,
        limit: u32,
    ) -> Result<Vec<RenewalOutcome>, StoreError> {
        let horizon = i32::try_from(horizon.as_secs()).context("renewal horizon out of range")?;
        let rows: Vec<RenewalRow> = timed(
            sqlx::query_as("SELECT * FROM atlas_auto_renew_batch($1, $2, $3)")
                .bind(now)
                .bind(horizon)
                .bind(i32::try_from(limit).unwrap_or(i32::MAX))
                .fetch_all(self.pool()),
        )
        .await?;
        Ok(rows.into_iter().map(RenewalRow::into_outcome).collect())
    }

    async fn activate_trial(
        &self,
        user: UserId,
        tariff: &TariffCode,
        days: u16,
        now: DateTime<Utc>,
    ) -> Result<Subscription, TrialError> {
        let row: SubscriptionRow = timed(
            sqlx::query_as("SELECT * FROM atlas_activate_trial($1, $2, $3, $4)")
                .bind(user.get())
                .bind(tariff.as_str())
                .bind(i32::from(days))
                .bind(now)
                .fetch_one(self.pool()),
        )
        .await
        .map_err(|failure| match failure {
            Failure::Refused(Refusal::UnknownUser) => TrialError::UnknownUser,
            Failure::Refused(Refusal::UserBanned) => TrialError::UserBanned,
            Failure::Refused(Refusal::TrialAlreadyUsed) => TrialError::AlreadyUsed,
            Failure::Refused(Refusal::TrialNotForSubscribers) => TrialError::NotForSubscribers,
            Failure::Refused(Refusal::UnknownTariff) => TrialError::UnknownTariff,
            other => other.unexpected("activate_trial"),
        })?;
        Ok(row.into_subscription()?)
    }

    async fn claim_activations(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<PendingActivation>, StoreError> {
        // The generation is the number of keys the subscription ever had: the same while an
        // attempt is retried, a new one after the previous key was retired or replaced.
        let sql = "WITH due AS (
                SELECT s.id FROM subscriptions s
                WHERE s.activation_status = 'pending' AND s.expires_at > $1
                  AND s.activation_next_at <= $1
                ORDER BY s.activation_next_at, s.id LIMIT $2
                FOR UPDATE SKIP LOCKED)
            UPDATE subscriptions s SET activation_next_at = $1 + make_interval(secs => $3)
            FROM due WHERE s.id = due.id
            RETURNING s.id, s.user_id, (SELECT count(*) FROM vpn_keys k WHERE k.subscription_id = s.id)::INT";
        let claim = ACTIVATION_CLAIM.as_secs_f64();
        let mut rows: Vec<(SubscriptionId, UserId, i32)> =
            timed(sqlx::query_as(sql).bind(now).bind(i64::from(limit)).bind(claim).fetch_all(self.pool())).await?;
        rows.sort_by_key(|row| row.0);
        rows.into_iter()
            .map(|(subscription, user, generation)| {
                let generation = u32::try_from(generation).context("negative key count")?;
                Ok(PendingActivation { subscription, user, label: KeyLabel::Activation { subscription, generation } })
            })
            .collect()
    }

    #[tracing::instrument(skip(self, result), fields(subscription_id = subscription.get()))]
    async fn record_activation(
        &self,
        subscription: SubscriptionId,
        generation: u32,
        result: ActivationResult,
        now: DateTime<Utc>,
    ) -> Result<ActivationOutcome, StoreError> {
        let generation = i64::from(generation);
        match result {
            ActivationResult::Succeeded(key) => {
                // Only a pending subscription is activated, and its key is written in the same
                // statement; a second worker finds it active and gets NotPending.
                let sql = "WITH activated AS (
                        UPDATE subscriptions s SET activation_status = 'active', activation_error = NULL,
                            activation_next_at = '-infinity', updated_at = $4
                        WHERE id = $1 AND activation_status = 'pending'
                          AND (SELECT count(*) FROM vpn_keys k WHERE k.subscription_id = s.id) = $5
                        RETURNING id, key_fence)
                    INSERT INTO vpn_keys (subscription_id, panel_key_id, access_uri, fencing_token, status, created_at)
                    SELECT id, $2, $3, key_fence, 'active', $4 FROM activated RETURNING id";
                let key: Option<i64> = timed(
                    sqlx::query_scalar(sql)
                        .bind(subscription.get())
                        .bind(key.panel_key_id)
                        .bind(key.access_uri)
                        .bind(now)
                        .bind(generation)
                        .fetch_optional(self.pool()),
                )
                .await?;
                Ok(if key.is_some() { ActivationOutcome::Activated } else { ActivationOutcome::NotPending })
            }
            ActivationResult::Failed { error } => {
                let sql = "UPDATE subscriptions s
                    SET activation_attempts = activation_attempts + 1,
                        activation_status = CASE WHEN activation_attempts + 1 >= $3 THEN 'failed' ELSE 'pending' END,
                        -- domain::activation_backoff of the new count (the old count is read here)
                        activation_next_at = $4 + make_interval(secs => least(30 * power(2, activation_attempts), 3600)),
                        activation_error = left($2, 500), updated_at = $4
                    WHERE id = $1 AND activation_status = 'pending'
                      AND (SELECT count(*) FROM vpn_keys k WHERE k.subscription_id = s.id) = $5
                    RETURNING activation_status, activation_attempts";
                let row: Option<AttemptRow> = timed(
                    sqlx::query_as(sql)
                        .bind(subscription.get())
                        .bind(error)
                        .bind(ACTIVATION_ATTEMPTS_MAX)
                        .bind(now)
                        .bind(generation)
                        .fetch_optional(self.pool()),
                )
                .await?;
                let Some(row) = row else {
                    return Ok(ActivationOutcome::NotPending);
                };
                let status = ActivationStatus::from_code(&row.activation_status)
                    .with_context(|| format!("unknown activation status {:?}", row.activation_status))?;
                Ok(match status {
                    ActivationStatus::Failed => ActivationOutcome::GaveUp,
                    ActivationStatus::Pending => ActivationOutcome::WillRetry { attempts: row.activation_attempts },
                    ActivationStatus::Active => {
                        return Err(anyhow::anyhow!("a failed attempt left the subscription active").into());
                    }
                })
            }
        }
    }

    async fn claim_key_fence(
        &self,
        subscription: SubscriptionId,
        fencing_token: u64,
        now: DateTime<Utc>,
    ) -> Result<(), KeyError> {
        timed(
            sqlx::query("SELECT atlas_claim_key_fence($1, $2, $3)")
                .bind(subscription.get())
                .bind(token(fencing_token)?)
                .bind(now)
                .execute(self.pool()),
        )
        .await
        .map_err(key_error)?;
        Ok(())
    }

    #[tracing::instrument(skip(self, key), fields(subscription_id = subscription.get()))]
    async fn install_reissued_key(
        &self,
        subscription: SubscriptionId,
        fencing_token: u64,
        key: PanelKey,
        request: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<KeyInstalled, KeyError> {
        let row: InstalledRow = timed(
            sqlx::query_as("SELECT * FROM atlas_install_reissued_key($1, $2, $3, $4, $5, $6)")
                .bind(subscription.get())
                .bind(token(fencing_token)?)
                .bind(&key.panel_key_id)
                .bind(&key.access_uri)
                .bind(now)
                .bind(request)
                .fetch_one(self.pool()),
        )
        .await
        .map_err(key_error)?;
        Ok(KeyInstalled { key_id: row.key_id, replaced_panel_key_id: row.replaced_panel_key_id })
    }

    async fn retire_ended(
        &self,
        now: DateTime<Utc>,
        grace: Duration,
        limit: u32,
    ) -> Result<Vec<RetiredKey>, StoreError> {
        let grace = i32::try_from(grace.as_secs()).context("grace out of range")?;
        let rows: Vec<(SubscriptionId, UserId, String)> = timed(
            sqlx::query_as("SELECT * FROM atlas_retire_ended($1, $2, $3)")
                .bind(now)
                .bind(grace)
                .bind(i32::try_from(limit).unwrap_or(i32::MAX))
                .fetch_all(self.pool()),
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|(subscription, user, panel_key_id)| RetiredKey { subscription, user, panel_key_id })
            .collect())
    }

    async fn keys_to_revoke(&self, limit: u32) -> Result<Vec<KeyToRevoke>, StoreError> {
        let sql = "SELECT id, panel_key_id FROM vpn_keys
            WHERE status = 'revoked' AND panel_revoked_at IS NULL ORDER BY id LIMIT $1";
        let rows: Vec<(i64, String)> = timed(sqlx::query_as(sql).bind(i64::from(limit)).fetch_all(self.pool())).await?;
        Ok(rows.into_iter().map(|(key_id, panel_key_id)| KeyToRevoke { key_id, panel_key_id }).collect())
    }

    async fn revoked_at_panel(&self, key_ids: Vec<i64>, now: DateTime<Utc>) -> Result<(), StoreError> {
        let sql = "UPDATE vpn_keys SET panel_revoked_at = $2
            WHERE id = ANY($1) AND status = 'revoked' AND panel_revoked_at IS NULL";
        timed(sqlx::query(sql).bind(key_ids).bind(now).execute(self.pool())).await?;
        Ok(())
    }

    async fn key_census(
        &self,
        panel_key_ids: Vec<String>,
        subscriptions: Vec<SubscriptionId>,
    ) -> Result<KeyCensus, StoreError> {
        // Both reads from one snapshot: a key recorded between them would otherwise look like an
        // unrecorded key of a superseded generation.
        let mut tx = self.pool().begin().await.context("begin the key census")?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .context("key census isolation")?;
        let recorded: Vec<(String, bool)> = timed(
            sqlx::query_as(
                "SELECT panel_key_id, bool_or(status = 'active') FROM vpn_keys
                    WHERE panel_key_id = ANY($1) GROUP BY panel_key_id ORDER BY panel_key_id",
            )
            .bind(panel_key_ids)
            .fetch_all(&mut *tx),
        )
        .await?;
        let ids: Vec<i64> = subscriptions.iter().map(|s| s.get()).collect();
        let rows: Vec<(SubscriptionId, i64, i32)> = timed(
            sqlx::query_as(
                "SELECT s.id, s.key_fence, (SELECT count(*) FROM vpn_keys k WHERE k.subscription_id = s.id)::INT
                    FROM subscriptions s WHERE s.id = ANY($1) ORDER BY s.id",
            )
            .bind(ids)
            .fetch_all(&mut *tx),
        )
        .await?;
        tx.commit().await.context("end the key census")?;
        let facts = rows
            .into_iter()
            .map(|(subscription, fence, keys)| {
                Ok(KeyFacts {
                    subscription,
                    key_fence: u64::try_from(fence).context("a stored fencing token is negative")?,
                    keys_recorded: u32::try_from(keys).context("negative key count")?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(KeyCensus { recorded, facts })
    }
}
