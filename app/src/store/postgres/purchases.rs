//! Purchases on PostgreSQL: the catalogue, purchases from the balance and by a provider, their
//! finalization and closing, and referral rewards.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::accounts::payment_error;
use super::{Failure, PgStore, Refusal, applied_code, text_code, timed};
use crate::domain::{
    Money, Payable, PaymentProviderKind, Percent, PromoCode, PurchaseId, PurchaseStatus, TariffCode, TariffPeriod,
    TopUpId, UserId,
};
use crate::ports::store::*;

#[derive(FromRow)]
struct PeriodRow {
    code: String,
    title: String,
    days: i32,
    price: Money,
}

applied_code!(PurchasedCode, "purchased");
applied_code!(OpenedCode, "created");

/// What `atlas_purchase_from_balance` returns.
#[derive(FromRow)]
struct BalancePurchaseRow {
    outcome: PurchasedCode,
    purchase_id: PurchaseId,
    amount: Money,
    expires_at: DateTime<Utc>,
    balance: Money,
}

/// What `atlas_create_pending_purchase` returns.
#[derive(FromRow)]
struct PendingRow {
    outcome: OpenedCode,
    purchase_id: PurchaseId,
    amount: Money,
    expires_at: DateTime<Utc>,
}

text_code!(FinalizeCode { Finalized = "finalized", Duplicate = "duplicate", CreditedToBalance = "credited_to_balance" });

/// What `atlas_finalize_purchase` returns.
#[derive(FromRow)]
struct FinalizeRow {
    outcome: FinalizeCode,
    expires_at: Option<DateTime<Utc>>,
    payment_id: i64,
    /// The purchase's promo code, if it had one.
    promo: Option<String>,
}

text_code!(ReferralCode {
    Granted = "granted",
    Duplicate = "duplicate",
    NoReferrer = "no_referrer",
    NothingToReward = "nothing_to_reward",
});

/// What `atlas_grant_referral_reward` returns.
#[derive(FromRow)]
struct ReferralRow {
    outcome: ReferralCode,
    referrer_id: Option<i64>,
    amount: Money,
}

/// A purchase as `purchase` reads it.
#[derive(FromRow)]
struct PurchaseInfoRow {
    id: PurchaseId,
    user_id: UserId,
    tariff: TariffCode,
    period_days: i32,
    amount: Money,
    method: String,
    status: PurchaseStatus,
    expires_at: DateTime<Utc>,
    invoice_id: Option<String>,
    invoice_url: Option<String>,
}

text_code!(AttachCode { Attached = "attached", Other = "other", Unknown = "unknown" });

/// The stored invoice of a purchase or top-up (the schema keeps its id and link together).
/// A row of `open_payables`.
#[derive(FromRow)]
struct OpenRow {
    kind: String,
    id: i64,
    user_id: UserId,
    method: String,
    amount: i64,
    expires_at: DateTime<Utc>,
    invoice_id: Option<String>,
    invoice_url: Option<String>,
}

impl OpenRow {
    fn into_open(self) -> anyhow::Result<OpenPayable> {
        let payable = match self.kind.as_str() {
            "p" => Payable::Purchase(PurchaseId::new(self.id).context("stored purchase id")?),
            _ => Payable::TopUp(TopUpId::new(self.id).context("stored top-up id")?),
        };
        let method = PaymentProviderKind::from_code(&self.method)
            .with_context(|| format!("stored payment method {:?}", self.method))?;
        Ok(OpenPayable {
            payable,
            user: self.user_id,
            method,
            // A provider's order is never free (the store refuses a free one).
            amount: Money::positive(self.amount).map_err(|e| anyhow::anyhow!("stored amount {}: {e}", self.amount))?,
            expires_at: self.expires_at,
            invoice: invoice(self.invoice_id, self.invoice_url),
        })
    }
}

pub(super) fn invoice(invoice_id: Option<String>, pay_url: Option<String>) -> Option<Invoice> {
    Some(Invoice { invoice_id: invoice_id?, pay_url: pay_url? })
}

fn purchase_error(failure: Failure) -> PurchaseError {
    match failure {
        Failure::Refused(Refusal::Promo(refusal)) => PurchaseError::Promo(refusal),
        Failure::Refused(Refusal::UnknownUser) => PurchaseError::UnknownUser,
        Failure::Refused(Refusal::UserBanned) => PurchaseError::UserBanned,
        Failure::Refused(Refusal::UnknownTariff) => PurchaseError::UnknownTariff,
        Failure::Refused(Refusal::InsufficientBalance) => PurchaseError::InsufficientBalance,
        Failure::Refused(Refusal::IdempotencyKeyReused) => PurchaseError::IdempotencyKeyReused,
        Failure::Refused(Refusal::PaidAnotherWay) => PurchaseError::PaidAnotherWay,
        Failure::Refused(Refusal::NothingToPay) => PurchaseError::NothingToPay,
        other => other.unexpected("purchase"),
    }
}

