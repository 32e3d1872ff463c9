//! The Store port on PostgreSQL (sqlx). Money operations are SQL functions (see
//! `migrations/0002_money_operations.sql`): one statement each, so each is atomic and costs one
//! round trip. One file per concern of the port binds their arguments, reads their rows into
//! `FromRow` structs and maps their refusals into the port's typed errors; this file holds what
//! they share: the pool, the timeouts, and the decoding of refusal and outcome codes.

mod accounts;
mod admin;
mod broadcasts;
pub mod notices;
mod promos;
mod purchases;
mod subscriptions;
mod withdrawals;

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgPoolOptions};

use crate::domain::{PurchaseStatus, WithdrawalStatus};
use crate::ports::store::{PromoRefusal, StoreError};

/// Longest the server may run one statement, lock waits included. It is the bound that decides:
/// the server cancels (and rolls back) a statement past it, before the client gives up, so a call
/// the client reports as failed has not committed later.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(8);

/// How long to wait for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a single store call may take, waiting for a pooled connection included: longer than
/// the acquire and statement bounds together, so it fires only when the server stopped
/// answering (then the outcome is unknown, as with any lost connection).
pub const STORE_CALL_TIMEOUT: Duration = Duration::from_secs(16);

const _: () = assert!(STORE_CALL_TIMEOUT.as_millis() > ACQUIRE_TIMEOUT.as_millis() + STATEMENT_TIMEOUT.as_millis());

/// The migrations, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects a pool of at most `max_connections` to `url` (a `postgres://` URL).
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgStore> {
        PgStore::connect_with(url, max_connections, STATEMENT_TIMEOUT).await
    }

    /// As [`PgStore::connect`], with a shorter statement timeout (tests of the timeout path).
    pub async fn connect_with(url: &str, max_connections: u32, statement_timeout: Duration) -> anyhow::Result<PgStore> {
        assert!(statement_timeout <= STATEMENT_TIMEOUT, "the call timeout must outlast the statement timeout");
        let options = PgStore::connect_options(url, statement_timeout)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .context("cannot connect to PostgreSQL")?;
        Ok(PgStore { pool })
    }

    /// How the store connects to `url`: named `atlas`, each statement bounded by
    /// `statement_timeout` (for pools built elsewhere, such as the tests' copies).
    pub fn connect_options(url: &str, statement_timeout: Duration) -> anyhow::Result<PgConnectOptions> {
        let options: PgConnectOptions = url.parse().context("invalid PostgreSQL URL")?;
        Ok(options
            .application_name("atlas")
            .options([("statement_timeout", statement_timeout.as_millis().to_string())]))
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

impl crate::ports::store::Health for PgStore {
    async fn ready(&self) -> Result<(), crate::ports::store::StoreError> {
        // sqlx records each applied migration's version; a database missing one of this build's
        // (or the table itself) is not ready.
        let applied: Vec<i64> = timed(
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
                .fetch_all(&self.pool),
        )
        .await?;
        let missing: Vec<i64> = MIGRATOR.iter().map(|m| m.version).filter(|v| !applied.contains(v)).collect();
        if !missing.is_empty() {
            return Err(anyhow::anyhow!("migrations not applied: {missing:?} (run `atlas-bot migrate`)").into());
        }
        Ok(())
    }
}

/// A refusal raised by a SQL function (`RAISE EXCEPTION 'CODE'`), or by a constraint that backs
/// one. Each operation maps the refusals it expects into its error; any other is a bug and
/// becomes `Unexpected`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Refusal {
    UnknownUser,
    UserBanned,
    UnknownTariff,
    InsufficientBalance,
    IdempotencyKeyReused,
    PaidAnotherWay,
    NothingToPay,
    Promo(PromoRefusal),
    UnknownPurchase,
    UnknownTopUp,
    PaymentIdReused,
    PaymentAmountMismatch,
    PaymentMethodMismatch,
    PurchaseNotPending(PurchaseStatus),
    PurchaseNotPaid,
    WithdrawalBelowMinimum,
    UnknownWithdrawal,
    WithdrawalNotPending(WithdrawalStatus),
    UnknownSubscription,
    StaleFencingToken { current: u64 },
    TrialAlreadyUsed,
    TrialNotForSubscribers,
}

