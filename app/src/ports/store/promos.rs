//! Promo codes: an admin creates them, a user checks one before paying. Consumption happens
//! inside a purchase (see `Purchases`), under the per-code lock.

use std::future::Future;
use std::num::NonZeroU32;

use chrono::{DateTime, Utc};

use crate::domain::{Percent, PromoCode, UserId};

/// Why a promo code cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PromoRefusal {
    #[error("no such promo code")]
    NotFound,
    #[error("the promo code is disabled")]
    Disabled,
    #[error("the promo code has expired")]
    Expired,
    /// The audit's `PROMOCODE_ALREADY_USED_OR_EXPIRED`: every use is taken.
    #[error("PROMOCODE_ALREADY_USED_OR_EXPIRED")]
    Exhausted,
    #[error("you have already used this promo code")]
    AlreadyUsedByUser,
}

#[derive(Debug, thiserror::Error)]
pub enum PromoError {
    #[error(transparent)]
    Refused(#[from] PromoRefusal),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromoQuote {
    pub code: PromoCode,
    pub discount: Percent,
}

/// The most uses a code may be given (the column is a 32-bit integer).
pub const PROMO_USES_MAX: u32 = i32::MAX as u32;

/// A promo code as an admin creates it.
#[derive(Clone, Debug)]
pub struct NewPromo {
    pub code: PromoCode,
    /// 1 to 100 percent.
    pub discount: Percent,
    /// `None`: unlimited.
    pub max_uses: Option<NonZeroU32>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by: UserId,
    /// Written to the admin audit log with the creation.
    pub correlation_id: Option<String>,
}

impl NewPromo {
    /// The limits every store enforces before it writes (and the schema's CHECKs again).
    pub fn check(&self) -> Result<(), PromoCreateError> {
        if self.discount == Percent::ZERO {
            return Err(PromoCreateError::InvalidDiscount);
        }
        if self.max_uses.is_some_and(|m| m.get() > PROMO_USES_MAX) {
            return Err(PromoCreateError::InvalidMaxUses);
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PromoCreateError {
    #[error("a promo code with this name exists")]
    AlreadyExists,
    #[error("the discount must be 1 to 100 percent")]
    InvalidDiscount,
    #[error("the number of uses must be 1 to {PROMO_USES_MAX}")]
    InvalidMaxUses,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum PromoDisableError {
    #[error("no such promo code")]
    NotFound,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

pub trait Promos: Send + Sync + 'static {
    /// Creates a promo code (admin), with its audit log entry; refuses a code that exists, in
    /// any state.
    fn create_promo(
        &self,
        promo: NewPromo,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), PromoCreateError>> + Send;

    /// Switches a code off for good (an admin), with its audit log entry; `Duplicate` when it was
    /// off already.
    fn disable_promo(
        &self,
        code: &PromoCode,
        admin: UserId,
        correlation_id: Option<String>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<super::Applied, PromoDisableError>> + Send;

    /// Read-only check that `user` could use `code` now (what the user sees before paying).
    fn validate_promo(
        &self,
        user: UserId,
        code: &PromoCode,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<PromoQuote, PromoError>> + Send;
}
