//! Notices on PostgreSQL: one claim row per (subscription, kind, threshold).

use chrono::{DateTime, Utc};

use super::{PgStore, timed};
use crate::domain::{NoticeKind, NoticeThreshold, SubscriptionId};
use crate::ports::store::{Notices, StoreError};

impl Notices for PgStore {
    async fn claim_notice(
        &self,
        subscription: SubscriptionId,
        kind: NoticeKind,
        threshold: NoticeThreshold,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql = "INSERT INTO notice_deliveries (subscription_id, kind, threshold, claimed_at)
            VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
        let done = timed(
            sqlx::query(sql)
                .bind(subscription.get())
                .bind(kind.code())
                .bind(threshold.code())
                .bind(now)
                .execute(self.pool()),
        )
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