/// Why a store call failed: a refusal the caller may expect, or anything else.
enum Failure {
    Refused(Refusal),
    Unexpected(anyhow::Error),
}

impl Failure {
    /// The catch-all arm of every operation's mapping: a refusal this operation never raises is
    /// a bug, reported as loudly as any other unexpected failure.
    fn unexpected<E: From<anyhow::Error>>(self, operation: &str) -> E {
        E::from(match self {
            Failure::Refused(refusal) => anyhow::anyhow!("{operation}: refusal it never raises: {refusal:?}"),
            Failure::Unexpected(e) => e.context(format!("{operation} failed")),
        })
    }
}

impl From<Failure> for StoreError {
    fn from(failure: Failure) -> StoreError {
        failure.unexpected("store call")
    }
}

/// The one decoding of a driver error: refusal codes (and the constraints behind them) by name,
/// timeouts as timeouts, everything else unexpected with its cause.
fn classify(err: sqlx::Error) -> Failure {
    let Some(db) = err.as_database_error() else {
        return Failure::Unexpected(anyhow::Error::new(err));
    };
    let detail = db.try_downcast_ref::<PgDatabaseError>().and_then(|e| e.detail()).map(str::to_owned);
    let refusal = match (db.code().as_deref(), db.constraint()) {
        (Some("P0001"), _) => decode_raised(db.message(), detail.as_deref()),
        // The server cancelled the statement (at its statement timeout, or on request): rolled
        // back, nothing written.
        (Some("57014"), _) => {
            let why = if db.message().contains("statement timeout") {
                "statement timeout: the server cancelled the statement (nothing was written)"
            } else {
                "the server cancelled the statement (nothing was written)"
            };
            return Failure::Unexpected(anyhow::Error::new(err).context(why));
        }
        // The constraints behind the functions' own checks: reached only if a check were missed.
        (Some("23514"), Some("users_balance_non_negative")) => Some(Refusal::InsufficientBalance),
        (Some("23514"), Some("promo_used_within_max")) => Some(Refusal::Promo(PromoRefusal::Exhausted)),
        (Some("23505"), Some("promo_redemptions_pkey")) => Some(Refusal::Promo(PromoRefusal::AlreadyUsedByUser)),
        // Keys unique across users, checked under one user's lock: two users racing for the same
        // key or payment id meet here.
        (
            Some("23505"),
            Some(
                "payment_idempotency_keys_pkey"
                | "withdrawal_requests_idempotency_key_key"
                | "withdrawal_requests_decision_key_key"
                | "admin_audit_log_idempotency_key_key"
                | "topups_idempotency_key_key"
                | "broadcasts_idempotency_key_key",
            ),
        ) => Some(Refusal::IdempotencyKeyReused),
        (Some("23505"), Some("payments_provider_provider_payment_id_key")) => Some(Refusal::PaymentIdReused),
        _ => None,
    };
    match refusal {
        Some(refusal) => Failure::Refused(refusal),
        None => Failure::Unexpected(anyhow::Error::new(err)),
    }
}

