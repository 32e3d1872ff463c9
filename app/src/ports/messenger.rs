//! Outgoing Telegram calls. teloxide's `Bot` cannot run over a custom connector, so the core
//! talks to Telegram only through this narrow port: the live adapter wraps teloxide, the
//! simulation answers from a fake Bot API host (with 429s and timeouts).

use std::future::Future;
use std::time::Duration;

use crate::domain::UserId;

/// An inline keyboard button: a label and the callback data it sends back (at most 64 bytes,
/// the Bot API's limit; never trusted when it comes back).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Button {
    pub label: String,
    pub callback_data: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub text: String,
    /// Rows of inline buttons.
    pub keyboard: Vec<Vec<Button>>,
}

#[derive(Debug, thiserror::Error)]
pub enum MessengerError {
    /// Telegram asked us to slow down (HTTP 429); retry after the given time.
    #[error("rate limited by Telegram, retry after {0:?}")]
    RetryAfter(Duration),
    /// The user blocked the bot or deleted the chat: stop sending to them.
    #[error("the chat is unreachable")]
    ChatUnreachable,
    /// The call did not complete in time; it may or may not have been delivered.
    #[error("the call timed out")]
    Timeout,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

pub trait Messenger: Send + Sync + 'static {
    /// Sends a message to a user's private chat and returns its message id. Every call MUST
    /// have a timeout and return [`MessengerError::Timeout`] when it passes.
    fn send(&self, to: UserId, message: OutgoingMessage) -> impl Future<Output = Result<i32, MessengerError>> + Send;

    /// Acknowledges a callback query (removes the button's spinner), optionally with a toast.
    fn answer_callback(
        &self,
        callback_id: &str,
        toast: Option<&str>,
    ) -> impl Future<Output = Result<(), MessengerError>> + Send;
}
