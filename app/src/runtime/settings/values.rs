//! The values settings hold that need care: URLs that may carry a password and the bot token
//! (shown redacted, always), and the parsers that turn a variable's text into them.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::domain::UserId;

/// A URL that may carry a password. Display and Debug replace the password with `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(Url);

impl SecretUrl {
    /// The full URL, password included: only for handing to a driver.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &Url {
        &self.0
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        f.write_str(shown.as_str())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({self})")
    }
}

/// The Telegram bot token (`<bot id>:<secret>`). Only the bot id is ever shown.
#[derive(Clone)]
pub struct BotToken {
    bot_id: i64,
    token: SecretString,
}

impl BotToken {
    pub fn bot_id(&self) -> i64 {
        self.bot_id
    }

    pub fn expose(&self) -> &str {
        self.token.expose_secret()
    }
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BotToken({}:***)", self.bot_id)
    }
}

pub fn url_with_scheme(value: &str, schemes: &[&str]) -> Result<SecretUrl, String> {
    let url = Url::parse(value).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !schemes.contains(&url.scheme()) {
        return Err(format!(
            "must start with {}",
            schemes.iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(" or ")
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(SecretUrl(url))
}

/// A URL whose path is a credential (Outline's management API: `https://host:port/<secret>`):
/// shown as its origin only.
#[derive(Clone)]
pub struct PrivateUrl(Url);

impl PrivateUrl {
    /// The whole URL: only for the client that calls it.
    pub fn expose(&self) -> &Url {
        &self.0
    }
}

impl std::fmt::Debug for PrivateUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateUrl({}/<redacted>)", self.0.origin().ascii_serialization())
    }
}

pub fn private_url(value: &str) -> Result<PrivateUrl, String> {
    url_with_scheme(value, &["http", "https"]).map(|u| PrivateUrl(u.0))
}

pub fn bot_token(value: &str) -> Result<BotToken, String> {
    let shape = "must look like <bot id>:<secret> as given by @BotFather";
    let (id, secret) = value.split_once(':').ok_or(shape)?;
    let bot_id = id.parse::<i64>().ok().filter(|id| *id > 0).ok_or(shape)?;
    let ok = secret.len() >= 30 && secret.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        return Err(shape.into());
    }
    Ok(BotToken { bot_id, token: SecretString::from(value.to_owned()) })
}

pub fn admin_ids(value: &str) -> Result<Vec<UserId>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<i64>().ok().and_then(UserId::new).ok_or_else(|| format!("{s:?} is not a Telegram user id")))
        .collect()
}

pub fn redis_prefix(value: &str) -> Result<String, String> {
    let ok = (1..=32).contains(&value.len())
        && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok { Ok(value.to_owned()) } else { Err("must be 1 to 32 of a-z 0-9 _ -".into()) }
}

/// A whole number from `min` to `max`.
pub fn number<T: std::str::FromStr + PartialOrd + fmt::Display>(value: &str, min: T, max: T) -> Result<T, String> {
    match value.parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(format!("must be a whole number from {min} to {max}")),
    }
}
