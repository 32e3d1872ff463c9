//! Withdrawal requisites (where the money goes: a card or wallet), as typed by the user.

use std::fmt;

pub const REQUISITES_LEN_MIN: usize = 5;
pub const REQUISITES_LEN_MAX: usize = 256;

/// Free text, trimmed, 5 to 256 characters, no control characters.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Requisites(String);

impl TryFrom<String> for Requisites {
    type Error = RequisitesError;

    fn try_from(text: String) -> Result<Requisites, RequisitesError> {
        Requisites::parse(&text)
    }
}

impl From<Requisites> for String {
    fn from(requisites: Requisites) -> String {
        requisites.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequisitesError {
    #[error("requisites have {REQUISITES_LEN_MIN} to {REQUISITES_LEN_MAX} characters")]
    Length,
    #[error("requisites may not contain control characters")]
    ControlCharacters,
}

/// Bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069): they
/// reorder how the rest is displayed, so an admin could read a card number other than the one
/// stored. Plain direction marks (U+200E, U+200F, U+061C) only place neutral characters and stay
/// allowed for right-to-left scripts.
fn reorders_display(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

impl Requisites {
    pub fn parse(input: &str) -> Result<Requisites, RequisitesError> {
        let text = input.trim();
        if text.chars().any(|c| c.is_control() || reorders_display(c)) {
            return Err(RequisitesError::ControlCharacters);
        }
        if !(REQUISITES_LEN_MIN..=REQUISITES_LEN_MAX).contains(&text.chars().count()) {
            return Err(RequisitesError::Length);
        }
        Ok(Requisites(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Requisites are personal data: logs see only their length.
impl fmt::Debug for Requisites {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Requisites(<{} chars>)", self.0.chars().count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_and_hides() {
        let r = Requisites::parse(" 4276 1234 5678 9012 ").unwrap();
        assert_eq!(r.as_str(), "4276 1234 5678 9012");
        assert!(!format!("{r:?}").contains("4276"));
        assert_eq!(Requisites::parse("abc"), Err(RequisitesError::Length));
        assert_eq!(Requisites::parse("card\n1234"), Err(RequisitesError::ControlCharacters));
        assert_eq!(Requisites::parse(&"x".repeat(257)), Err(RequisitesError::Length));
    }
}
