//! Accounts on PostgreSQL: registration and profile, top-ups (direct and pending), an admin's
//! credit or debit, referral earnings.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::purchases::invoice;
use super::{Failure, PgStore, Refusal, applied_code, text_code, timed};
use crate::domain::{
    IdempotencyKey, Language, Money, PaymentProviderKind, PurchaseStatus, TopUpId, User, UserId, Username,
};
use crate::ports::store::*;

/// A `users` row.
#[derive(FromRow)]
pub(super) struct UserRow {
    telegram_id: UserId,
    username: Option<Username>,
    language: Language,
    referrer_id: Option<UserId>,
    trial_used: bool,
    banned: bool,
    blocked_at: Option<DateTime<Utc>>,
    balance: Money,
    created_at: DateTime<Utc>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> User {
        User {
            id: row.telegram_id,
            username: row.username,
            language: row.language,
            referrer: row.referrer_id,
            trial_used: row.trial_used,
            banned: row.banned,
            blocked: row.blocked_at.is_some(),
            balance: row.balance,
            created_at: row.created_at,
        }
    }
}

applied_code!(TopUpCode, "credited");
applied_code!(AdjustCode, "adjusted");
applied_code!(TopUpOpenedCode, "created");

/// What `atlas_top_up` returns.
#[derive(FromRow)]
struct TopUpRow {
    outcome: TopUpCode,
    payment_id: i64,
    balance: Money,
}

/// What `atlas_admin_adjust` returns.
#[derive(FromRow)]
struct AdjustRow {
    outcome: AdjustCode,
    audit_id: i64,
    balance: Money,
}

/// What `atlas_create_topup` returns.
#[derive(FromRow)]
struct TopUpOpenedRow {
    outcome: TopUpOpenedCode,
    topup_id: TopUpId,
    expires_at: DateTime<Utc>,
}

/// What `atlas_finalize_topup` returns.
#[derive(FromRow)]
struct TopUpCreditedRow {
    outcome: TopUpCode,
    user_id: UserId,
    balance: Money,
}

/// A `topups` row.
#[derive(FromRow)]
struct TopUpInfoRow {
    id: TopUpId,
    user_id: UserId,
    amount: Money,
    method: PaymentProviderKind,
    status: PurchaseStatus,
    expires_at: DateTime<Utc>,
    invoice_id: Option<String>,
    invoice_url: Option<String>,
}

#[derive(FromRow)]
struct ReferralStatsRow {
    invited: i64,
    earned: Money,
}

text_code!(ClosedCode { Closed = "closed", Unknown = "unknown", Pending = "pending", Paid = "paid", Cancelled = "cancelled", Expired = "expired" });

pub(super) fn payment_error(failure: Failure) -> PaymentError {
    match failure {
        Failure::Refused(Refusal::UnknownUser) => PaymentError::UnknownUser,
        Failure::Refused(Refusal::UserBanned) => PaymentError::UserBanned,
        Failure::Refused(Refusal::UnknownPurchase) => PaymentError::UnknownPurchase,
        Failure::Refused(Refusal::UnknownTopUp) => PaymentError::UnknownTopUp,
        Failure::Refused(Refusal::PaymentIdReused) => PaymentError::PaymentIdReused,
        Failure::Refused(Refusal::PaymentAmountMismatch) => PaymentError::AmountMismatch,
        Failure::Refused(Refusal::PaymentMethodMismatch) => PaymentError::MethodMismatch,
        other => other.unexpected("payment"),
    }
}

fn key(key: &Option<IdempotencyKey>) -> Option<&str> {
    key.as_ref().map(IdempotencyKey::as_str)
}

impl Accounts for PgStore {
    #[tracing::instrument(skip(self, username), fields(user_id = user.get()))]
    async fn register_user(
        &self,
        user: UserId,
        language: Language,
        referrer: Option<UserId>,
        username: Option<Username>,
        now: DateTime<Utc>,
    ) -> Result<User, StoreError> {
        // The referrer is kept only if it already exists and is not the user: a forged deep
        // link cannot point at nobody or at oneself. Only the username follows a known user, and
        // it is taken from a former holder first (usernames change hands). The read is a further
        // statement: when two instances register the same user at once, the loser's insert does
        // nothing, and only a fresh snapshot sees the winner's row.
        let name = username.as_ref().map(Username::as_str);
        let mut tx = timed(self.pool().begin()).await?;
        if name.is_some() {
            let release = "UPDATE users SET username = NULL WHERE lower(username) = lower($2) AND telegram_id <> $1";
            timed(sqlx::query(release).bind(user.get()).bind(name).execute(&mut *tx)).await?;
        }
        // A user who registers (sends /start) is reachable again, if they had blocked the bot.
        let sql = "INSERT INTO users (telegram_id, language, referrer_id, username, created_at)
            SELECT $1, $2, (SELECT telegram_id FROM users WHERE telegram_id = $3 AND telegram_id <> $1), $4, $5
            ON CONFLICT (telegram_id) DO UPDATE SET username = EXCLUDED.username, blocked_at = NULL
                WHERE users.username IS DISTINCT FROM EXCLUDED.username OR users.blocked_at IS NOT NULL";
        timed(
            sqlx::query(sql)
                .bind(user.get())
                .bind(language.code())
                .bind(referrer.map(UserId::get))
                .bind(name)
                .bind(now)
                .execute(&mut *tx),
        )
        .await?;
        timed(tx.commit()).await?;
        let row: UserRow =
            timed(sqlx::query_as("SELECT * FROM users WHERE telegram_id = $1").bind(user.get()).fetch_one(self.pool()))
                .await?;
        Ok(row.into())
    }

