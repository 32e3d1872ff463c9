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
    /// What one Telegram Star costs the buyer: a price in Stars is the price in money divided by
    /// this, rounded up.
    pub star_price: Money,
}

impl ShopPolicy {
    /// The smallest top-up of the balance: below it a provider's fee eats the payment.
    pub const TOPUP_MIN: Money = Money::from_minor_const(10_00);
    pub const TRIAL_DAYS_MAX: u16 = 30;
    /// Telegram keeps an unanswered invoice for a day at most; a purchase waits no longer.
    pub const PURCHASE_TTL_MAX: Duration = Duration::from_secs(24 * 3600);
    pub const PURCHASE_TTL_MIN: Duration = Duration::from_secs(5 * 60);
}

impl ShopPolicy {
    /// `amount` in Telegram Stars: rounded up, so the shop never sells below its price.
    pub fn stars(&self, amount: Money) -> u32 {
        let per_star = self.star_price.minor();
        assert!(per_star > 0, "a Star has a positive price");
        u32::try_from((amount.minor() + per_star - 1) / per_star).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_round_up() {
        let policy = ShopPolicy {
            trial_days: 3,
            withdrawal_min: Money::positive(10_000).unwrap(),
            referral_percent: Percent::new(10).unwrap(),
            purchase_ttl: Duration::from_secs(3600),
            star_price: Money::positive(150).unwrap(),
        };
        assert_eq!(policy.stars(Money::positive(19_900).unwrap()), 133);
        assert_eq!(policy.stars(Money::positive(150).unwrap()), 1);
        assert_eq!(policy.stars(Money::positive(151).unwrap()), 2);
    }
}
