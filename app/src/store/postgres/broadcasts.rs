//! Broadcast sending on PostgreSQL: the job's progress, and one claim row per recipient.

use chrono::{DateTime, Utc};

use super::{PgStore, timed};
use crate::domain::{BroadcastId, Language, UserId};
use crate::ports::store::{BroadcastJob, Broadcasts, Recipient, StoreError};

impl Broadcasts for PgStore {
    async fn open_broadcast(&self) -> Result<Option<BroadcastJob>, StoreError> {
        let sql = "SELECT id, text, last_user_id FROM broadcasts WHERE status <> 'done' ORDER BY id LIMIT 1";
        let row: Option<(BroadcastId, String, i64)> = timed(sqlx::query_as(sql).fetch_optional(self.pool())).await?;
        Ok(row.map(|(id, text, after_user)| BroadcastJob { id, text, after_user }))
    }

    async fn recipients(&self, after_user: i64, limit: u32) -> Result<Vec<Recipient>, StoreError> {
        let sql = "SELECT telegram_id, language FROM users
            WHERE telegram_id > $1 AND NOT banned AND blocked_at IS NULL ORDER BY telegram_id LIMIT $2";
        let rows: Vec<(UserId, String)> =
            timed(sqlx::query_as(sql).bind(after_user).bind(i64::from(limit)).fetch_all(self.pool())).await?;
        Ok(rows.into_iter().map(|(user, lang)| Recipient { user, language: Language::from_code(&lang) }).collect())
    }

    async fn claim_delivery(
        &self,
        broadcast: BroadcastId,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql = "INSERT INTO broadcast_deliveries (broadcast_id, user_id, claimed_at) VALUES ($1, $2, $3)
            ON CONFLICT DO NOTHING";
        let done =
            timed(sqlx::query(sql).bind(broadcast.get()).bind(user.get()).bind(now).execute(self.pool())).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_delivery(&self, broadcast: BroadcastId, user: UserId) -> Result<(), StoreError> {
        let sql = "DELETE FROM broadcast_deliveries WHERE broadcast_id = $1 AND user_id = $2";
        timed(sqlx::query(sql).bind(broadcast.get()).bind(user.get()).execute(self.pool())).await?;
        Ok(())
    }

    async fn advance_broadcast(
        &self,
        broadcast: BroadcastId,
        through_user: i64,
        sent: u32,
        done: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE broadcasts SET last_user_id = GREATEST(last_user_id, $2), sent_count = sent_count + $3,
                status = CASE WHEN $4 THEN 'done' ELSE 'sending' END,
                finished_at = CASE WHEN $4 THEN $5 ELSE finished_at END
            WHERE id = $1 AND status <> 'done'";
        timed(
            sqlx::query(sql)
                .bind(broadcast.get())
                .bind(through_user)
                .bind(i32::try_from(sent).unwrap_or(i32::MAX))
                .bind(done)
                .bind(now)
                .execute(self.pool()),
        )
        .await?;
        Ok(())
    }
}
