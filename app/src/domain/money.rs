//! Money in minor units (kopecks), never negative, and percentages of it. Every amount a user or
//! admin types goes through [`Money::parse`], which refuses zero, negative, non-numeric, too large
//! and too precise input; amounts the store hands back (balances, charges) come through
//! [`Money::from_minor`], which refuses only a negative value.

use std::fmt;

/// Minor units per major unit (kopecks per rouble).
pub const MINOR_PER_MAJOR: i64 = 100;

/// The largest single amount anyone may enter: 1,000,000.00. Far above any tariff, top-up or
/// withdrawal a VPN shop sees, far below where i64 sums could overflow.
pub const AMOUNT_MAX_MINOR: i64 = 1_000_000 * MINOR_PER_MAJOR;

/// The largest single amount anyone may enter, as money.
pub const AMOUNT_MAX: Money = Money(AMOUNT_MAX_MINOR);

/// A non-negative amount of money in minor units: a price, a charge (0 with a 100% promo code),
/// a balance. What a person enters is also positive and at most [`AMOUNT_MAX_MINOR`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Money(i64);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("the amount is empty")]
    Empty,
    #[error("the amount is not a number")]
    NotANumber,
    #[error("the amount must be greater than zero")]
    Zero,
    #[error("the amount must not be negative")]
    Negative,
    #[error("the amount is above the maximum of {}", Money(AMOUNT_MAX_MINOR))]
    TooLarge,
    #[error("the amount has more than two decimal places")]
    TooManyDecimals,
}

impl Money {
    pub const ZERO: Money = Money(0);

    /// A stored amount in minor units (a balance, a charge): refuses only a negative value.
    pub fn from_minor(minor: i64) -> Result<Money, AmountError> {
        if minor < 0 {
            return Err(AmountError::Negative);
        }
        Ok(Money(minor))
    }

    /// An amount someone asks to move (an entry, a provider's payment): positive and at most
    /// [`AMOUNT_MAX_MINOR`].
    pub fn positive(minor: i64) -> Result<Money, AmountError> {
        match minor {
            m if m < 0 => Err(AmountError::Negative),
            0 => Err(AmountError::Zero),
            m if m > AMOUNT_MAX_MINOR => Err(AmountError::TooLarge),
            m => Ok(Money(m)),
        }
    }