fn seconds(d: Duration) -> Result<i32, PurchaseError> {
    i32::try_from(d.as_secs()).map_err(|_| anyhow::anyhow!("a purchase TTL of {d:?} is out of range").into())
}

impl Purchases for PgStore {
    async fn catalogue(&self) -> Result<Vec<TariffPeriod>, StoreError> {
        let sql = "SELECT t.code, t.title, tp.days, tp.price FROM tariffs t
            JOIN tariff_periods tp ON tp.tariff_id = t.id WHERE t.is_active ORDER BY t.id, tp.days";
        let rows: Vec<PeriodRow> = timed(sqlx::query_as(sql).fetch_all(self.pool())).await?;
        let period = |row: PeriodRow| {
            Ok(TariffPeriod {
                tariff: TariffCode::parse(&row.code)
                    .with_context(|| format!("bad stored tariff code {:?}", row.code))?,
                title: row.title,
                days: row.days,
                price: row.price,
            })
        };
        rows.into_iter().map(period).collect::<anyhow::Result<_>>().map_err(StoreError::from)
    }

    #[tracing::instrument(skip(self, request), fields(user_id = request.user.get(), tariff = request.tariff.as_str(), days = request.days))]
    async fn purchase_from_balance(
        &self,
        request: PurchaseRequest,
        now: DateTime<Utc>,
    ) -> Result<PurchaseOutcome, PurchaseError> {
        let row: BalancePurchaseRow = timed(
            sqlx::query_as("SELECT * FROM atlas_purchase_from_balance($1, $2, $3, $4, $5, $6)")
                .bind(request.user.get())
                .bind(request.tariff.as_str())
                .bind(request.days)
                .bind(request.promo.as_ref().map(PromoCode::as_str))
                .bind(request.idempotency_key.as_ref().map(|k| k.as_str()))
                .bind(now)
                .fetch_one(self.pool()),
        )
        .await
        .map_err(purchase_error)?;
        let outcome = PurchaseOutcome {
            applied: row.outcome.into(),
            purchase_id: row.purchase_id,
            amount: row.amount,
            expires_at: row.expires_at,
            balance: row.balance,
        };
        if outcome.applied == Applied::Done {
            tracing::info!(
                event = "BALANCE_DECREASED",
                purchase_id = outcome.purchase_id.get(),
                amount = outcome.amount.minor(),
                balance = outcome.balance.minor(),
                promo = request.promo.is_some(),
                "purchase paid from balance"
            );
            if let Some(code) = &request.promo {
                tracing::info!(
                    event = "PROMOCODE_CONSUMED",
                    code = code.as_str(),
                    purchase_id = outcome.purchase_id.get()
                );
            }
        }
        Ok(outcome)
    }