/// The codes `RAISE EXCEPTION` uses in the migrations. An unknown code (or a detail that does
/// not parse) is `None`: the caller reports the whole error as unexpected.
fn decode_raised(code: &str, detail: Option<&str>) -> Option<Refusal> {
    Some(match code {
        "UNKNOWN_USER" => Refusal::UnknownUser,
        "USER_BANNED" => Refusal::UserBanned,
        "UNKNOWN_TARIFF" => Refusal::UnknownTariff,
        "INSUFFICIENT_BALANCE" => Refusal::InsufficientBalance,
        "IDEMPOTENCY_KEY_REUSED" => Refusal::IdempotencyKeyReused,
        "PAID_ANOTHER_WAY" => Refusal::PaidAnotherWay,
        "NOTHING_TO_PAY" => Refusal::NothingToPay,
        "PROMO_NOT_FOUND" => Refusal::Promo(PromoRefusal::NotFound),
        "PROMO_DISABLED" => Refusal::Promo(PromoRefusal::Disabled),
        "PROMO_EXPIRED" => Refusal::Promo(PromoRefusal::Expired),
        "PROMOCODE_ALREADY_USED_OR_EXPIRED" => Refusal::Promo(PromoRefusal::Exhausted),
        "PROMO_ALREADY_USED_BY_USER" => Refusal::Promo(PromoRefusal::AlreadyUsedByUser),
        "UNKNOWN_PURCHASE" => Refusal::UnknownPurchase,
        "UNKNOWN_TOPUP" => Refusal::UnknownTopUp,
        "PAYMENT_ID_REUSED" => Refusal::PaymentIdReused,
        "PAYMENT_AMOUNT_MISMATCH" => Refusal::PaymentAmountMismatch,
        "PAYMENT_METHOD_MISMATCH" => Refusal::PaymentMethodMismatch,
        "PURCHASE_NOT_PENDING" => Refusal::PurchaseNotPending(PurchaseStatus::from_code(detail?)?),
        "PURCHASE_NOT_PAID" => Refusal::PurchaseNotPaid,
        "WITHDRAWAL_BELOW_MINIMUM" => Refusal::WithdrawalBelowMinimum,
        "UNKNOWN_WITHDRAWAL" => Refusal::UnknownWithdrawal,
        "WITHDRAWAL_NOT_PENDING" => Refusal::WithdrawalNotPending(WithdrawalStatus::from_code(detail?)?),
        "UNKNOWN_SUBSCRIPTION" => Refusal::UnknownSubscription,
        "STALE_FENCING_TOKEN" => Refusal::StaleFencingToken { current: detail?.parse().ok()? },
        "TRIAL_ALREADY_USED" => Refusal::TrialAlreadyUsed,
        "TRIAL_NOT_FOR_SUBSCRIBERS" => Refusal::TrialNotForSubscribers,
        _ => return None,
    })
}

/// Runs a query with the call timeout. A call that outlives it has an unknown outcome (the
/// server stopped answering); the server's own statement timeout fires first otherwise.
async fn timed<T>(query: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, Failure> {
    // The live store only (the simulation's store is a model): the OS clock is fine here.
    let started = std::time::Instant::now();
    let answered = tokio::time::timeout(STORE_CALL_TIMEOUT, query).await;
    metrics::histogram!("atlas_postgres_call_seconds").record(started.elapsed().as_secs_f64());
    match answered {
        Ok(result) => result.map_err(classify),
        Err(_) => Err(Failure::Unexpected(anyhow::anyhow!(
            "no answer from PostgreSQL within {} s (the outcome is unknown)",
            STORE_CALL_TIMEOUT.as_secs()
        ))),
    }
}

/// A text column holding one of a fixed set of codes, decoded once into an enum; an unknown code
/// fails the row's decoding (and so the call) loudly, naming the code.
macro_rules! text_code {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum $name {
            $($variant),+
        }

        impl $name {
            fn decode_text(code: &str) -> Result<$name, String> {
                match code {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("unknown {} code {other:?}", stringify!($name))),
                }
            }
        }

        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <String as sqlx::Type<sqlx::Postgres>>::type_info()
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<$name, sqlx::error::BoxDynError> {
                let code = <&str as sqlx::Decode<'r, sqlx::Postgres>>::decode(value)?;
                Ok($name::decode_text(code)?)
            }
        }
    };
}
use text_code;

