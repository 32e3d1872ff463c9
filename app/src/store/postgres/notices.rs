//! Notices on PostgreSQL: one claim row per (subscription, kind, threshold).

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use super::{PgStore, timed};
use crate::domain::{Language, NoticeKind, NoticeThreshold, SubscriptionId, UserId};
use crate::ports::store::{DueNotice, END_NOTICE_WINDOW_HOURS, Notices, StoreError};

/// The reminder scan: one range scan of the expiry index, from a day ago to the widest threshold
/// ahead; each row's threshold is the nearest one its time left is within (0: it ended). Public
/// for the benchmark that shows its plan. Parameters: now, trial, kind, thresholds (hours),
/// the widest threshold, the end window (hours), the limit.
pub const DUE_NOTICES_SQL: &str = "SELECT s.id, s.user_id, u.language, s.expires_at, t.hours
    FROM subscriptions s
    JOIN users u ON u.telegram_id = s.user_id
    CROSS JOIN LATERAL (
        SELECT CASE WHEN s.expires_at <= $1 THEN 0
                    ELSE (SELECT min(h) FROM unnest($4::INT[]) h
                          WHERE s.expires_at <= $1 + make_interval(hours => h)) END AS hours
    ) t
    WHERE s.expires_at > $1 - make_interval(hours => $6) AND s.expires_at <= $1 + make_interval(hours => $5)
      AND s.is_trial = $2 AND (s.is_trial OR NOT s.auto_renew OR s.expires_at <= $1)
      AND NOT u.banned AND u.blocked_at IS NULL AND t.hours IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM notice_deliveries n WHERE n.subscription_id = s.id AND n.kind = $3
             AND n.threshold = CASE WHEN t.hours = 0 THEN 'end' ELSE t.hours || 'h' END
                               || '@' || floor(extract(epoch FROM s.expires_at))::BIGINT)
    ORDER BY s.expires_at, s.id LIMIT $7";

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

    async fn release_notice(
        &self,
        subscription: SubscriptionId,
        kind: NoticeKind,
        threshold: NoticeThreshold,
    ) -> Result<(), StoreError> {
        let sql = "DELETE FROM notice_deliveries WHERE subscription_id = $1 AND kind = $2 AND threshold = $3";
        timed(sqlx::query(sql).bind(subscription.get()).bind(kind.code()).bind(threshold.code()).execute(self.pool()))
            .await?;
        Ok(())
    }

    async fn due_notices(
        &self,
        trial: bool,
        before_hours: Vec<u16>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueNotice>, StoreError> {
        let kind = if trial { NoticeKind::TrialNotice } else { NoticeKind::ExpiryReminder };
        let hours: Vec<i32> = before_hours.iter().map(|h| i32::from(*h)).collect();
        let widest = hours.iter().copied().max().unwrap_or(0);
        let sql = DUE_NOTICES_SQL;
        let rows: Vec<(SubscriptionId, UserId, String, DateTime<Utc>, i32)> = timed(
            sqlx::query_as(sql)
                .bind(now)
                .bind(trial)
                .bind(kind.code())
                .bind(hours)
                .bind(widest)
                .bind(i32::from(END_NOTICE_WINDOW_HOURS))
                .bind(i64::from(limit))
                .fetch_all(self.pool()),
        )
        .await?;
        rows.into_iter()
            .map(|(subscription, user, language, period_end, hours)| {
                let threshold = match hours {
                    0 => NoticeThreshold::AtEnd { period_end },
                    h => NoticeThreshold::Before { hours: u16::try_from(h).context("threshold")?, period_end },
                };
                Ok(DueNotice { subscription, user, language: Language::from_code(&language), kind, threshold })
            })
            .collect::<anyhow::Result<_>>()
            .map_err(StoreError::from)
    }
}
