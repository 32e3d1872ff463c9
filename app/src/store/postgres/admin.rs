//! Admin tools on PostgreSQL: finding users, the audit log, the shop's figures, broadcasts.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::accounts::UserRow;
use super::{Failure, PgStore, Refusal, applied_code, text_code, timed};
use crate::domain::{BroadcastId, IdempotencyKey, Money, User, UserId};
use crate::ports::store::*;

#[derive(FromRow)]
struct StatsRow {
    users: i64,
    active_subscriptions: i64,
    trials: i64,
    pending_withdrawals: i64,
    purchases_day: i64,
    revenue_day: Money,
}

applied_code!(QueuedCode, "queued");

#[derive(FromRow)]
struct QueuedRow {
    outcome: QueuedCode,
    id: BroadcastId,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).expect("counts are not negative")
}

impl AdminTools for PgStore {
    async fn find_user(&self, query: UserQuery) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = match &query {
            UserQuery::Id(id) => {
                timed(
                    sqlx::query_as("SELECT * FROM users WHERE telegram_id = $1")
                        .bind(id.get())
                        .fetch_optional(self.pool()),
                )
                .await?
            }
            UserQuery::Username(name) => {
                let sql = "SELECT * FROM users WHERE lower(username) = lower($1) ORDER BY telegram_id LIMIT 1";
                timed(sqlx::query_as(sql).bind(name.as_str()).fetch_optional(self.pool())).await?
            }
        };
        Ok(row.map(User::from))
    }

    async fn record_admin_action(&self, action: AdminAction, now: DateTime<Utc>) -> Result<(), StoreError> {
        let sql = "INSERT INTO admin_audit_log (admin_id, action, target_user_id, correlation_id, created_at)
            VALUES ($1, $2, $3, $4, $5)";
        timed(
            sqlx::query(sql)
                .bind(action.admin.get())
                .bind(action.action)
                .bind(action.target.map(UserId::get))
                .bind(&action.correlation_id)
                .bind(now)
                .execute(self.pool()),
        )
        .await?;
        Ok(())
    }

    async fn stats(&self, now: DateTime<Utc>) -> Result<ShopStats, StoreError> {
        let sql = "SELECT
                (SELECT count(*) FROM users) AS users,
                (SELECT count(*) FROM subscriptions WHERE expires_at > $1) AS active_subscriptions,
                (SELECT count(*) FROM subscriptions WHERE expires_at > $1 AND is_trial) AS trials,
                (SELECT count(*) FROM withdrawal_requests WHERE status = 'pending') AS pending_withdrawals,
                (SELECT count(*) FROM pending_purchases
                    WHERE status = 'paid' AND paid_at > $1 - interval '1 day' AND paid_at <= $1) AS purchases_day,
                (SELECT coalesce(sum(amount), 0)::BIGINT FROM pending_purchases
                    WHERE status = 'paid' AND paid_at > $1 - interval '1 day' AND paid_at <= $1) AS revenue_day";
        let row: StatsRow = timed(sqlx::query_as(sql).bind(now).fetch_one(self.pool())).await?;
        Ok(ShopStats {
            users: count(row.users),
            active_subscriptions: count(row.active_subscriptions),
            trials: count(row.trials),
            pending_withdrawals: count(row.pending_withdrawals),
            purchases_day: count(row.purchases_day),
            revenue_day: row.revenue_day,
        })
    }

    async fn create_broadcast(
        &self,
        broadcast: NewBroadcast,
        now: DateTime<Utc>,
    ) -> Result<BroadcastQueued, BroadcastError> {
        let NewBroadcast { admin, text, correlation_id, idempotency_key } = broadcast;
        // The job and its audit row in one statement; a replayed key finds the job (and checks
        // it is the same broadcast).
        let sql = "WITH queued AS (
                INSERT INTO broadcasts (admin_id, text, idempotency_key, status, created_at)
                VALUES ($1, $2, $3, 'pending', $4) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id),
            logged AS (
                INSERT INTO admin_audit_log (admin_id, action, details, correlation_id, created_at)
                SELECT $1, 'broadcast', jsonb_build_object('broadcast_id', id), $5, $4 FROM queued)
            SELECT 'queued' AS outcome, id FROM queued
            UNION ALL
            SELECT 'duplicate', id FROM broadcasts
                WHERE idempotency_key = $3 AND NOT EXISTS (SELECT 1 FROM queued) AND admin_id = $1 AND text = $2";
        let row: Option<QueuedRow> = timed(
            sqlx::query_as(sql)
                .bind(admin.get())
                .bind(&text)
                .bind(idempotency_key.as_ref().map(IdempotencyKey::as_str))
                .bind(now)
                .bind(correlation_id)
                .fetch_optional(self.pool()),
        )
        .await
        .map_err(|failure| match failure {
            Failure::Refused(Refusal::IdempotencyKeyReused) => BroadcastError::IdempotencyKeyReused,
            other => other.unexpected("create_broadcast"),
        })?;
        let row = row.ok_or(BroadcastError::IdempotencyKeyReused)?;
        let queued = BroadcastQueued { applied: row.outcome.into(), broadcast: row.id };
        if queued.applied == Applied::Done {
            tracing::info!(event = "BROADCAST_QUEUED", broadcast_id = queued.broadcast.get(), admin_id = admin.get());
        }
        Ok(queued)
    }
}