/// Domain values stored as BIGINT (ids, amounts) decode through their own constructor, so a row
/// holding an impossible value (a negative balance, a zero id) fails loudly, naming it.
macro_rules! decode_bigint {
    ($($ty:ty),+) => {$(
        impl sqlx::Type<sqlx::Postgres> for $ty {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <i64 as sqlx::Type<sqlx::Postgres>>::type_info()
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $ty {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<$ty, sqlx::error::BoxDynError> {
                let raw = <i64 as sqlx::Decode<'r, sqlx::Postgres>>::decode(value)?;
                <$ty>::try_from(raw).map_err(|e| format!("{} {raw}: {e}", stringify!($ty)).into())
            }
        }
    )+};
}

decode_bigint!(crate::domain::Money, crate::domain::UserId, crate::domain::PurchaseId);
decode_bigint!(crate::domain::SubscriptionId, crate::domain::WithdrawalId, crate::domain::PromoId);
decode_bigint!(crate::domain::TopUpId, crate::domain::BroadcastId);

/// Domain values stored as TEXT decode through their own parser; a stored value that does not
/// parse fails loudly, naming it.
macro_rules! decode_text {
    ($($ty:ty => $parse:expr),+ $(,)?) => {$(
        impl sqlx::Type<sqlx::Postgres> for $ty {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <String as sqlx::Type<sqlx::Postgres>>::type_info()
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $ty {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<$ty, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<'r, sqlx::Postgres>>::decode(value)?;
                let parse: fn(&str) -> Option<$ty> = $parse;
                parse(text).ok_or_else(|| format!("stored {} {text:?} does not parse", stringify!($ty)).into())
            }
        }
    )+};
}

decode_text! {
    crate::domain::Language => |s| Some(crate::domain::Language::from_code(s)),
    crate::domain::Username => crate::domain::Username::parse,
    crate::domain::TariffCode => crate::domain::TariffCode::parse,
    crate::domain::Requisites => |s| crate::domain::Requisites::parse(s).ok(),
    crate::domain::PaymentProviderKind => crate::domain::PaymentProviderKind::from_code,
    crate::domain::PurchaseStatus => crate::domain::PurchaseStatus::from_code,
    crate::domain::WithdrawalStatus => crate::domain::WithdrawalStatus::from_code,
}

/// What an idempotent operation's row says: it took effect now (under the function's own word
/// for it) or had before.
macro_rules! applied_code {
    ($name:ident, $done:literal) => {
        text_code!($name { Done = $done, Duplicate = "duplicate" });

        impl From<$name> for crate::ports::store::Applied {
            fn from(code: $name) -> Self {
                match code {
                    $name::Done => crate::ports::store::Applied::Done,
                    $name::Duplicate => crate::ports::store::Applied::Duplicate,
                }
            }
        }
    };
}
use applied_code;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_codes_decode_and_unknown_ones_do_not() {
        assert_eq!(decode_raised("USER_BANNED", None), Some(Refusal::UserBanned));
        assert_eq!(decode_raised("STALE_FENCING_TOKEN", Some("17")), Some(Refusal::StaleFencingToken { current: 17 }));
        assert_eq!(
            decode_raised("PURCHASE_NOT_PENDING", Some("expired")),
            Some(Refusal::PurchaseNotPending(PurchaseStatus::Expired))
        );
        assert_eq!(decode_raised("PURCHASE_NOT_PENDING", Some("bogus")), None);
        assert_eq!(decode_raised("STALE_FENCING_TOKEN", None), None);
        assert_eq!(decode_raised("SOMETHING_NEW", None), None);
        applied_code!(TestCode, "done");
        assert_eq!(TestCode::decode_text("done"), Ok(TestCode::Done));
        assert_eq!(TestCode::decode_text("duplicate"), Ok(TestCode::Duplicate));
        assert!(TestCode::decode_text("Done").unwrap_err().contains("\"Done\""));
    }
}
