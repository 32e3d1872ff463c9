//! Promo codes as typed by users and admins: trimmed, upper-cased, 3 to 32 of `A-Z 0-9 _ -`.
//! The same rule is a CHECK in the schema, so nothing else can reach the table.

use std::fmt;

pub const PROMO_CODE_LEN_MIN: usize = 3;
pub const PROMO_CODE_LEN_MAX: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PromoCode(String);

impl TryFrom<String> for PromoCode {
    type Error = PromoCodeError;

    fn try_from(code: String) -> Result<PromoCode, PromoCodeError> {
        PromoCode::parse(&code)
    }
}

impl From<PromoCode> for String {
    fn from(code: PromoCode) -> String {
        code.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PromoCodeError {
    #[error("a promo code has {PROMO_CODE_LEN_MIN} to {PROMO_CODE_LEN_MAX} characters")]
    Length,
    #[error("a promo code has only latin letters, digits, '_' and '-'")]
    Characters,
}

impl PromoCode {
    pub fn parse(input: &str) -> Result<PromoCode, PromoCodeError> {
        let code = input.trim().to_ascii_uppercase();
        if !code.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '-') {
            return Err(PromoCodeError::Characters);
        }
        if !(PROMO_CODE_LEN_MIN..=PROMO_CODE_LEN_MAX).contains(&code.len()) {
            return Err(PromoCodeError::Length);
        }
        Ok(PromoCode(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PromoCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_validates() {
        assert_eq!(PromoCode::parse("  sale-10 ").unwrap().as_str(), "SALE-10");
        assert_eq!(PromoCode::parse("ab"), Err(PromoCodeError::Length));
        assert_eq!(PromoCode::parse(&"A".repeat(33)), Err(PromoCodeError::Length));
        assert_eq!(PromoCode::parse("скидка"), Err(PromoCodeError::Characters));
        assert_eq!(PromoCode::parse("a b c"), Err(PromoCodeError::Characters));
        assert_eq!(PromoCode::parse("x'; drop"), Err(PromoCodeError::Characters));
    }
}
