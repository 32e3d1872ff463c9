//! The Bot API, called over the project's HTTP client: a request is one of teloxide-core's
//! payload types (which carry the method's name and its result type), sent as JSON to
//! `<base>/bot<token>/<method>`; the answer is Telegram's `{ok, result}` envelope, or an error
//! with its code, description and parameters (`retry_after`). The token appears in the request
//! path only: no log line and no error here ever carries the URL.

use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use teloxide_core::requests::Payload;
use url::Url;

use crate::net::Network;
use crate::net::client::{HttpClient, HttpError};

/// The official Bot API server.
pub const OFFICIAL_API: &str = "https://api.telegram.org";

/// Longest an ordinary call may take, connection included; a long poll adds its own timeout.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    /// Flood control (HTTP 429): repeat after this long.
    #[error("rate limited by Telegram for {0:?}")]
    RetryAfter(Duration),
    /// The user blocked the bot, deleted their account, or the chat does not exist (HTTP 403,
    /// or 400 "chat not found").
    #[error("the chat is unreachable: {0}")]
    Unreachable(String),
    /// HTTP 409: another getUpdates is running, or a webhook is set.
    #[error("conflict: {0}")]
    Conflict(String),
    /// HTTP 401/404: the token is wrong (or revoked).
    #[error("the bot token was refused")]
    Unauthorized,
    /// Any other refusal (400): the request itself is wrong.
    #[error("refused ({code}): {description}")]
    Refused { code: u16, description: String },
    /// A 5xx, or an answer that is not the Bot API's envelope.
    #[error("Telegram failed ({0})")]
    Server(String),
    #[error(transparent)]
    Http(#[from] HttpError),
}

impl TelegramError {
    /// Whether the call may simply be repeated later (nothing about the request is wrong).
    pub fn is_transient(&self) -> bool {
        matches!(self, TelegramError::RetryAfter(_) | TelegramError::Server(_) | TelegramError::Http(_))
    }
}

/// The Bot API's answer envelope.
#[derive(serde::Deserialize)]
struct Envelope<T> {
    ok: bool,
    result: Option<T>,
    error_code: Option<u16>,
    description: Option<String>,
    parameters: Option<Parameters>,
}

#[derive(serde::Deserialize)]
struct Parameters {
    retry_after: Option<u64>,
}

/// A client of one bot's Bot API.
pub struct BotApi<N: Network> {
    http: HttpClient<N>,
    base: Url,
    token: SecretString,
}

impl<N: Network> BotApi<N> {
    /// A client of the bot with `token` at `base` (the official server, or a test's fake).
    pub fn new(http: HttpClient<N>, base: Url, token: SecretString) -> BotApi<N> {
        BotApi { http, base, token }
    }

    /// Calls `payload`'s method and reads its result; the whole call within `timeout`.
    pub async fn call_within<P>(&self, payload: &P, timeout: Duration) -> Result<P::Output, TelegramError>
    where
        P: Payload + Serialize,
        P::Output: DeserializeOwned,
    {
        let url = self.method_url(P::NAME)?;
        let body = serde_json::to_vec(payload).map_err(|e| TelegramError::Server(format!("request encoding: {e}")))?;
        let headers = [("content-type", "application/json".to_owned())];
        let response = self.http.request(Method::POST, &url, &headers, Bytes::from(body), timeout).await?;
        let envelope: Envelope<P::Output> = serde_json::from_slice(&response.body).map_err(|e| {
            TelegramError::Server(format!("{} {}: not a Bot API answer ({e})", P::NAME, response.status))
        })?;
        if envelope.ok {
            return envelope.result.ok_or_else(|| TelegramError::Server(format!("{}: ok without a result", P::NAME)));
        }
        Err(refusal(envelope.error_code.unwrap_or(response.status.as_u16()), envelope.description, envelope.parameters))
    }

    /// [`BotApi::call_within`] with the ordinary timeout.
    pub async fn call<P>(&self, payload: &P) -> Result<P::Output, TelegramError>
    where
        P: Payload + Serialize,
        P::Output: DeserializeOwned,
    {
        self.call_within(payload, CALL_TIMEOUT).await
    }

    fn method_url(&self, method: &str) -> Result<Url, TelegramError> {
        let path = format!("{}/bot{}/{method}", self.base.path().trim_end_matches('/'), self.token.expose_secret());
        let mut url = self.base.clone();
        url.set_path(&path);
        Ok(url)
    }
}

fn refusal(code: u16, description: Option<String>, parameters: Option<Parameters>) -> TelegramError {
    let description = description.unwrap_or_default();
    if let Some(seconds) = parameters.and_then(|p| p.retry_after) {
        return TelegramError::RetryAfter(Duration::from_secs(seconds));
    }
    match code {
        429 => TelegramError::RetryAfter(Duration::from_secs(1)),
        401 | 404 => TelegramError::Unauthorized,
        403 => TelegramError::Unreachable(description),
        400 if description.contains("chat not found") || description.contains("user is deactivated") => {
            TelegramError::Unreachable(description)
        }
        409 => TelegramError::Conflict(description),
        code if code >= 500 => TelegramError::Server(format!("{code}: {description}")),
        code => TelegramError::Refused { code, description },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(json: &str) -> TelegramError {
        let envelope: Envelope<bool> = serde_json::from_str(json).unwrap();
        assert!(!envelope.ok);
        refusal(envelope.error_code.unwrap(), envelope.description, envelope.parameters)
    }

    #[test]
    fn bot_api_errors_become_ours() {
        let flood = refused(
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#,
        );
        assert!(matches!(flood, TelegramError::RetryAfter(d) if d == Duration::from_secs(7)));
        let blocked =
            refused(r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#);
        assert!(matches!(blocked, TelegramError::Unreachable(_)));
        let gone = refused(r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#);
        assert!(matches!(gone, TelegramError::Unreachable(_)));
        let conflict = refused(
            r#"{"ok":false,"error_code":409,"description":"Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"}"#,
        );
        assert!(matches!(conflict, TelegramError::Conflict(_)));
        assert!(matches!(
            refused(r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#),
            TelegramError::Unauthorized
        ));
        let bad = refused(r#"{"ok":false,"error_code":400,"description":"Bad Request: can't parse entities"}"#);
        assert!(matches!(bad, TelegramError::Refused { code: 400, .. }));
        assert!(!bad.is_transient());
        assert!(refused(r#"{"ok":false,"error_code":502,"description":"Bad Gateway"}"#).is_transient());
    }
}
