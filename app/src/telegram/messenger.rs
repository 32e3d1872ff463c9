//! The Messenger port on the Bot API. Replies are sent while their update is handled (before
//! its commit), so a reply lost with a crashed instance is sent again when the update is
//! redelivered; that bounds how long a send may wait. Within [`SEND_BUDGET`] a message waits
//! for its slot under Telegram's limits, honours a 429's `retry_after`, and is repeated after a
//! transient failure; past it the caller is told, and the message is not lost silently (the
//! bot logs it). A 403 (the user blocked the bot) is reported as such, never retried.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use teloxide_core::payloads::{
    AnswerCallbackQuery, AnswerPreCheckoutQuery, RefundStarPayment, SendInvoice, SendMessage,
};
use teloxide_core::requests::Payload;
use teloxide_core::types::{
    CallbackQueryId, ChatId, InlineKeyboardButton, InlineKeyboardMarkup, LabeledPrice, LinkPreviewOptions, ParseMode,
    PreCheckoutQueryId, Recipient,
};

use super::api::{BotApi, TelegramError};
use super::limits::SendLimits;
use crate::domain::UserId;
use crate::net::Network;
use crate::ports::Clock;
use crate::ports::messenger::{Messenger, MessengerError, OutgoingMessage, StarsInvoice};

/// The longest one send may take in all: waiting for its slot, Telegram's `retry_after`, and
/// repeats. A handler holds its chat's lease (30 s) while it sends; its replies must fit well
/// inside it.
pub const SEND_BUDGET: Duration = Duration::from_secs(10);

/// The least time a call is given: a slot that would leave less of the budget than this is not
/// reserved (the call would time out for want of time, after using up the slot).
pub const CALL_TIME_MIN: Duration = Duration::from_secs(2);

/// Tries of one call after transient failures (5xx, a dropped connection, a timeout).
pub const SEND_ATTEMPTS: u32 = 3;

/// The pause before repeating after a transient failure, doubled at each try.
pub const RETRY_PAUSE_FIRST: Duration = Duration::from_millis(200);

/// The Telegram currency of Stars.
const STARS: &str = "XTR";

pub struct TelegramMessenger<N: Network> {
    api: Arc<BotApi<N>>,
    clock: Arc<dyn Clock>,
    /// `None`: no sending limits of our own (a local Bot API server, a load benchmark).
    limits: Option<Mutex<SendLimits>>,
}

impl<N: Network> TelegramMessenger<N> {
    /// A messenger that keeps Telegram's sending limits.
    pub fn new(api: Arc<BotApi<N>>, clock: Arc<dyn Clock>) -> TelegramMessenger<N> {
        TelegramMessenger { api, clock, limits: Some(Mutex::new(SendLimits::default())) }
    }

    /// A messenger that sends as fast as the server answers (Telegram's own 429s are still
    /// honoured): only against a local Bot API server or in a load benchmark.
    pub fn unlimited(api: Arc<BotApi<N>>, clock: Arc<dyn Clock>) -> TelegramMessenger<N> {
        TelegramMessenger { api, clock, limits: None }
    }

    fn limits(&self) -> Option<std::sync::MutexGuard<'_, SendLimits>> {
        self.limits.as_ref().map(|limits| limits.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Sends one call to a chat under the limits, honouring 429s and repeating transient
    /// failures, all within [`SEND_BUDGET`].
    async fn send_to<P>(&self, chat: Option<UserId>, payload: &P) -> Result<P::Output, MessengerError>
    where
        P: Payload + Serialize,
        P::Output: DeserializeOwned,
    {
        let deadline = self.clock.monotonic() + SEND_BUDGET;
        let mut pause = RETRY_PAUSE_FIRST;
        let mut attempt = 0;
        // Whether an earlier attempt may have been delivered (it failed after it was sent): then
        // a later "slow down" must not tell the caller that nothing went out.
        let mut maybe_sent = false;
        let give_up = |error: MessengerError, maybe_sent: bool| match error {
            MessengerError::RetryAfter(_) if maybe_sent => MessengerError::Timeout,
            other => other,
        };
        loop {
            attempt += 1;
            let now = self.clock.monotonic();
            let left = deadline.saturating_sub(now);
            let reserved = match (chat, self.limits()) {
                (Some(chat), Some(mut limits)) => Some(limits.reserve(chat, now, left.saturating_sub(CALL_TIME_MIN))),
                _ => None,
            };
            match reserved {
                Some(None) => return Err(give_up(MessengerError::RetryAfter(left), maybe_sent)),
                Some(Some(wait)) if !wait.is_zero() => tokio::time::sleep(wait).await,
                _ => {}
            }
            let left = deadline.saturating_sub(self.clock.monotonic());
            let error = match self.api.call_within(payload, left.max(Duration::from_millis(1))).await {
                Ok(output) => {
                    metrics::counter!("atlas_telegram_calls_total", "method" => P::NAME, "outcome" => "ok")
                        .increment(1);
                    return Ok(output);
                }
                Err(error) => error,
            };
            metrics::counter!("atlas_telegram_calls_total", "method" => P::NAME, "outcome" => outcome(&error))
                .increment(1);
            let now = self.clock.monotonic();
            let wait = match &error {
                TelegramError::RetryAfter(after) => {
                    if let (Some(chat), Some(mut limits)) = (chat, self.limits()) {
                        limits.pause_until(chat, now + *after);
                    }
                    *after
                }
                e if e.is_transient() && attempt < SEND_ATTEMPTS => {
                    let this = pause;
                    pause *= 2;
                    this
                }
                _ => return Err(give_up(messenger_error(error), maybe_sent)),
            };
            if now + wait >= deadline {
                return Err(give_up(messenger_error(error), maybe_sent));
            }
            maybe_sent |= !matches!(error, TelegramError::RetryAfter(_));
            tracing::debug!(method = P::NAME, attempt, ?wait, error = %error, "Telegram call repeated");
            tokio::time::sleep(wait).await;
        }
    }
}

fn outcome(error: &TelegramError) -> &'static str {
    match error {
        TelegramError::RetryAfter(_) => "rate_limited",
        TelegramError::Unreachable(_) => "unreachable",
        TelegramError::Conflict(_) => "conflict",
        TelegramError::Unauthorized => "unauthorized",
        TelegramError::Refused { .. } => "refused",
        TelegramError::Server(_) => "server_error",
        TelegramError::Http(_) => "network_error",
    }
}

