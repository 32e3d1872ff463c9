//! The Store port on PostgreSQL (sqlx). Money operations are SQL functions (see
//! `migrations/0002_money_operations.sql`): one statement each, so each is atomic and costs one
//! round trip. This file binds their arguments, bounds every call with a timeout, and maps the
//! refusal codes they raise into the typed errors of the port.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgPoolOptions};
use sqlx::{PgPool, Row as _};

use crate::domain::{
    ACTIVATION_ATTEMPTS_MAX, ActivationStatus, Language, Money, NoticeKind, PaymentProviderKind, PromoCode, Requisites,
    Subscription, TariffCode, TariffPeriod, User, UserId, WithdrawalStatus,
};
use crate::ports::store::*;
use crate::ports::vpn::PanelKey;

/// Longest the server may run one statement, lock waits included. It is the bound that decides:
/// the server cancels (and rolls back) a statement past it, before the client gives up, so a call
/// the client reports as failed has not committed later.
const STATEMENT_TIMEOUT_MS: u64 = 8_000;

/// How long to wait for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a single store call may take, waiting for a pooled connection included: longer than
/// the acquire and statement bounds together, so it fires only when the server stopped
/// answering (then the outcome is unknown, as with any lost connection).
pub const STORE_CALL_TIMEOUT: Duration = Duration::from_secs(16);

const _: () = assert!(STORE_CALL_TIMEOUT.as_millis() > ACQUIRE_TIMEOUT.as_millis() + STATEMENT_TIMEOUT_MS as u128);

