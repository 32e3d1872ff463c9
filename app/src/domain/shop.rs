//! The shop's rules that an operator sets (trial length, smallest withdrawal, referral share,
//! how long a provider purchase waits for its money). Read once from the settings; the
//! conversations and the store take them from here, never from the settings.

use std::time::Duration;

use crate::domain::{Money, Percent};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShopPolicy {
    /// Length of the one free trial, in days (1 to 30).
    pub trial_days: u16,
    /// The smallest amount a user may withdraw.
    pub withdrawal_min: Money,
    /// The share of a referred user's purchase credited to the referrer.
    pub referral_percent: Percent,
    /// How long a crypto or Stars purchase waits for its payment before it expires (and gives
    /// back its promo use).
    pub purchase_ttl: Duration,
}

impl ShopPolicy {
    pub const TRIAL_DAYS_MAX: u16 = 30;
    /// Telegram keeps an unanswered invoice for a day at most; a purchase waits no longer.
    pub const PURCHASE_TTL_MAX: Duration = Duration::from_secs(24 * 3600);
    pub const PURCHASE_TTL_MIN: Duration = Duration::from_secs(5 * 60);
}
