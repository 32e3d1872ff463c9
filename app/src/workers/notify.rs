//! Telling a user something from a worker: rendered in their language, not sent to a user who
//! blocked the bot (a 403 marks them), and Telegram's "slow down" reported so the worker can
//! wait.

use std::time::Duration;

use crate::bot::text::Msg;
use crate::bot::{Keys, outgoing, reachable_language};
use crate::domain::{Language, UserId};
use crate::ports::Messenger;
use crate::ports::messenger::MessengerError;
use crate::ports::store::Accounts;
use crate::runtime::wiring::{Adapters, App};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    Sent,
    /// The user blocked the bot (marked now, or before): nothing sent.
    Unreachable,
    /// Telegram asked to wait this long: nothing sent.
    RetryAfter(Duration),
    /// The call failed or timed out: it may or may not have arrived.
    Failed,
}

/// Sends `msg` to `to` in `language`.
pub async fn send<A: Adapters>(app: &App<A>, to: UserId, language: Language, msg: &Msg, keys: Keys) -> Sent {
    match app.messenger.send(to, outgoing(language, msg, keys)).await {
        Ok(_) => Sent::Sent,
        Err(MessengerError::ChatUnreachable) => {
            tracing::info!(event = "USER_UNREACHABLE", to = to.get(), "not sent: the bot is blocked");
            if let Err(e) = app.store.set_reachable(to, false, app.clock.now()).await {
                tracing::warn!(error = %e, "reachability not recorded");
            }
            Sent::Unreachable
        }
        Err(MessengerError::RetryAfter(wait)) => Sent::RetryAfter(wait),
        Err(e) => {
            tracing::warn!(to = to.get(), error = %e, "worker message not sent");
            Sent::Failed
        }
    }
}

/// Sends `msg` to `to` in the language they chose; not to a user who blocked the bot.
pub async fn tell<A: Adapters>(app: &App<A>, to: UserId, msg: &Msg, keys: Keys) -> Sent {
    match reachable_language(&app.store, to).await {
        Some(language) => send(app, to, language, msg, keys).await,
        None => Sent::Unreachable,
    }
}

/// Tells every admin (the ones who have started the bot get it).
pub async fn tell_admins<A: Adapters>(app: &App<A>, msg: &Msg) {
    for admin in app.rules.admins.clone() {
        tell(app, admin, msg, Vec::new()).await;
    }
}