    /// Parses what a person types: `150`, `150.5`, `150,50`, ` 1 000 ` (spaces ignored). Only
    /// ASCII digits count: `١٢٣`, `1e3` and the like are not numbers here.
    pub fn parse(input: &str) -> Result<Money, AmountError> {
        let text: String = input.chars().filter(|c| !c.is_whitespace()).collect();
        if text.is_empty() {
            return Err(AmountError::Empty);
        }
        let (negative, text) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(&text)),
        };
        let (whole, fraction) = match text.split_once(['.', ',']) {
            Some((whole, fraction)) => (whole, fraction),
            None => (text, ""),
        };
        let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
            return Err(AmountError::NotANumber);
        }
        if fraction.len() > 2 {
            return Err(AmountError::TooManyDecimals);
        }
        // More digits than the maximum has is too large, whatever they are (and cannot overflow).
        let whole = whole.trim_start_matches('0');
        if whole.len() > 7 {
            return Err(if negative { AmountError::Negative } else { AmountError::TooLarge });
        }
        let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| AmountError::NotANumber)? };
        let fraction: i64 = format!("{fraction:0<2}").parse().map_err(|_| AmountError::NotANumber)?;
        let minor = whole * MINOR_PER_MAJOR + fraction;
        if negative && minor != 0 {
            return Err(AmountError::Negative);
        }
        Money::positive(minor)
    }

    pub fn minor(self) -> i64 {
        self.0
    }

    /// A constant amount, checked when the program is compiled.
    pub const fn from_minor_const(minor: i64) -> Money {
        assert!(minor >= 0, "money is never negative");
        Money(minor)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self - other`, or `None` when that would be negative.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).filter(|m| *m >= 0).map(Money)
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }
}

impl TryFrom<i64> for Money {
    type Error = AmountError;

    fn try_from(minor: i64) -> Result<Money, AmountError> {
        Money::from_minor(minor)
    }
}

impl From<Money> for i64 {
    fn from(money: Money) -> i64 {
        money.0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / MINOR_PER_MAJOR, self.0 % MINOR_PER_MAJOR)
    }
}

/// A whole percentage, 0 to 100: a referral share, a promo discount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Percent(u8);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a percentage is a whole number from 0 to 100")]
pub struct PercentError;

impl Percent {
    pub const ZERO: Percent = Percent(0);
    pub const FULL: Percent = Percent(100);

    pub fn new(percent: u8) -> Result<Percent, PercentError> {
        if percent > 100 {
            return Err(PercentError);
        }
        Ok(Percent(percent))
    }

    /// Parses what a person types: `15`, ` 15 `, `15%`.
    pub fn parse(input: &str) -> Result<Percent, PercentError> {
        let text = input.trim();
        let text = text.strip_suffix('%').unwrap_or(text).trim();
        if text.is_empty() || text.len() > 3 || !text.chars().all(|c| c.is_ascii_digit()) {
            return Err(PercentError);
        }
        Percent::new(text.parse().map_err(|_| PercentError)?)
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// This share of `amount`, rounded down (a reward never exceeds its share).
    pub fn of(self, amount: Money) -> Money {
        Money(amount.0 * i64::from(self.0) / 100)
    }

    /// `price` less this discount; the rounding is in the buyer's favour only by what the share
    /// rounds down, as the SQL function `atlas_discounted` computes it.
    pub fn discount(self, price: Money) -> Money {
        Money(price.0 - self.of(price).0)
    }
}

impl TryFrom<u8> for Percent {
    type Error = PercentError;

    fn try_from(percent: u8) -> Result<Percent, PercentError> {
        Percent::new(percent)
    }
}

impl From<Percent> for u8 {
    fn from(percent: Percent) -> u8 {
        percent.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_people_type() {
        assert_eq!(Money::parse("150").unwrap().minor(), 15_000);
        assert_eq!(Money::parse("150.5").unwrap().minor(), 15_050);
        assert_eq!(Money::parse("150,05").unwrap().minor(), 15_005);
        assert_eq!(Money::parse(" 1 000 ").unwrap().minor(), 100_000);
        assert_eq!(Money::parse("0.01").unwrap().minor(), 1);
        assert_eq!(Money::parse(".5").unwrap().minor(), 50);
        assert_eq!(Money::parse("1000000").unwrap().minor(), AMOUNT_MAX_MINOR);
    }

    proptest::proptest! {
        /// A share as an admin types it: a whole number from 0 to 100, with an optional `%`.
        #[test]
        fn percents_read_as_written(text in "[ ]?[0-9]{0,4}[ ]?%?[ ]?") {
            let digits = text.trim().trim_end_matches('%').trim();
            let expected = if digits.is_empty() || digits.len() > 3 {
                None
            } else {
                digits.parse::<u16>().ok().filter(|n| *n <= 100)
            };
            proptest::prop_assert_eq!(Percent::parse(&text).ok().map(|p| u16::from(p.get())), expected, "{:?}", text);
        }
    }

    #[test]
    fn refuses_bad_amounts() {
        assert_eq!(Money::parse(""), Err(AmountError::Empty));
        assert_eq!(Money::parse("0"), Err(AmountError::Zero));
        assert_eq!(Money::parse("0.00"), Err(AmountError::Zero));
        assert_eq!(Money::parse("-5"), Err(AmountError::Negative));
        assert_eq!(Money::parse("abc"), Err(AmountError::NotANumber));
        assert_eq!(Money::parse("1e5"), Err(AmountError::NotANumber));
        assert_eq!(Money::parse("١٢٣"), Err(AmountError::NotANumber));
        assert_eq!(Money::parse("."), Err(AmountError::NotANumber));
        assert_eq!(Money::parse("1.2.3"), Err(AmountError::NotANumber));
        assert_eq!(Money::parse("1.001"), Err(AmountError::TooManyDecimals));
        assert_eq!(Money::parse("1000000.01"), Err(AmountError::TooLarge));
        assert_eq!(Money::parse("99999999999999999999999"), Err(AmountError::TooLarge));
        assert_eq!(Money::positive(0), Err(AmountError::Zero));
        assert_eq!(Money::from_minor(-1), Err(AmountError::Negative));
        assert_eq!(Money::from_minor(0), Ok(Money::ZERO));
    }

    #[test]
    fn displays_with_two_decimals() {
        assert_eq!(Money::parse("7.5").unwrap().to_string(), "7.50");
        assert_eq!(Money::ZERO.to_string(), "0.00");
    }

    #[test]
    fn arithmetic_never_goes_below_zero() {
        let (five, three) = (Money::positive(500).unwrap(), Money::positive(300).unwrap());
        assert_eq!(five.checked_sub(three), Money::from_minor(200).ok());
        assert_eq!(three.checked_sub(five), None);
    }

    #[test]
    fn percentages_round_down_like_the_store() {
        let p = Percent::parse("15%").unwrap();
        assert_eq!(p.of(Money::positive(19_900).unwrap()).minor(), 2_985);
        assert_eq!(p.discount(Money::positive(19_900).unwrap()).minor(), 16_915);
        assert_eq!(Percent::FULL.discount(Money::positive(19_900).unwrap()), Money::ZERO);
        assert_eq!(Percent::parse("101"), Err(PercentError));
        assert_eq!(Percent::parse("-1"), Err(PercentError));
        assert_eq!(Percent::parse("１０"), Err(PercentError));
        assert_eq!(Percent::parse(""), Err(PercentError));
    }
}
