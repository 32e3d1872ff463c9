//! Withdrawals on PostgreSQL: a request holds its amount; an admin decides it once.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::{Failure, PgStore, Refusal, timed};
use crate::domain::{Money, Requisites, UserId, WithdrawalId, WithdrawalStatus};
use crate::ports::store::*;

/// What `atlas_create_withdrawal` returns.
#[derive(FromRow)]
struct CreatedRow {
    withdrawal_id: WithdrawalId,
    balance: Money,
}

/// What `atlas_decide_withdrawal` returns.
#[derive(FromRow)]
struct DecidedRow {
    user_id: UserId,
    amount: Money,
    status: String,
}

fn withdrawal_error(failure: Failure) -> WithdrawalError {
    match failure {
        Failure::Refused(Refusal::UnknownUser) => WithdrawalError::UnknownUser,
        Failure::Refused(Refusal::UserBanned) => WithdrawalError::UserBanned,
        Failure::Refused(Refusal::WithdrawalBelowMinimum) => WithdrawalError::BelowMinimum,
        Failure::Refused(Refusal::InsufficientBalance) => WithdrawalError::InsufficientBalance,
        Failure::Refused(Refusal::UnknownWithdrawal) => WithdrawalError::UnknownWithdrawal,
        Failure::Refused(Refusal::WithdrawalNotPending(status)) => WithdrawalError::NotPending(status),
        other => other.unexpected("withdrawal"),
    }
}

impl Withdrawals for PgStore {
    #[tracing::instrument(skip(self, requisites), fields(user_id = user.get()))]
    async fn create_withdrawal(
        &self,
        user: UserId,
        amount: Money,
        requisites: Requisites,
        minimum: Money,
        now: DateTime<Utc>,
    ) -> Result<WithdrawalCreated, WithdrawalError> {
        let row: CreatedRow = timed(
            sqlx::query_as("SELECT * FROM atlas_create_withdrawal($1, $2, $3, $4, $5)")
                .bind(user.get())
                .bind(amount.minor())
                .bind(requisites.as_str())
                .bind(minimum.minor())
                .bind(now)
                .fetch_one(self.pool()),
        )
        .await
        .map_err(withdrawal_error)?;
        tracing::info!(
            event = "WITHDRAWAL_REQUEST_CREATED",
            withdrawal_id = row.withdrawal_id.get(),
            amount = amount.minor(),
            balance = row.balance.minor()
        );
        Ok(WithdrawalCreated { withdrawal: row.withdrawal_id, balance: row.balance })
    }

    #[tracing::instrument(skip(self, decision), fields(withdrawal_id = decision.withdrawal.get(), admin_id = decision.admin.get()))]
    async fn decide_withdrawal(
        &self,
        decision: WithdrawalDecision,
        now: DateTime<Utc>,
    ) -> Result<WithdrawalDecided, WithdrawalError> {
        let approve = decision.verdict == Verdict::Approve;
        let row: DecidedRow = timed(
            sqlx::query_as("SELECT * FROM atlas_decide_withdrawal($1, $2, $3, $4, $5, $6)")
                .bind(decision.withdrawal.get())
                .bind(decision.admin.get())
                .bind(approve)
                .bind(&decision.reason)
                .bind(&decision.correlation_id)
                .bind(now)
                .fetch_one(self.pool()),
        )
        .await
        .map_err(withdrawal_error)?;
        let status = WithdrawalStatus::from_code(&row.status)
            .ok_or_else(|| anyhow::anyhow!("unknown withdrawal status {:?}", row.status))?;
        let event = if approve { "WITHDRAWAL_APPROVED" } else { "WITHDRAWAL_REJECTED" };
        tracing::info!(event, amount = row.amount.minor());
        Ok(WithdrawalDecided { user: row.user_id, amount: row.amount, status })
    }
}