    async fn user(&self, user: UserId) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = timed(
            sqlx::query_as("SELECT * FROM users WHERE telegram_id = $1").bind(user.get()).fetch_optional(self.pool()),
        )
        .await?;
        Ok(row.map(User::from))
    }

    async fn set_language(&self, user: UserId, language: Language) -> Result<bool, StoreError> {
        let sql = "UPDATE users SET language = $2 WHERE telegram_id = $1";
        let done = timed(sqlx::query(sql).bind(user.get()).bind(language.code()).execute(self.pool())).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_reachable(&self, user: UserId, reachable: bool, now: DateTime<Utc>) -> Result<(), StoreError> {
        let sql = "UPDATE users SET blocked_at = CASE WHEN $2 THEN NULL ELSE coalesce(blocked_at, $3) END
            WHERE telegram_id = $1";
        timed(sqlx::query(sql).bind(user.get()).bind(reachable).bind(now).execute(self.pool())).await?;
        Ok(())
    }

    async fn referral_stats(&self, user: UserId) -> Result<ReferralStats, StoreError> {
        let sql = "SELECT (SELECT count(*) FROM users WHERE referrer_id = $1) AS invited,
                (SELECT coalesce(sum(amount), 0)::BIGINT FROM referral_rewards WHERE referrer_id = $1) AS earned";
        let row: ReferralStatsRow = timed(sqlx::query_as(sql).bind(user.get()).fetch_one(self.pool())).await?;
        Ok(ReferralStats { invited: row.invited.max(0) as u64, earned: row.earned })
    }

    #[tracing::instrument(skip(self, payment), fields(user_id = user.get(), provider = payment.provider.code()))]
    async fn top_up(
        &self,
        user: UserId,
        payment: ProviderPayment,
        now: DateTime<Utc>,
    ) -> Result<TopUpOutcome, PaymentError> {
        let row: TopUpRow = timed(
            sqlx::query_as("SELECT * FROM atlas_top_up($1, $2, $3, $4, $5)")
                .bind(user.get())
                .bind(payment.amount.minor())
                .bind(payment.provider.code())
                .bind(payment.payment_id.as_str())
                .bind(now)
                .fetch_one(self.pool()),
        )
        .await
        .map_err(payment_error)?;
        let outcome =
            TopUpOutcome { applied: row.outcome.into(), payment_row_id: row.payment_id, balance: row.balance };
        if outcome.applied == Applied::Done {
            tracing::info!(event = "PAYMENT_RECEIVED", amount = payment.amount.minor(), "payment to the balance");
            tracing::info!(
                event = "BALANCE_INCREASED",
                amount = payment.amount.minor(),
                balance = outcome.balance.minor(),
                "top-up credited"
            );
        }
        Ok(outcome)
    }

    #[tracing::instrument(skip(self, adjustment), fields(admin_id = adjustment.admin.get(), user_id = adjustment.user.get()))]
    async fn admin_adjust(
        &self,
        adjustment: AdminAdjustment,
        now: DateTime<Utc>,
    ) -> Result<AdjustOutcome, BalanceError> {
        let signed = match adjustment.direction {
            Direction::Credit => adjustment.amount.minor(),
            Direction::Debit => -adjustment.amount.minor(),
        };
        let row: AdjustRow = timed(
            sqlx::query_as("SELECT * FROM atlas_admin_adjust($1, $2, $3, $4, $5, $6, $7)")
                .bind(adjustment.admin.get())
                .bind(adjustment.user.get())
                .bind(signed)
                .bind(&adjustment.reason)
                .bind(&adjustment.correlation_id)
                .bind(key(&adjustment.idempotency_key))
                .bind(now)
                .fetch_one(self.pool()),
        )
        .await
        .map_err(|failure| match failure {
            Failure::Refused(Refusal::UnknownUser) => BalanceError::UnknownUser,
            Failure::Refused(Refusal::InsufficientBalance) => BalanceError::InsufficientBalance,
            Failure::Refused(Refusal::IdempotencyKeyReused) => BalanceError::IdempotencyKeyReused,
            other => other.unexpected("admin_adjust"),
        })?;
        let outcome = AdjustOutcome { applied: row.outcome.into(), audit_id: row.audit_id, balance: row.balance };
        if outcome.applied == Applied::Done {
            let event = if signed > 0 { "BALANCE_INCREASED" } else { "BALANCE_DECREASED" };
            tracing::info!(
                event,
                amount = signed,
                balance = outcome.balance.minor(),
                audit_id = outcome.audit_id,
                "admin balance adjustment"
            );
        }
        Ok(outcome)
    }

    #[tracing::instrument(skip(self, idempotency_key), fields(user_id = user.get(), provider = provider.code()))]
    async fn create_topup(
        &self,
        user: UserId,
        amount: Money,
        provider: PaymentProviderKind,
        idempotency_key: Option<IdempotencyKey>,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<PendingTopUp, TopUpError> {
        let ttl =
            i32::try_from(ttl.as_secs()).map_err(|_| anyhow::anyhow!("a top-up TTL of {ttl:?} is out of range"))?;
        let row: TopUpOpenedRow = timed(
            sqlx::query_as("SELECT * FROM atlas_create_topup($1, $2, $3, $4, $5, $6)")
                .bind(user.get())
                .bind(amount.minor())
                .bind(provider.code())
                .bind(key(&idempotency_key))
                .bind(ttl)
                .bind(now)
                .fetch_one(self.pool()),
        )
        .await
        .map_err(|failure| match failure {
            Failure::Refused(Refusal::UnknownUser) => TopUpError::UnknownUser,
            Failure::Refused(Refusal::UserBanned) => TopUpError::UserBanned,
            Failure::Refused(Refusal::IdempotencyKeyReused) => TopUpError::IdempotencyKeyReused,
            other => other.unexpected("create_topup"),
        })?;
        Ok(PendingTopUp { applied: row.outcome.into(), topup: row.topup_id, expires_at: row.expires_at })
    }

    async fn topup(&self, topup: TopUpId) -> Result<Option<TopUpInfo>, StoreError> {
        let sql =
            "SELECT id, user_id, amount, method, status, expires_at, invoice_id, invoice_url FROM topups WHERE id = $1";
        let row: Option<TopUpInfoRow> =
            timed(sqlx::query_as(sql).bind(topup.get()).fetch_optional(self.pool())).await?;
        Ok(row.map(|r| TopUpInfo {
            id: r.id,
            user: r.user_id,
            amount: r.amount,
            method: r.method,
            status: r.status,
            expires_at: r.expires_at,
            invoice: invoice(r.invoice_id, r.invoice_url),
        }))
    }

    #[tracing::instrument(skip(self, payment), fields(topup_id = topup.get(), provider = payment.provider.code()))]
    async fn finalize_topup(
        &self,
        topup: TopUpId,
        payment: ProviderPayment,
        now: DateTime<Utc>,
    ) -> Result<TopUpCredited, PaymentError> {
        let row: TopUpCreditedRow = timed(
            sqlx::query_as("SELECT * FROM atlas_finalize_topup($1, $2, $3, $4, $5)")
                .bind(topup.get())
                .bind(payment.provider.code())
                .bind(payment.payment_id.as_str())
                .bind(payment.amount.minor())
                .bind(now)
                .fetch_one(self.pool()),
        )
        .await
        .map_err(payment_error)?;
        let credited = TopUpCredited { applied: row.outcome.into(), user: row.user_id, balance: row.balance };
        if credited.applied == Applied::Done {
            tracing::info!(event = "PAYMENT_RECEIVED", amount = payment.amount.minor(), "top-up paid");
            tracing::info!(
                event = "BALANCE_INCREASED",
                user_id = credited.user.get(),
                amount = payment.amount.minor(),
                balance = credited.balance.minor(),
                "top-up paid"
            );
        }
        Ok(credited)
    }

    async fn close_topup(&self, topup: TopUpId, closure: Closure) -> Result<(), CloseError> {
        let status = match closure {
            Closure::Cancelled => "cancelled",
            Closure::Expired => "expired",
        };
        // One statement: the update, and the status it found (the subquery sees the snapshot
        // from before the update).
        let sql = "WITH closed AS (UPDATE topups SET status = $2 WHERE id = $1 AND status = 'pending' RETURNING id)
            SELECT CASE WHEN EXISTS (SELECT 1 FROM closed) THEN 'closed'
                        ELSE coalesce((SELECT status FROM topups WHERE id = $1), 'unknown') END";
        let code: ClosedCode = timed(sqlx::query_scalar(sql).bind(topup.get()).bind(status).fetch_one(self.pool()))
            .await
            .map_err(|failure| failure.unexpected::<CloseError>("close_topup"))?;
        match code {
            ClosedCode::Closed => Ok(()),
            ClosedCode::Unknown => Err(CloseError::UnknownPurchase),
            ClosedCode::Pending => Err(anyhow::anyhow!("a pending top-up was not closed").into()),
            ClosedCode::Paid => Err(CloseError::NotPending(PurchaseStatus::Paid)),
            ClosedCode::Cancelled => Err(CloseError::NotPending(PurchaseStatus::Cancelled)),
            ClosedCode::Expired => Err(CloseError::NotPending(PurchaseStatus::Expired)),
        }
    }
}