/// The migrations, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects a pool of at most `max_connections` to `url` (a `postgres://` URL).
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgStore> {
        let options: PgConnectOptions = url.parse().context("invalid PostgreSQL URL")?;
        let options =
            options.application_name("atlas").options([("statement_timeout", STATEMENT_TIMEOUT_MS.to_string())]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .context("cannot connect to PostgreSQL")?;
        Ok(PgStore { pool })
    }

    pub fn from_pool(pool: PgPool) -> PgStore {
        PgStore { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies every migration not yet applied.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR.run(&self.pool).await.context("migration failed")
    }
}

/// Runs a query with the call timeout; a timeout becomes an unexpected error.
async fn timed<T>(query: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, sqlx::Error> {
    match tokio::time::timeout(STORE_CALL_TIMEOUT, query).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> StoreError {
        StoreError::Unexpected(anyhow::Error::new(err).context("store call failed"))
    }
}

/// A refusal raised by a SQL function (`RAISE EXCEPTION 'CODE'`), or a constraint that backs one.
struct Refusal {
    code: String,
    detail: Option<String>,
}

fn refusal(err: &sqlx::Error) -> Option<Refusal> {
    let db = err.as_database_error()?;
    let detail = db.try_downcast_ref::<PgDatabaseError>().and_then(|e| e.detail()).map(str::to_owned);
    let code = match (db.code().as_deref(), db.constraint()) {
        (Some("P0001"), _) => db.message().to_owned(),
        // The constraints behind the functions' own checks: reached only if a check were missed.
        (Some("23514"), Some("users_balance_non_negative")) => "INSUFFICIENT_BALANCE".into(),
        (Some("23514"), Some("promo_used_within_max")) => "PROMOCODE_ALREADY_USED_OR_EXPIRED".into(),
        (Some("23505"), Some("promo_redemptions_pkey")) => "PROMO_ALREADY_USED_BY_USER".into(),
        // Keys unique across users, checked under one user's lock: two users racing for the same
        // key or payment id meet here.
        (Some("23505"), Some("payment_idempotency_keys_pkey")) => "IDEMPOTENCY_KEY_REUSED".into(),
        (Some("23505"), Some("payments_provider_provider_payment_id_key")) => "PAYMENT_ID_REUSED".into(),
        _ => return None,
    };
    Some(Refusal { code, detail })
}

fn promo_refusal(code: &str) -> Option<PromoRefusal> {
    Some(match code {
        "PROMO_NOT_FOUND" => PromoRefusal::NotFound,
        "PROMO_DISABLED" => PromoRefusal::Disabled,
        "PROMO_EXPIRED" => PromoRefusal::Expired,
        "PROMOCODE_ALREADY_USED_OR_EXPIRED" => PromoRefusal::Exhausted,
        "PROMO_ALREADY_USED_BY_USER" => PromoRefusal::AlreadyUsedByUser,
        _ => return None,
    })
}

/// Maps a driver error to a use case's error: a known refusal code to its variant, anything
/// else to `Unexpected` with the cause attached.
fn map_err<E: From<anyhow::Error>>(err: sqlx::Error, known: impl FnOnce(&str, Option<&str>) -> Option<E>) -> E {
    if let Some(mapped) = refusal(&err).and_then(|r| known(&r.code, r.detail.as_deref())) {
        return mapped;
    }
    E::from(anyhow::Error::new(err).context("store call failed"))
}

fn applied(outcome: &str) -> Applied {
    if outcome == "duplicate" { Applied::Duplicate } else { Applied::Done }
}

fn user_id(raw: i64) -> anyhow::Result<UserId> {
    UserId::new(raw).with_context(|| format!("stored user id {raw} is not positive"))
}

fn user_from_row(row: &sqlx::postgres::PgRow) -> anyhow::Result<User> {
    Ok(User {
        id: user_id(row.try_get("telegram_id")?)?,
        language: Language::from_code(row.try_get::<&str, _>("language")?),
        referrer: row.try_get::<Option<i64>, _>("referrer_id")?.map(user_id).transpose()?,
        trial_used: row.try_get("trial_used")?,
        banned: row.try_get("banned")?,
        balance: row.try_get("balance")?,
        created_at: row.try_get("created_at")?,
    })
}

fn subscription_from_row(row: &sqlx::postgres::PgRow) -> anyhow::Result<Subscription> {
    let status: &str = row.try_get("activation_status")?;
    Ok(Subscription {
        id: row.try_get("id")?,
        user: user_id(row.try_get("user_id")?)?,
        tariff_id: row.try_get("tariff_id")?,
        period_days: row.try_get("period_days")?,
        expires_at: row.try_get("expires_at")?,
        is_trial: row.try_get("is_trial")?,
        auto_renew: row.try_get("auto_renew")?,
        last_auto_renewal_at: row.try_get("last_auto_renewal_at")?,
        activation_status: ActivationStatus::from_code(status)
            .with_context(|| format!("unknown activation status {status:?}"))?,
        activation_attempts: row.try_get("activation_attempts")?,
        key_fence: row.try_get("key_fence")?,
    })
}

fn purchase_error(code: &str, _detail: Option<&str>) -> Option<PurchaseError> {
    if let Some(promo) = promo_refusal(code) {
        return Some(PurchaseError::Promo(promo));
    }
    Some(match code {
        "UNKNOWN_USER" => PurchaseError::UnknownUser,
        "USER_BANNED" => PurchaseError::UserBanned,
        "UNKNOWN_TARIFF" => PurchaseError::UnknownTariff,
        "INSUFFICIENT_BALANCE" => PurchaseError::InsufficientBalance,
        "IDEMPOTENCY_KEY_REUSED" => PurchaseError::IdempotencyKeyReused,
        "NOTHING_TO_PAY" => PurchaseError::NothingToPay,
        _ => return None,
    })
}

fn payment_error(code: &str, _detail: Option<&str>) -> Option<PaymentError> {
    Some(match code {
        "UNKNOWN_USER" => PaymentError::UnknownUser,
        "USER_BANNED" => PaymentError::UserBanned,
        "UNKNOWN_PURCHASE" => PaymentError::UnknownPurchase,
        "PAYMENT_ID_REUSED" => PaymentError::PaymentIdReused,
        "PAYMENT_AMOUNT_MISMATCH" => PaymentError::AmountMismatch,
        "PAYMENT_METHOD_MISMATCH" => PaymentError::MethodMismatch,
        _ => return None,
    })
}

fn withdrawal_error(code: &str, detail: Option<&str>) -> Option<WithdrawalError> {
    Some(match code {
        "UNKNOWN_USER" => WithdrawalError::UnknownUser,
        "USER_BANNED" => WithdrawalError::UserBanned,
        "WITHDRAWAL_BELOW_MINIMUM" => WithdrawalError::BelowMinimum,
        "INSUFFICIENT_BALANCE" => WithdrawalError::InsufficientBalance,
        "UNKNOWN_WITHDRAWAL" => WithdrawalError::UnknownWithdrawal,
        "WITHDRAWAL_NOT_PENDING" => WithdrawalError::NotPending(WithdrawalStatus::from_code(detail?)?),
        _ => return None,
    })
}

fn key_error(code: &str, detail: Option<&str>) -> Option<KeyError> {
    match code {
        "UNKNOWN_SUBSCRIPTION" => Some(KeyError::UnknownSubscription),
        "STALE_FENCING_TOKEN" => Some(KeyError::StaleFencingToken { current: detail?.parse().ok()? }),
        _ => None,
    }
}

impl Store for PgStore {
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
                .execute(&self.pool),
        )
        .await?;
        let row =
            timed(sqlx::query("SELECT * FROM users WHERE telegram_id = $1").bind(user.get()).fetch_one(&self.pool))
                .await?;
        Ok(user_from_row(&row)?)
    }

    async fn user(&self, user: UserId) -> Result<Option<User>, StoreError> {
        let row = timed(
            sqlx::query("SELECT * FROM users WHERE telegram_id = $1").bind(user.get()).fetch_optional(&self.pool),
        )
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    async fn catalogue(&self) -> Result<Vec<TariffPeriod>, StoreError> {
        let sql = "SELECT t.code, t.title, tp.days, tp.price FROM tariffs t
            JOIN tariff_periods tp ON tp.tariff_id = t.id WHERE t.is_active ORDER BY t.id, tp.days";
        let rows: Vec<(String, String, i32, i64)> = timed(sqlx::query_as(sql).fetch_all(&self.pool)).await?;
        rows.into_iter()
            .map(|(code, title, days, price)| {
                Ok(TariffPeriod {
                    tariff: TariffCode::parse(&code).with_context(|| format!("bad stored tariff code {code:?}"))?,
                    title,
                    days,
                    price: Money::from_minor(price).context("bad stored price")?,
                })
            })
            .collect()
    }

    async fn subscription(&self, user: UserId) -> Result<Option<Subscription>, StoreError> {
        let row = timed(
            sqlx::query("SELECT * FROM subscriptions WHERE user_id = $1").bind(user.get()).fetch_optional(&self.pool),
        )
        .await?;
        Ok(row.as_ref().map(subscription_from_row).transpose()?)
    }

    #[tracing::instrument(skip(self, payment), fields(user_id = user.get(), provider = payment.provider.code()))]
    async fn top_up(
        &self,
        user: UserId,
        payment: ProviderPayment,
        now: DateTime<Utc>,
    ) -> Result<TopUpOutcome, PaymentError> {
        let row: (String, i64, i64) = timed(
            sqlx::query_as("SELECT * FROM atlas_top_up($1, $2, $3, $4, $5)")
                .bind(user.get())
                .bind(payment.amount.minor())
                .bind(payment.provider.code())
                .bind(payment.payment_id.as_str())
                .bind(now)
                .fetch_one(&self.pool),
        )
        .await
        .map_err(|e| map_err(e, payment_error))?;
        let outcome = TopUpOutcome { applied: applied(&row.0), payment_row_id: row.1, balance: row.2 };
        if outcome.applied == Applied::Done {
            tracing::info!(
                event = "BALANCE_INCREASED",
                amount = payment.amount.minor(),
                balance = outcome.balance,
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
        let row: (i64, i64) = timed(
            sqlx::query_as("SELECT * FROM atlas_admin_adjust($1, $2, $3, $4, $5, $6)")
                .bind(adjustment.admin.get())
                .bind(adjustment.user.get())
                .bind(signed)
                .bind(&adjustment.reason)
                .bind(&adjustment.correlation_id)
                .bind(now)
                .fetch_one(&self.pool),
        )
        .await
        .map_err(|e| {
            map_err(e, |code, _| match code {
                "UNKNOWN_USER" => Some(BalanceError::UnknownUser),
                "INSUFFICIENT_BALANCE" => Some(BalanceError::InsufficientBalance),
                _ => None,
            })
        })?;
        let event = if signed > 0 { "BALANCE_INCREASED" } else { "BALANCE_DECREASED" };
        tracing::info!(event, amount = signed, balance = row.1, audit_id = row.0, "admin balance adjustment");
        Ok(AdjustOutcome { audit_id: row.0, balance: row.1 })
    }

    async fn create_promo(&self, promo: NewPromo, now: DateTime<Utc>) -> Result<(), PromoCreateError> {
        promo.check()?;
        let sql = "INSERT INTO promo_codes (code, discount_percent, max_uses, expires_at, created_by, created_at)
            VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (code) DO NOTHING";
        let done = timed(
            sqlx::query(sql)
                .bind(promo.code.as_str())
                .bind(promo.discount_percent)
                .bind(promo.max_uses)
                .bind(promo.expires_at)
                .bind(promo.created_by.get())
                .bind(now)
                .execute(&self.pool),
        )
        .await
        .map_err(|e| PromoCreateError::Unexpected(e.into()))?;
        if done.rows_affected() == 0 {
            return Err(PromoCreateError::AlreadyExists);
        }
        tracing::info!(event = "PROMOCODE_CREATED", code = promo.code.as_str(), admin_id = promo.created_by.get());
        Ok(())
    }

    async fn set_auto_renew(&self, user: UserId, enabled: bool, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let sql = "UPDATE subscriptions SET auto_renew = $2, updated_at = $3 WHERE user_id = $1";
        let done = timed(sqlx::query(sql).bind(user.get()).bind(enabled).bind(now).execute(&self.pool)).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn validate_promo(
        &self,
        user: UserId,
        code: &PromoCode,
        now: DateTime<Utc>,
    ) -> Result<PromoQuote, PromoError> {
        let sql = "SELECT c.discount_percent, c.is_active, c.expires_at,
                (c.max_uses IS NOT NULL AND c.used_count >= c.max_uses) AS exhausted,
                EXISTS (SELECT 1 FROM promo_redemptions r WHERE r.promo_id = c.id AND r.user_id = $2) AS used
            FROM promo_codes c WHERE c.code = $1";
        /// discount_percent, is_active, expires_at, exhausted, used by this user
        type PromoRow = (i32, bool, Option<DateTime<Utc>>, bool, bool);
        let row: Option<PromoRow> =
            timed(sqlx::query_as(sql).bind(code.as_str()).bind(user.get()).fetch_optional(&self.pool))
                .await
                .map_err(|e| PromoError::Unexpected(e.into()))?;
        let Some((discount_percent, active, expires_at, exhausted, used)) = row else {
            return Err(PromoRefusal::NotFound.into());
        };
        let refusal = if !active {
            Some(PromoRefusal::Disabled)
        } else if expires_at.is_some_and(|at| at <= now) {
            Some(PromoRefusal::Expired)
        } else if used {
            Some(PromoRefusal::AlreadyUsedByUser)
        } else if exhausted {
            Some(PromoRefusal::Exhausted)
        } else {
            None
        };
        match refusal {
            Some(r) => Err(r.into()),
            None => {
                tracing::info!(event = "PROMOCODE_VALIDATED", user_id = user.get(), code = code.as_str());
                Ok(PromoQuote { code: code.clone(), discount_percent })
            }
        }
    }

    #[tracing::instrument(skip(self, request), fields(user_id = request.user.get(), tariff = request.tariff.as_str(), days = request.days))]
    async fn purchase_from_balance(
        &self,
        request: PurchaseRequest,
        now: DateTime<Utc>,
    ) -> Result<PurchaseOutcome, PurchaseError> {
        let row: (String, i64, i64, DateTime<Utc>, i64) = timed(
            sqlx::query_as("SELECT * FROM atlas_purchase_from_balance($1, $2, $3, $4, $5, $6)")
                .bind(request.user.get())
                .bind(request.tariff.as_str())
                .bind(request.days)
                .bind(request.promo.as_ref().map(PromoCode::as_str))
                .bind(request.idempotency_key.as_ref().map(|k| k.as_str()))
                .bind(now)
                .fetch_one(&self.pool),
        )
        .await
        .map_err(|e| map_err(e, purchase_error))?;
        let outcome = PurchaseOutcome {
            applied: applied(&row.0),
            purchase_id: row.1,
            amount: row.2,
            expires_at: row.3,
            balance: row.4,
        };
        if outcome.applied == Applied::Done {
            tracing::info!(
                event = "BALANCE_DECREASED",
                purchase_id = outcome.purchase_id,
                amount = outcome.amount,
                balance = outcome.balance,
                promo = request.promo.is_some(),
                "purchase paid from balance"
            );
        }
        Ok(outcome)
    }

    #[tracing::instrument(skip(self, request), fields(user_id = request.user.get(), provider = provider.code()))]
    async fn create_pending_purchase(
        &self,
        request: PurchaseRequest,
        provider: PaymentProviderKind,
        ttl_seconds: i32,
        now: DateTime<Utc>,
    ) -> Result<PendingPurchase, PurchaseError> {
        let row: (String, i64, i64, DateTime<Utc>) = timed(
            sqlx::query_as("SELECT * FROM atlas_create_pending_purchase($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(request.user.get())
                .bind(request.tariff.as_str())
                .bind(request.days)
                .bind(request.promo.as_ref().map(PromoCode::as_str))
                .bind(provider.code())
                .bind(request.idempotency_key.as_ref().map(|k| k.as_str()))
                .bind(ttl_seconds)
                .bind(now)
                .fetch_one(&self.pool),
        )
        .await
        .map_err(|e| map_err(e, purchase_error))?;
        Ok(PendingPurchase { applied: applied(&row.0), purchase_id: row.1, amount: row.2, expires_at: row.3 })
    }

    #[tracing::instrument(skip(self, payment), fields(provider = payment.provider.code()))]
    async fn finalize_purchase(
        &self,
        purchase_id: i64,
        payment: ProviderPayment,
        now: DateTime<Utc>,
    ) -> Result<FinalizeOutcome, PaymentError> {
        let row: (String, i64, Option<DateTime<Utc>>) = timed(
            sqlx::query_as("SELECT * FROM atlas_finalize_purchase($1, $2, $3, $4, $5)")
                .bind(purchase_id)
                .bind(payment.provider.code())
                .bind(payment.payment_id.as_str())
                .bind(payment.amount.minor())
                .bind(now)
                .fetch_one(&self.pool),
        )
        .await
        .map_err(|e| map_err(e, payment_error))?;
        let outcome = match (row.0.as_str(), row.2) {
            ("finalized", Some(expires_at)) => FinalizeOutcome::Finalized { expires_at },
            ("duplicate", _) => FinalizeOutcome::Duplicate,
            ("credited_to_balance", _) => FinalizeOutcome::CreditedToBalance,
            (other, _) => {
                return Err(PaymentError::Unexpected(anyhow::anyhow!("unexpected finalize outcome {other:?}")));
            }
        };
        tracing::info!(event = "PAYMENT_RECEIVED", amount = payment.amount.minor(), outcome = row.0.as_str());
        Ok(outcome)
    }

    async fn close_pending_purchase(&self, purchase_id: i64, closure: Closure) -> Result<(), CloseError> {
        let status = match closure {
            Closure::Cancelled => "cancelled",
            Closure::Expired => "expired",
        };
        timed(
            sqlx::query("SELECT atlas_close_pending_purchase($1, $2)")
                .bind(purchase_id)
                .bind(status)
                .execute(&self.pool),
        )
        .await
        .map_err(|e| {
            map_err(e, |code, detail| match code {
                "UNKNOWN_PURCHASE" => Some(CloseError::UnknownPurchase),
                "PURCHASE_NOT_PENDING" => Some(CloseError::NotPending(detail.unwrap_or("unknown").to_owned())),
                _ => None,
            })
        })?;
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    async fn grant_referral_reward(
        &self,
        purchase_id: i64,
        percent: u8,
        now: DateTime<Utc>,
    ) -> Result<ReferralOutcome, ReferralError> {
        let percent = i32::from(percent.min(100));
        let row: (String, Option<i64>, i64) = timed(
            sqlx::query_as("SELECT * FROM atlas_grant_referral_reward($1, $2, $3)")
                .bind(purchase_id)
                .bind(percent)
                .bind(now)
                .fetch_one(&self.pool),
        )
        .await
        .map_err(|e| {
            map_err(e, |code, _| match code {
                "UNKNOWN_PURCHASE" => Some(ReferralError::UnknownPurchase),
                "PURCHASE_NOT_PAID" => Some(ReferralError::PurchaseNotPaid),
                _ => None,
            })
        })?;
        Ok(match (row.0.as_str(), row.1) {
            ("granted", Some(referrer)) => {
                tracing::info!(event = "REFERRAL_REWARD_GRANTED", referrer_id = referrer, amount = row.2);
                ReferralOutcome::Granted { referrer: user_id(referrer)?, amount: row.2 }
            }
            ("duplicate", _) => ReferralOutcome::Duplicate,
            ("no_referrer", _) => ReferralOutcome::NoReferrer,
            ("nothing_to_reward", _) => ReferralOutcome::NothingToReward,
            (other, _) => {
                return Err(ReferralError::Unexpected(anyhow::anyhow!("unexpected referral outcome {other:?}")));
            }
        })
    }

    #[tracing::instrument(skip(self, requisites), fields(user_id = user.get()))]
    async fn create_withdrawal(
        &self,
        user: UserId,
        amount: Money,
        requisites: Requisites,
        minimum: Money,
        now: DateTime<Utc>,
    ) -> Result<WithdrawalCreated, WithdrawalError> {
        let row: (i64, i64) = timed(
            sqlx::query_as("SELECT * FROM atlas_create_withdrawal($1, $2, $3, $4, $5)")
                .bind(user.get())
                .bind(amount.minor())
                .bind(requisites.as_str())
                .bind(minimum.minor())
                .bind(now)
                .fetch_one(&self.pool),
        )
        .await
        .map_err(|e| map_err(e, withdrawal_error))?;
        tracing::info!(
            event = "WITHDRAWAL_REQUEST_CREATED",
            withdrawal_id = row.0,
            amount = amount.minor(),
            balance = row.1
        );
        Ok(WithdrawalCreated { withdrawal_id: row.0, balance: row.1 })
    }

    #[tracing::instrument(skip(self, decision), fields(withdrawal_id = decision.withdrawal_id, admin_id = decision.admin.get()))]
    async fn decide_withdrawal(
        &self,
        decision: WithdrawalDecision,
        now: DateTime<Utc>,
    ) -> Result<WithdrawalDecided, WithdrawalError> {
        let row: (i64, i64, String) = timed(
            sqlx::query_as("SELECT * FROM atlas_decide_withdrawal($1, $2, $3, $4, $5, $6)")
                .bind(decision.withdrawal_id)
                .bind(decision.admin.get())
                .bind(decision.approve)
                .bind(&decision.reason)
                .bind(&decision.correlation_id)
                .bind(now)
                .fetch_one(&self.pool),
        )
        .await
        .map_err(|e| map_err(e, withdrawal_error))?;
        let status =
            WithdrawalStatus::from_code(&row.2).with_context(|| format!("unknown withdrawal status {:?}", row.2))?;
        let event = if decision.approve { "WITHDRAWAL_APPROVED" } else { "WITHDRAWAL_REJECTED" };
        tracing::info!(event, amount = row.1);
        Ok(WithdrawalDecided { user: user_id(row.0)?, amount: row.1, status })
    }

    async fn auto_renew_next(
        &self,
        now: DateTime<Utc>,
        horizon_seconds: i32,
    ) -> Result<Option<RenewalOutcome>, StoreError> {
        let row: Option<(String, i64, i64, i64, DateTime<Utc>)> = timed(
            sqlx::query_as("SELECT * FROM atlas_auto_renew_next($1, $2)")
                .bind(now)
                .bind(horizon_seconds)
                .fetch_optional(&self.pool),
        )
        .await?;
        let Some((outcome, subscription_id, user, amount, expires_at)) = row else {
            return Ok(None);
        };
        let user = user_id(user)?;
        Ok(Some(match outcome.as_str() {
            "renewed" => {
                tracing::info!(
                    event = "BALANCE_DECREASED",
                    user_id = user.get(),
                    subscription_id,
                    amount,
                    "auto-renewal"
                );
                RenewalOutcome::Renewed { subscription_id, user, amount, expires_at }
            }
            "insufficient_funds" => RenewalOutcome::InsufficientFunds { subscription_id, user },
            "tariff_unavailable" => RenewalOutcome::TariffUnavailable { subscription_id, user },
            "busy" => RenewalOutcome::Busy,
            other => return Err(anyhow::anyhow!("unexpected renewal outcome {other:?}").into()),
        }))
    }

    async fn activate_trial(
        &self,
        user: UserId,
        tariff: &TariffCode,
        days: i32,
        now: DateTime<Utc>,
    ) -> Result<Subscription, TrialError> {
        let row = timed(
            sqlx::query("SELECT * FROM atlas_activate_trial($1, $2, $3, $4)")
                .bind(user.get())
                .bind(tariff.as_str())
                .bind(days)
                .bind(now)
                .fetch_one(&self.pool),
        )
        .await
        .map_err(|e| {
            map_err(e, |code, _| match code {
                "UNKNOWN_USER" => Some(TrialError::UnknownUser),
                "USER_BANNED" => Some(TrialError::UserBanned),
                "TRIAL_ALREADY_USED" => Some(TrialError::AlreadyUsed),
                "TRIAL_NOT_FOR_SUBSCRIBERS" => Some(TrialError::NotForSubscribers),
                "UNKNOWN_TARIFF" => Some(TrialError::UnknownTariff),
                _ => None,
            })
        })?;
        Ok(subscription_from_row(&row)?)
    }

    async fn pending_activations(&self, limit: i64) -> Result<Vec<i64>, StoreError> {
        let sql = "SELECT id FROM subscriptions WHERE activation_status = 'pending' ORDER BY id LIMIT $1";
        Ok(timed(sqlx::query_scalar(sql).bind(limit).fetch_all(&self.pool)).await?)
    }

    #[tracing::instrument(skip(self, result))]
    async fn record_activation(
        &self,
        subscription_id: i64,
        result: ActivationResult,
        now: DateTime<Utc>,
    ) -> Result<ActivationOutcome, StoreError> {
        match result {
            ActivationResult::Succeeded { panel_key_id, access_uri } => {
                // Only a pending subscription is activated, and its key is written in the same
                // statement; a second worker finds it active and gets NotPending.
                let sql = "WITH activated AS (
                        UPDATE subscriptions SET activation_status = 'active', activation_error = NULL, updated_at = $4
                        WHERE id = $1 AND activation_status = 'pending' RETURNING id, key_fence)
                    INSERT INTO vpn_keys (subscription_id, panel_key_id, access_uri, fencing_token, status, created_at)
                    SELECT id, $2, $3, key_fence, 'active', $4 FROM activated RETURNING id";
                let key: Option<i64> = timed(
                    sqlx::query_scalar(sql)
                        .bind(subscription_id)
                        .bind(panel_key_id)
                        .bind(access_uri)
                        .bind(now)
                        .fetch_optional(&self.pool),
                )
                .await?;
                Ok(if key.is_some() { ActivationOutcome::Activated } else { ActivationOutcome::NotPending })
            }
            ActivationResult::Failed { error } => {
                let sql = "UPDATE subscriptions
                    SET activation_attempts = activation_attempts + 1,
                        activation_status = CASE WHEN activation_attempts + 1 >= $3 THEN 'failed' ELSE 'pending' END,
                        activation_error = left($2, 500), updated_at = $4
                    WHERE id = $1 AND activation_status = 'pending'
                    RETURNING activation_status, activation_attempts";
                let row: Option<(String, i32)> = timed(
                    sqlx::query_as(sql)
                        .bind(subscription_id)
                        .bind(error)
                        .bind(ACTIVATION_ATTEMPTS_MAX)
                        .bind(now)
                        .fetch_optional(&self.pool),
                )
                .await?;
                Ok(match row {
                    None => ActivationOutcome::NotPending,
                    Some((status, _)) if status == "failed" => ActivationOutcome::GaveUp,
                    Some((_, attempts)) => ActivationOutcome::WillRetry { attempts },
                })
            }
        }
    }

    async fn claim_key_fence(
        &self,
        subscription_id: i64,
        fencing_token: u64,
        now: DateTime<Utc>,
    ) -> Result<(), KeyError> {
        let token = i64::try_from(fencing_token)
            .map_err(|_| KeyError::Unexpected(anyhow::anyhow!("fencing token out of range")))?;
        timed(
            sqlx::query("SELECT atlas_claim_key_fence($1, $2, $3)")
                .bind(subscription_id)
                .bind(token)
                .bind(now)
                .execute(&self.pool),
        )
        .await
        .map_err(|e| map_err(e, key_error))?;
        Ok(())
    }

    #[tracing::instrument(skip(self, key))]
    async fn install_reissued_key(
        &self,
        subscription_id: i64,
        fencing_token: u64,
        key: PanelKey,
        now: DateTime<Utc>,
    ) -> Result<KeyInstalled, KeyError> {
        let token = i64::try_from(fencing_token)
            .map_err(|_| KeyError::Unexpected(anyhow::anyhow!("fencing token out of range")))?;
        let row: (i64, Option<String>) = timed(
            sqlx::query_as("SELECT * FROM atlas_install_reissued_key($1, $2, $3, $4, $5)")
                .bind(subscription_id)
                .bind(token)
                .bind(&key.panel_key_id)
                .bind(&key.access_uri)
                .bind(now)
                .fetch_one(&self.pool),
        )
        .await
        .map_err(|e| map_err(e, key_error))?;
        Ok(KeyInstalled { key_id: row.0, replaced_panel_key_id: row.1 })
    }

    async fn claim_notice(
        &self,
        subscription_id: i64,
        kind: NoticeKind,
        threshold: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql = "INSERT INTO notice_deliveries (subscription_id, kind, threshold, claimed_at)
            VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
        let done = timed(
            sqlx::query(sql).bind(subscription_id).bind(kind.code()).bind(threshold).bind(now).execute(&self.pool),
        )
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
