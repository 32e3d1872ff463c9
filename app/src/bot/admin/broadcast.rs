//! Composing a broadcast: the text, a preview, and the confirmation that stores it as a job
//! (the broadcast worker sends it to every user, resumably, within Telegram's limits).

use super::{Next, Step, Turn, back, go};
use crate::bot::text::Msg;
use crate::bot::{cancel_keys, confirm_keys};
use crate::ports::store::{AdminTools, BroadcastError, NewBroadcast};
use crate::runtime::wiring::Adapters;

/// The longest broadcast, counted as Telegram counts (UTF-16 code units, so an emoji is two):
/// its preview (with a header) stays within Telegram's 4,096, and its draft within the
/// conversation state's limit whatever the script.
pub const BROADCAST_CHARS_MAX: usize = 3_500;

pub fn start<A: Adapters>(turn: &mut Turn<'_, A>) -> Next {
    let keys = cancel_keys(turn);
    turn.say_keys(Msg::AdminBroadcastAsk { max: BROADCAST_CHARS_MAX as u64 }, keys);
    go(Step::BroadcastText)
}

pub fn text<A: Adapters>(turn: &mut Turn<'_, A>, text: &str) -> Next {
    let text = text.trim();
    let length = text.encode_utf16().count();
    let refusal = if text.is_empty() {
        Some(Msg::AdminBroadcastEmpty)
    } else if length > BROADCAST_CHARS_MAX {
        Some(Msg::AdminBroadcastTooLong { length: length as u64, max: BROADCAST_CHARS_MAX as u64 })
    } else {
        None
    };
    if let Some(refusal) = refusal {
        let keys = cancel_keys(turn);
        turn.say_keys(refusal, keys);
        return go(Step::BroadcastText);
    }
    let keys = confirm_keys(turn);
    turn.say_keys(Msg::AdminBroadcastConfirm { text: text.to_owned() }, keys);
    go(Step::BroadcastConfirm { text: text.to_owned() })
}

pub async fn confirm<A: Adapters>(turn: &mut Turn<'_, A>, text: &str) -> Next {
    let broadcast = NewBroadcast {
        admin: turn.user(),
        text: text.to_owned(),
        correlation_id: Some(turn.correlation()),
        idempotency_key: Some(turn.key("broadcast")),
    };
    match turn.app.store.create_broadcast(broadcast, turn.now()).await {
        Ok(queued) => turn.say_keys(Msg::AdminBroadcastQueued { id: queued.broadcast.get() }, back()),
        Err(e @ (BroadcastError::IdempotencyKeyReused | BroadcastError::Unexpected(_))) => {
            turn.failed("create_broadcast", &e)
        }
    }
    Next::Done
}