fn messenger_error(error: TelegramError) -> MessengerError {
    match error {
        TelegramError::RetryAfter(after) => MessengerError::RetryAfter(after),
        TelegramError::Unreachable(_) => MessengerError::ChatUnreachable,
        TelegramError::Http(crate::net::client::HttpError::Timeout(_)) => MessengerError::Timeout,
        other => MessengerError::Unexpected(anyhow::Error::new(other)),
    }
}

/// Whether Telegram refused a refund as made before.
fn already_refunded(error: &anyhow::Error) -> bool {
    matches!(error.downcast_ref::<TelegramError>(),
        Some(TelegramError::Refused { description, .. }) if description.contains("CHARGE_ALREADY_REFUNDED"))
}

fn chat(user: UserId) -> Recipient {
    Recipient::Id(ChatId(user.get()))
}

impl<N: Network> Messenger for TelegramMessenger<N> {
    async fn send(&self, to: UserId, message: OutgoingMessage) -> Result<i32, MessengerError> {
        let mut payload = SendMessage::new(chat(to), message.text);
        payload.parse_mode = Some(ParseMode::Html);
        payload.link_preview_options = Some(LinkPreviewOptions {
            is_disabled: true,
            url: None,
            prefer_small_media: false,
            prefer_large_media: false,
            show_above_text: false,
        });
        if !message.keyboard.is_empty() {
            let rows = message.keyboard.into_iter().map(|row| {
                row.into_iter().map(|b| InlineKeyboardButton::callback(b.label, b.callback_data)).collect::<Vec<_>>()
            });
            payload.reply_markup = Some(InlineKeyboardMarkup::new(rows).into());
        }
        Ok(self.send_to(Some(to), &payload).await?.id.0)
    }

    async fn answer_callback(&self, callback_id: &str, toast: Option<&str>) -> Result<(), MessengerError> {
        let mut payload = AnswerCallbackQuery::new(CallbackQueryId(callback_id.to_owned()));
        payload.text = toast.map(str::to_owned);
        self.send_to(None, &payload).await.map(|_| ())
    }

    async fn send_invoice(&self, to: UserId, invoice: StarsInvoice) -> Result<i32, MessengerError> {
        let price = LabeledPrice::new(invoice.title.clone(), invoice.stars);
        let mut payload =
            SendInvoice::new(chat(to), invoice.title, invoice.description, invoice.payload, STARS, [price]);
        // Stars take an empty provider token.
        payload.provider_token = Some(String::new());
        Ok(self.send_to(Some(to), &payload).await?.id.0)
    }

    async fn answer_pre_checkout(&self, query_id: &str, refusal: Option<&str>) -> Result<(), MessengerError> {
        let mut payload = AnswerPreCheckoutQuery::new(PreCheckoutQueryId(query_id.to_owned()), refusal.is_none());
        payload.error_message = refusal.map(str::to_owned);
        self.send_to(None, &payload).await.map(|_| ())
    }

    async fn refund_stars(&self, user: UserId, charge_id: &str) -> Result<(), MessengerError> {
        let payload = RefundStarPayment::new(
            teloxide_core::types::UserId(user.get() as u64),
            teloxide_core::types::TelegramTransactionId(charge_id.to_owned()),
        );
        // Repeated on transient failures like any call: a repeat of a refund that went through
        // is refused as already made, which is the answer wanted.
        match self.send_to(None, &payload).await {
            Ok(_) => Ok(()),
            // Refunded before (a redelivered update, a retry whose answer was lost).
            Err(MessengerError::Unexpected(e)) if already_refunded(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
