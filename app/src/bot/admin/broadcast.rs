//! Composing a broadcast: the text, a preview, and the confirmation that stores it as a job
//! (the broadcast worker sends it to every user, resumably, within Telegram's limits).

use super::{Next, Step, Turn, back, go};
use crate::bot::incoming::TEXT_CHARS_MAX;
use crate::bot::text::Msg;
use crate::bot::{cancel_keys, confirm_keys};
use crate::ports::store::{AdminTools, BroadcastError};
use crate::runtime::wiring::Adapters;

pub fn start<A: Adapters>(turn: &mut Turn<'_, A>) -> Next {
    let keys = cancel_keys(turn);
    turn.say_keys(Msg::AdminBroadcastAsk, keys);
    go(Step::BroadcastText)
}

pub fn text<A: Adapters>(turn: &mut Turn<'_, A>, text: &str) -> Next {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > TEXT_CHARS_MAX {
        return start(turn);
    }
    let keys = confirm_keys(turn);
    turn.say_keys(Msg::AdminBroadcastConfirm { text: text.to_owned() }, keys);
    go(Step::BroadcastConfirm { text: text.to_owned() })
}

pub async fn confirm<A: Adapters>(turn: &mut Turn<'_, A>, text: &str) -> Next {
    let key = Some(turn.key("broadcast"));
    match turn.app.store.create_broadcast(turn.user(), text, key, turn.now()).await {
        Ok(queued) => turn.say_keys(Msg::AdminBroadcastQueued { id: queued.broadcast.get() }, back()),
        Err(e @ (BroadcastError::IdempotencyKeyReused | BroadcastError::Unexpected(_))) => {
            turn.failed("create_broadcast", &e)
        }
    }
    Next::Done
}
