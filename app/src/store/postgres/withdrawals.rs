//! Withdrawals on PostgreSQL: a request holds its amount; an admin decides it once.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::{Failure, PgStore, Refusal, applied_code, text_code, timed};
use crate::domain::{IdempotencyKey, Money, Requisites, UserId, WithdrawalId, WithdrawalStatus};
use crate::ports::store::*;

applied_code!(CreatedCode, "created");
applied_code!(DecidedCode, "decided");

/// What `atlas_create_withdrawal` returns.
#[derive(FromRow)]
struct CreatedRow {
    outcome: CreatedCode,
    withdrawal_id: WithdrawalId,
    balance: Money,
}

/// What `atlas_decide_withdrawal` returns.
#[derive(FromRow)]
struct DecidedRow {
    outcome: DecidedCode,
    user_id: UserId,
    amount: Money,
    status: WithdrawalStatus,
}

/// A `withdrawal_requests` row as admins see it.
#[derive(FromRow)]
struct RequestRow {
    id: WithdrawalId,
    user_id: UserId,
    amount: Money,
    requisites: Requisites,
    status: WithdrawalStatus,
    created_at: DateTime<Utc>,
}

impl From<RequestRow> for WithdrawalRequest {
    fn from(r: RequestRow) -> WithdrawalRequest {
        WithdrawalRequest {
            id: r.id,
            user: r.user_id,
            amount: r.amount,
            requisites: r.requisites,
            status: r.status,
            created_at: r.created_at,
        }
    }
}

const REQUEST_COLUMNS: &str = "id, user_id, amount, requisites, status, created_at";

fn key(key: &Option<IdempotencyKey>) -> Option<&str> {
    key.as_ref().map(IdempotencyKey::as_str)
}

fn withdrawal_error(failure: Failure) -> WithdrawalError {
    match failure {
        Failure::Refused(Refusal::UnknownUser) => WithdrawalError::UnknownUser,
        Failure::Refused(Refusal::UserBanned) => WithdrawalError::UserBanned,
        Failure::Refused(Refusal::WithdrawalBelowMinimum) => WithdrawalError::BelowMinimum,
        Failure::Refused(Refusal::InsufficientBalance) => WithdrawalError::InsufficientBalance,
        Failure::Refused(Refusal::UnknownWithdrawal) => WithdrawalError::UnknownWithdrawal,
        Failure::Refused(Refusal::WithdrawalNotPending(status)) => WithdrawalError::NotPending(status),
        Failure::Refused(Refusal::IdempotencyKeyReused) => WithdrawalError::IdempotencyKeyReused,
        other => other.unexpected("withdrawal"),
    }
}

impl Withdrawals for PgStore {
    #[tracing::instrument(skip(self, requisites, idempotency_key), fields(user_id = user.get()))]
    async fn create_withdrawal(
        &self,
        user: UserId,
        amount: Money,
        requisites: Requisites,
        minimum: Money,
        idempotency_key: Option<IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> Result<WithdrawalCreated, WithdrawalError> {
        let row: CreatedRow = timed(
            sqlx::query_as("SELECT * FROM atlas_create_withdrawal($1, $2, $3, $4, $5, $6)")
                .bind(user.get())
                .bind(amount.minor())
                .bind(requisites.as_str())
                .bind(minimum.minor())
                .bind(key(&idempotency_key))
                .bind(now)
                .fetch_one(self.pool()),
        )
        .await
        .map_err(withdrawal_error)?;
        let created =
            WithdrawalCreated { applied: row.outcome.into(), withdrawal: row.withdrawal_id, balance: row.balance };
        if created.applied == Applied::Done {
            tracing::info!(
                event = "WITHDRAWAL_REQUEST_CREATED",
                withdrawal_id = created.withdrawal.get(),
                amount = amount.minor(),
                balance = created.balance.minor()
            );
        }
        Ok(created)
    }

    async fn withdrawal(&self, id: WithdrawalId) -> Result<Option<WithdrawalRequest>, StoreError> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM withdrawal_requests WHERE id = $1");
        let row: Option<RequestRow> =
            timed(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id.get()).fetch_optional(self.pool())).await?;
        Ok(row.map(WithdrawalRequest::from))
    }

    async fn pending_withdrawals(&self, limit: u32) -> Result<Vec<WithdrawalRequest>, StoreError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM withdrawal_requests WHERE status = 'pending' ORDER BY created_at, id LIMIT $1"
        );
        let rows: Vec<RequestRow> =
            timed(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(i64::from(limit)).fetch_all(self.pool())).await?;
        Ok(rows.into_iter().map(WithdrawalRequest::from).collect())
    }

    #[tracing::instrument(skip(self, decision), fields(withdrawal_id = decision.withdrawal.get(), admin_id = decision.admin.get()))]
    async fn decide_withdrawal(
        &self,
        decision: WithdrawalDecision,
        now: DateTime<Utc>,
    ) -> Result<WithdrawalDecided, WithdrawalError> {
        let approve = decision.verdict == Verdict::Approve;
        let row: DecidedRow = timed(
            sqlx::query_as("SELECT * FROM atlas_decide_withdrawal($1, $2, $3, $4, $5, $6, $7)")
                .bind(decision.withdrawal.get())
                .bind(decision.admin.get())
                .bind(approve)
                .bind(&decision.reason)
                .bind(&decision.correlation_id)
                .bind(key(&decision.idempotency_key))
                .bind(now)
                .fetch_one(self.pool()),
        )
        .await
        .map_err(withdrawal_error)?;
        let decided = WithdrawalDecided {
            applied: row.outcome.into(),
            user: row.user_id,
            amount: row.amount,
            status: row.status,
        };
        if decided.applied == Applied::Done {
            let event = if approve { "WITHDRAWAL_APPROVED" } else { "WITHDRAWAL_REJECTED" };
            tracing::info!(event, user_id = decided.user.get(), amount = decided.amount.minor());
        }
        Ok(decided)
    }
}
