//! Outgoing Telegram calls. The core talks to Telegram only through this narrow port: the live
//! adapter speaks the Bot API over the project's own HTTP stack, the tests record what was sent,
//! the simulation answers from a fake Bot API host (with 429s and timeouts). Message texts are
//! Telegram HTML, already escaped by the message catalog.

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
    /// Telegram HTML.
    pub text: String,
    /// Rows of inline buttons.
    pub keyboard: Vec<Vec<Button>>,
}

/// An invoice in Telegram Stars (currency `XTR`, one price, no provider token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StarsInvoice {
    pub title: String,
    pub description: String,
    /// What it pays for (`Payable::payload`), 1 to 128 bytes; comes back with the payment.
    pub payload: String,
    pub stars: u32,
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

    /// Sends an invoice in Telegram Stars and returns its message id.
    fn send_invoice(
        &self,
        to: UserId,
        invoice: StarsInvoice,
    ) -> impl Future<Output = Result<i32, MessengerError>> + Send;

    /// Answers a pre-checkout query: `None` lets the payment go ahead, `Some(reason)` refuses it
    /// and shows the reason. MUST be answered within 10 seconds of the query.
    fn answer_pre_checkout(
        &self,
        query_id: &str,
        refusal: Option<&str>,
    ) -> impl Future<Output = Result<(), MessengerError>> + Send;

    /// Gives a Telegram Stars payment back to `user` (`refundStarPayment`). A payment refunded
    /// before counts as refunded.
    fn refund_stars(&self, user: UserId, charge_id: &str) -> impl Future<Output = Result<(), MessengerError>> + Send;
}
