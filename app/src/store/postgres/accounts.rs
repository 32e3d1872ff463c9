//! Accounts on PostgreSQL: registration, top-ups, an admin's credit or debit.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::{Failure, PgStore, Refusal, applied_code, text_code, timed};
use crate::domain::{Language, Money, User, UserId};
use crate::ports::store::*;

/// A `users` row.
#[derive(FromRow)]
pub(super) struct UserRow {
    telegram_id: UserId,
    language: String,
    referrer_id: Option<i64>,
    trial_used: bool,
    banned: bool,
    balance: Money,
    created_at: DateTime<Utc>,
}

impl UserRow {
    pub(super) fn into_user(self) -> anyhow::Result<User> {
        let referrer = match self.referrer_id {
            Some(raw) => Some(UserId::new(raw).ok_or_else(|| anyhow::anyhow!("stored referrer {raw} is not a user id"))?),
            None => None,
        };
        Ok(User {
            id: self.telegram_id,
            language: Language::from_code(&self.language),
            referrer,
            trial_used: self.trial_used,
            banned: self.banned,
            balance: self.balance,
            created_at: self.created_at,
        })
    }
}

applied_code!(TopUpCode, "credited");

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
    audit_id: i64,
    balance: Money,
}

pub(super) fn payment_error(failure: Failure) -> PaymentError {
    match failure {
        Failure::Refused(Refusal::UnknownUser) => PaymentError::UnknownUser,
        Failure::Refused(Refusal::UserBanned) => PaymentError::UserBanned,
        Failure::Refused(Refusal::UnknownPurchase) => PaymentError::UnknownPurchase,
        Failure::Refused(Refusal::PaymentIdReused) => PaymentError::PaymentIdReused,
        Failure::Refused(Refusal::PaymentAmountMismatch) => PaymentError::AmountMismatch,
        Failure::Refused(Refusal::PaymentMethodMismatch) => PaymentError::MethodMismatch,
        other => other.unexpected("payment"),
    }
}

impl Accounts for PgStore {
    #[tracing::instrument(skip(self), fields(user_id = user.get()))]
    async fn register_user(
        &self,
        user: UserId,
        language: Language,
        referrer: Option<UserId>,
        now: DateTime<Utc>,
    ) -> Result<User, StoreError> {
        // The referrer is kept only if it already exists and is not the user: a forged deep
        // link cannot point at nobody or at oneself. The read is a second statement: when two
        // instances register the same user at once, the loser's insert does nothing, and only a
        // fresh snapshot sees the winner's row.
        let sql = "INSERT INTO users (telegram_id, language, referrer_id, created_at)
            SELECT $1, $2, (SELECT telegram_id FROM users WHERE telegram_id = $3 AND telegram_id <> $1), $4
            ON CONFLICT (telegram_id) DO NOTHING";
        timed(
            sqlx::query(sql)
                .bind(user.get())
                .bind(language.code())
                .bind(referrer.map(UserId::get))
                .bind(now)
                .execute(self.pool()),
        )
        .await?;
        let row: UserRow =
            timed(sqlx::query_as("SELECT * FROM users WHERE telegram_id = $1").bind(user.get()).fetch_one(self.pool()))
                .await?;
        Ok(row.into_user()?)
    }

    async fn user(&self, user: UserId) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = timed(
            sqlx::query_as("SELECT * FROM users WHERE telegram_id = $1").bind(user.get()).fetch_optional(self.pool()),
        )
        .await?;
        Ok(row.map(UserRow::into_user).transpose()?)
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
        let outcome = TopUpOutcome { applied: row.outcome.into(), payment_row_id: row.payment_id, balance: row.balance };
        if outcome.applied == Applied::Done {
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
            sqlx::query_as("SELECT * FROM atlas_admin_adjust($1, $2, $3, $4, $5, $6)")
                .bind(adjustment.admin.get())
                .bind(adjustment.user.get())
                .bind(signed)
                .bind(&adjustment.reason)
                .bind(&adjustment.correlation_id)
                .bind(now)
                .fetch_one(self.pool()),
        )
        .await
        .map_err(|failure| match failure {
            Failure::Refused(Refusal::UnknownUser) => BalanceError::UnknownUser,
            Failure::Refused(Refusal::InsufficientBalance) => BalanceError::InsufficientBalance,
            other => other.unexpected("admin_adjust"),
        })?;
        let event = if signed > 0 { "BALANCE_INCREASED" } else { "BALANCE_DECREASED" };
        tracing::info!(event, amount = signed, balance = row.balance.minor(), audit_id = row.audit_id, "admin balance adjustment");
        Ok(AdjustOutcome { audit_id: row.audit_id, balance: row.balance })
    }
}
