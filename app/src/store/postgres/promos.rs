//! Promo codes on PostgreSQL: creation by an admin, and the read-only check a user sees.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::{PgStore, timed};
use crate::domain::{Percent, PromoCode, UserId};
use crate::ports::store::*;

/// A promo code as `validate_promo` reads it, with what decides whether this user may use it.
#[derive(FromRow)]
struct PromoCheckRow {
    discount_percent: i32,
    is_active: bool,
    expires_at: Option<DateTime<Utc>>,
    exhausted: bool,
    used_by_user: bool,
}

#[derive(FromRow)]
struct DisabledRow {
    disabled: bool,
    known: bool,
}

impl Promos for PgStore {
    async fn create_promo(&self, promo: NewPromo, now: DateTime<Utc>) -> Result<(), PromoCreateError> {
        promo.check()?;
        // The code and its audit row in one statement.
        let sql = "WITH created AS (
                INSERT INTO promo_codes (code, discount_percent, max_uses, expires_at, created_by, created_at)
                VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (code) DO NOTHING RETURNING id)
            INSERT INTO admin_audit_log (admin_id, action, details, correlation_id, created_at)
            SELECT $5, 'promo_create', jsonb_build_object('code', $1::TEXT, 'discount_percent', $2::INT), $7, $6
            FROM created";
        let max_uses = promo.max_uses.map(|m| i32::try_from(m.get()).expect("checked against PROMO_USES_MAX"));
        let done = timed(
            sqlx::query(sql)
                .bind(promo.code.as_str())
                .bind(i32::from(promo.discount.get()))
                .bind(max_uses)
                .bind(promo.expires_at)
                .bind(promo.created_by.get())
                .bind(now)
                .bind(&promo.correlation_id)
                .execute(self.pool()),
        )
        .await
        .map_err(|failure| failure.unexpected::<PromoCreateError>("create_promo"))?;
        if done.rows_affected() == 0 {
            return Err(PromoCreateError::AlreadyExists);
        }
        tracing::info!(event = "PROMOCODE_CREATED", code = promo.code.as_str(), admin_id = promo.created_by.get());
        Ok(())
    }

    async fn disable_promo(
        &self,
        code: &PromoCode,
        admin: UserId,
        correlation_id: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Applied, PromoDisableError> {
        // Switch it off and write the audit row in one statement; then say whether it existed.
        let sql = "WITH off AS (
                UPDATE promo_codes SET is_active = FALSE WHERE code = $1 AND is_active RETURNING id),
            logged AS (
                INSERT INTO admin_audit_log (admin_id, action, details, correlation_id, created_at)
                SELECT $2, 'promo_disable', jsonb_build_object('code', $1::TEXT), $3, $4 FROM off RETURNING id)
            SELECT EXISTS (SELECT 1 FROM logged) AS disabled,
                   EXISTS (SELECT 1 FROM promo_codes WHERE code = $1) AS known";
        let row: DisabledRow = timed(
            sqlx::query_as(sql)
                .bind(code.as_str())
                .bind(admin.get())
                .bind(correlation_id)
                .bind(now)
                .fetch_one(self.pool()),
        )
        .await
        .map_err(|failure| failure.unexpected::<PromoDisableError>("disable_promo"))?;
        match (row.disabled, row.known) {
            (true, _) => {
                tracing::info!(event = "PROMOCODE_DISABLED", code = code.as_str(), admin_id = admin.get());
                Ok(Applied::Done)
            }
            (false, true) => Ok(Applied::Duplicate),
            (false, false) => Err(PromoDisableError::NotFound),
        }
    }

    async fn validate_promo(
        &self,
        user: UserId,
        code: &PromoCode,
        now: DateTime<Utc>,
    ) -> Result<PromoQuote, PromoError> {
        let sql = "SELECT c.discount_percent, c.is_active, c.expires_at,
                (c.max_uses IS NOT NULL AND c.used_count >= c.max_uses) AS exhausted,
                EXISTS (SELECT 1 FROM promo_redemptions r WHERE r.promo_id = c.id AND r.user_id = $2) AS used_by_user
            FROM promo_codes c WHERE c.code = $1";
        let row: Option<PromoCheckRow> =
            timed(sqlx::query_as(sql).bind(code.as_str()).bind(user.get()).fetch_optional(self.pool()))
                .await
                .map_err(|failure| failure.unexpected::<PromoError>("validate_promo"))?;
        let Some(row) = row else {
            return Err(PromoRefusal::NotFound.into());
        };
        let refusal = if !row.is_active {
            Some(PromoRefusal::Disabled)
        } else if row.expires_at.is_some_and(|at| at <= now) {
            Some(PromoRefusal::Expired)
        } else if row.used_by_user {
            Some(PromoRefusal::AlreadyUsedByUser)
        } else if row.exhausted {
            Some(PromoRefusal::Exhausted)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return Err(refusal.into());
        }
        let discount = u8::try_from(row.discount_percent)
            .ok()
            .and_then(|p| Percent::new(p).ok())
            .ok_or_else(|| anyhow::anyhow!("stored discount {} is not a percentage", row.discount_percent))?;
        tracing::info!(event = "PROMOCODE_VALIDATED", user_id = user.get(), code = code.as_str());
        Ok(PromoQuote { code: code.clone(), discount })
    }
}
