//! Money in minor units (kopecks). Every amount a user or admin types goes through
//! [`Money::parse`], which refuses zero, negative, non-numeric, too large and too precise input.

use std::fmt;

/// Minor units per major unit (kopecks per rouble).
pub const MINOR_PER_MAJOR: i64 = 100;

/// The largest single amount anyone may enter: 1,000,000.00. Far above any tariff, top-up or
/// withdrawal a VPN shop sees, far below where i64 sums could overflow.
pub const AMOUNT_MAX_MINOR: i64 = 1_000_000 * MINOR_PER_MAJOR;

/// A positive amount of money in minor units, at most [`AMOUNT_MAX_MINOR`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    /// An amount in minor units; refuses zero, negative and too large values.
    pub fn from_minor(minor: i64) -> Result<Money, AmountError> {
        match minor {
            m if m < 0 => Err(AmountError::Negative),
            0 => Err(AmountError::Zero),
            m if m > AMOUNT_MAX_MINOR => Err(AmountError::TooLarge),
            m => Ok(Money(m)),
        }
    }

    /// Parses what a person types: `150`, `150.5`, `150,50`, ` 1 000 ` (spaces ignored).
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
        Money::from_minor(minor)
    }

    pub fn minor(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / MINOR_PER_MAJOR, self.0 % MINOR_PER_MAJOR)
    }
}

/// Formats a balance (which may be zero) the way [`Money`] displays.
pub fn format_minor(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / MINOR_PER_MAJOR as u64, abs % MINOR_PER_MAJOR as u64)
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

    #[test]
    fn refuses_bad_amounts() {
        assert_eq!(Money::parse(""), Err(AmountError::Empty));
        assert_eq!(Money::parse("0"), Err(AmountError::Zero));
        assert_eq!(Money::parse("0.00"), Err(AmountError::Zero));
        assert_eq!(Money::parse("-5"), Err(AmountError::Negative));
        assert_eq!(Money::parse("abc"), Err(AmountError::NotANumber));
        assert_eq!(Money::parse("1e5"), Err(AmountError::NotANumber));
        assert_eq!(Money::parse("."), Err(AmountError::NotANumber));
        assert_eq!(Money::parse("1.2.3"), Err(AmountError::NotANumber));
        assert_eq!(Money::parse("1.001"), Err(AmountError::TooManyDecimals));
        assert_eq!(Money::parse("1000000.01"), Err(AmountError::TooLarge));
        assert_eq!(Money::parse("99999999999999999999999"), Err(AmountError::TooLarge));
        assert_eq!(Money::from_minor(0), Err(AmountError::Zero));
    }

    #[test]
    fn displays_with_two_decimals() {
        assert_eq!(Money::parse("7.5").unwrap().to_string(), "7.50");
        assert_eq!(format_minor(0), "0.00");
        assert_eq!(format_minor(-105), "-1.05");
    }
}