    #[tracing::instrument(skip(self, request), fields(user_id = request.user.get(), provider = provider.code()))]
    async fn create_pending_purchase(
        &self,
        request: PurchaseRequest,
        provider: PaymentProviderKind,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<PendingPurchase, PurchaseError> {
        let row: PendingRow = timed(
            sqlx::query_as("SELECT * FROM atlas_create_pending_purchase($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(request.user.get())
                .bind(request.tariff.as_str())
                .bind(request.days)
                .bind(request.promo.as_ref().map(PromoCode::as_str))
                .bind(provider.code())
                .bind(request.idempotency_key.as_ref().map(|k| k.as_str()))
                .bind(seconds(ttl)?)
                .bind(now)
                .fetch_one(self.pool()),
        )
        .await
        .map_err(purchase_error)?;
        assert!(!row.amount.is_zero(), "a provider purchase always costs something (NOTHING_TO_PAY otherwise)");
        Ok(PendingPurchase {
            applied: row.outcome.into(),
            purchase_id: row.purchase_id,
            amount: row.amount,
            expires_at: row.expires_at,
        })
    }

    #[tracing::instrument(skip(self, payment), fields(purchase_id = purchase.get(), provider = payment.provider.code()))]
    async fn finalize_purchase(
        &self,
        purchase: PurchaseId,
        payment: ProviderPayment,
        now: DateTime<Utc>,
    ) -> Result<FinalizeOutcome, PaymentError> {
        let row: FinalizeRow = timed(
            sqlx::query_as(
                "SELECT f.outcome, f.expires_at, f.payment_id, c.code AS promo
                FROM atlas_finalize_purchase($1, $2, $3, $4, $5) f
                LEFT JOIN pending_purchases p ON p.id = $1 LEFT JOIN promo_codes c ON c.id = p.promo_id",
            )
            .bind(purchase.get())
            .bind(payment.provider.code())
            .bind(payment.payment_id.as_str())
            .bind(payment.amount.minor())
            .bind(now)
            .fetch_one(self.pool()),
        )
        .await
        .map_err(payment_error)?;
        let outcome = match (row.outcome, row.expires_at) {
            (FinalizeCode::Finalized, Some(expires_at)) => FinalizeOutcome::Finalized { expires_at },
            (FinalizeCode::Finalized, None) => {
                return Err(anyhow::anyhow!("a finalized purchase came back without an expiry").into());
            }
            (FinalizeCode::Duplicate, _) => {
                // Where the payment went the first time. A statement of its own: this one's
                // snapshot may predate the first recording when the two raced (the function
                // saw it only after waiting for the user's lock).
                let purpose: String = timed(
                    sqlx::query_scalar("SELECT purpose FROM payments WHERE id = $1")
                        .bind(row.payment_id)
                        .fetch_one(self.pool()),
                )
                .await
                .map_err(|failure| failure.unexpected::<PaymentError>("finalize_purchase"))?;
                FinalizeOutcome::Duplicate { to_balance: purpose == "topup" }
            }
            (FinalizeCode::CreditedToBalance, _) => FinalizeOutcome::CreditedToBalance,
        };
        match outcome {
            FinalizeOutcome::Finalized { .. } => {
                tracing::info!(event = "PAYMENT_RECEIVED", amount = payment.amount.minor(), "purchase paid");
                if let Some(code) = &row.promo {
                    tracing::info!(event = "PROMOCODE_CONSUMED", code = code.as_str(), purchase_id = purchase.get());
                }
            }
            FinalizeOutcome::CreditedToBalance => {
                tracing::info!(
                    event = "PAYMENT_RECEIVED",
                    amount = payment.amount.minor(),
                    "order closed: to the balance"
                );
                tracing::info!(
                    event = "BALANCE_INCREASED",
                    amount = payment.amount.minor(),
                    "payment for a closed order"
                );
            }
            FinalizeOutcome::Duplicate { .. } => {}
        }
        Ok(outcome)
    }

    async fn close_pending_purchase(&self, purchase: PurchaseId, closure: Closure) -> Result<(), CloseError> {
        let status = match closure {
            Closure::Cancelled => "cancelled",
            Closure::Expired => "expired",
        };
        timed(
            sqlx::query("SELECT atlas_close_pending_purchase($1, $2)")
                .bind(purchase.get())
                .bind(status)
                .execute(self.pool()),
        )
        .await
        .map_err(|failure| match failure {
            Failure::Refused(Refusal::UnknownPurchase) => CloseError::UnknownPurchase,
            Failure::Refused(Refusal::PurchaseNotPending(status)) => CloseError::NotPending(status),
            other => other.unexpected("close_pending_purchase"),
        })?;
        Ok(())
    }

    async fn purchase(&self, purchase: PurchaseId) -> Result<Option<PurchaseInfo>, StoreError> {
        let sql = "SELECT p.id, p.user_id, t.code AS tariff, p.period_days, p.amount, p.method, p.status, p.expires_at,
                p.invoice_id, p.invoice_url
            FROM pending_purchases p JOIN tariffs t ON t.id = p.tariff_id WHERE p.id = $1";
        let row: Option<PurchaseInfoRow> =
            timed(sqlx::query_as(sql).bind(purchase.get()).fetch_optional(self.pool())).await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let method = match row.method.as_str() {
            "balance" => None,
            code => Some(
                PaymentProviderKind::from_code(code)
                    .ok_or_else(|| anyhow::anyhow!("stored purchase method {code:?} is unknown"))?,
            ),
        };
        Ok(Some(PurchaseInfo {
            id: row.id,
            user: row.user_id,
            tariff: row.tariff,
            days: row.period_days,
            amount: row.amount,
            method,
            status: row.status,
            expires_at: row.expires_at,
            invoice: invoice(row.invoice_id, row.invoice_url),
        }))
    }

    async fn attach_invoice(&self, payable: Payable, invoice: &Invoice) -> Result<(), InvoiceError> {
        let (table, id) = match payable {
            Payable::Purchase(id) => ("pending_purchases", id.get()),
            Payable::TopUp(id) => ("topups", id.get()),
        };
        // One statement: attach unless another invoice is there, and say which happened. `table`
        // is one of two fixed names.
        let sql = format!(
            "WITH attached AS (UPDATE {table} SET invoice_id = $2, invoice_url = $3
                WHERE id = $1 AND (invoice_id IS NULL OR (invoice_id = $2 AND invoice_url = $3)) RETURNING id)
            SELECT CASE WHEN EXISTS (SELECT 1 FROM attached) THEN 'attached'
                        WHEN EXISTS (SELECT 1 FROM {table} WHERE id = $1) THEN 'other' ELSE 'unknown' END"
        );
        let query =
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(id).bind(&invoice.invoice_id).bind(&invoice.pay_url);
        let code: AttachCode = timed(query.fetch_one(self.pool())).await.map_err(|failure| match failure {
            // The invoice id is unique per table: an id another row holds is a provider bug.
            Failure::Unexpected(e) => InvoiceError::Unexpected(e.context("attach_invoice")),
            refused => refused.unexpected("attach_invoice"),
        })?;
        match code {
            AttachCode::Attached => Ok(()),
            AttachCode::Other => Err(InvoiceError::AlreadyAttached),
            AttachCode::Unknown => Err(InvoiceError::Unknown),
        }
    }

    #[tracing::instrument(skip(self), fields(purchase_id = purchase.get()))]
    async fn grant_referral_reward(
        &self,
        purchase: PurchaseId,
        percent: Percent,
        now: DateTime<Utc>,
    ) -> Result<ReferralOutcome, ReferralError> {
        let row: ReferralRow = timed(
            sqlx::query_as("SELECT * FROM atlas_grant_referral_reward($1, $2, $3)")
                .bind(purchase.get())
                .bind(i32::from(percent.get()))
                .bind(now)
                .fetch_one(self.pool()),
        )
        .await
        .map_err(|failure| match failure {
            Failure::Refused(Refusal::UnknownPurchase) => ReferralError::UnknownPurchase,
            Failure::Refused(Refusal::PurchaseNotPaid) => ReferralError::PurchaseNotPaid,
            other => other.unexpected("grant_referral_reward"),
        })?;
        Ok(match row.outcome {
            ReferralCode::Granted => {
                let referrer = row.referrer_id.and_then(UserId::new).context("a granted reward names its referrer")?;
                tracing::info!(
                    event = "REFERRAL_REWARD_GRANTED",
                    referrer_id = referrer.get(),
                    amount = row.amount.minor()
                );
                ReferralOutcome::Granted { referrer, amount: row.amount }
            }
            ReferralCode::Duplicate => ReferralOutcome::Duplicate,
            ReferralCode::NoReferrer => ReferralOutcome::NoReferrer,
            ReferralCode::NothingToReward => ReferralOutcome::NothingToReward,
        })
    }

    async fn unrewarded_purchases(
        &self,
        now: DateTime<Utc>,
        window: Duration,
        percent: Percent,
        limit: u32,
    ) -> Result<Vec<PurchaseId>, StoreError> {
        let sql = "SELECT p.id FROM pending_purchases p JOIN users u ON u.telegram_id = p.user_id
            WHERE p.status = 'paid' AND p.paid_at > $1 - make_interval(secs => $2) AND p.paid_at <= $1
              AND u.referrer_id IS NOT NULL AND p.amount * $3 / 100 > 0
              AND NOT EXISTS (SELECT 1 FROM referral_rewards r WHERE r.purchase_id = p.id)
            ORDER BY p.id LIMIT $4";
        let ids: Vec<PurchaseId> = timed(
            sqlx::query_scalar(sql)
                .bind(now)
                .bind(window.as_secs_f64())
                .bind(i64::from(percent.get()))
                .bind(i64::from(limit))
                .fetch_all(self.pool()),
        )
        .await?;
        Ok(ids)
    }

    async fn open_payables(&self, after: Option<Payable>, limit: u32) -> Result<Vec<OpenPayable>, StoreError> {
        // Purchases ('p') before top-ups ('t'), each by id: the order of `Payable`.
        let (after_kind, after_id) = match after {
            None => ("", 0),
            Some(Payable::Purchase(id)) => ("p", id.get()),
            Some(Payable::TopUp(id)) => ("t", id.get()),
        };
        let sql = "SELECT * FROM (
                SELECT 'p' AS kind, id, user_id, method, amount, expires_at, invoice_id, invoice_url
                    FROM pending_purchases WHERE status = 'pending' AND method <> 'balance'
                UNION ALL
                SELECT 't', id, user_id, method, amount, expires_at, invoice_id, invoice_url
                    FROM topups WHERE status = 'pending') open
            WHERE (kind, id) > ($1, $2) ORDER BY kind, id LIMIT $3";
        let rows: Vec<OpenRow> =
            timed(sqlx::query_as(sql).bind(after_kind).bind(after_id).bind(i64::from(limit)).fetch_all(self.pool()))
                .await?;
        rows.into_iter().map(OpenRow::into_open).collect::<anyhow::Result<_>>().map_err(StoreError::from)
    }
}
