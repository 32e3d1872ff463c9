//! The polling intake: exactly one instance fetches updates with getUpdates, the one holding
//! the `Poller` leader lease; the others stand by and take over within the lease's TTL when it
//! dies or stops. A batch is handled with each user's updates in order (users side by side), and
//! the offset that confirms a batch to Telegram moves past an update only once it is settled:
//! one that must be delivered again is fetched again. A re-fetched update that was handled is a
//! duplicate to the intake, so a takeover neither loses nor doubles an update.
//!
//! A 409 while this instance holds the lease means another process is polling this bot (or a
//! webhook is set): it is logged as `POLLING_CONFLICT_DETECTED` and the poller stops with an
//! error, and the process exits with status 1 (the audit's behaviour). A 409 after the lease was
//! lost is the expected end of a deposed poller's last request.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use teloxide_core::payloads::{DeleteWebhook, GetUpdates};
use teloxide_core::types::{AllowedUpdate, Update as TgUpdate};
use tokio::sync::watch;

use super::gate::Gate;
use super::intake::process;
use super::leader::lead;
use super::wiring::{Adapters, App};
use crate::bot::incoming::{self, Update};
use crate::net::Network;
use crate::ports::coordination::{Leadership, Role};
use crate::telegram::api::{BotApi, CALL_TIMEOUT, TelegramError};

/// The poller's lease: a standby takes over within this long of the poller's death.
pub const POLLER_LEASE_TTL: Duration = Duration::from_secs(10);

/// How long one getUpdates waits for updates. Well under the lease's renewal period is not
/// needed (the lease renews beside the poll); it bounds how long a deposed poller's last
/// request lingers.
pub const LONG_POLL: Duration = Duration::from_secs(5);

/// Updates fetched at once (Telegram's maximum).
pub const BATCH_MAX: u8 = 100;

/// Pauses after a failed fetch, doubling to the cap.
const FETCH_PAUSE_FIRST: Duration = Duration::from_millis(250);
const FETCH_PAUSE_MAX: Duration = Duration::from_secs(5);

/// The updates the bot asks Telegram for (the webhook asks for the same).
pub const ALLOWED_UPDATES: [AllowedUpdate; 4] = [
    AllowedUpdate::Message,
    AllowedUpdate::CallbackQuery,
    AllowedUpdate::PreCheckoutQuery,
    AllowedUpdate::MyChatMember,
];

#[derive(Debug, thiserror::Error)]
pub enum PollerError {
    #[error("another process polls this bot, or a webhook is set: {0}")]
    Conflict(String),
    #[error("Telegram refused the bot token")]
    Unauthorized,
}

/// Polls while this instance holds the poller lease, until `shutdown` resolves (then the lease
/// is resigned) or a conflict stops it.
pub async fn poll<A: Adapters, N: Network>(
    app: Arc<App<A>>,
    api: Arc<BotApi<N>>,
    gate: Arc<Gate>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), PollerError> {
    let (held_tx, held_rx) = watch::channel::<Option<Leadership>>(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let leading = lead(
        &app.coordination,
        app.clock.as_ref(),
        Role::Poller,
        POLLER_LEASE_TTL,
        POLLER_LEASE_TTL / 6,
        |held| {
            held_tx.send_replace(Some(held));
            async {}
        },
        async {
            let mut stop = stop_rx.clone();
            let _ = stop.wait_for(|stop| *stop).await;
        },
    );
    let polling = async {
        tokio::pin!(shutdown);
        let fetched = tokio::select! {
            () = &mut shutdown => Ok(()),
            result = fetch_while_leading(&app, &api, &gate, held_rx) => result,
        };
        stop_tx.send_replace(true);
        fetched
    };
    let ((), result) = tokio::join!(leading, polling);
    result
}

async fn fetch_while_leading<A: Adapters, N: Network>(
    app: &App<A>,
    api: &BotApi<N>,
    gate: &Gate,
    mut held: watch::Receiver<Option<Leadership>>,
) -> Result<(), PollerError> {
    let clock = app.clock.as_ref();
    let mut term: Option<u64> = None;
    let mut offset: i32 = 0;
    let mut pause = FETCH_PAUSE_FIRST;
    loop {
        let leadership = held.borrow().clone().filter(|l| l.is_valid(clock));
        let Some(leadership) = leadership else {
            if term.take().is_some() {
                tracing::info!("poller lease lost: standing by");
            }
            let _ = tokio::time::timeout(POLLER_LEASE_TTL / 6, held.changed()).await;
            continue;
        };
        if term != Some(leadership.epoch) {
            term = Some(leadership.epoch);
            tracing::info!(epoch = leadership.epoch, "polling for updates");
            // getUpdates refuses to run while a webhook is set; the pending updates stay.
            if let Err(e) = api.call(&DeleteWebhook { drop_pending_updates: Some(false) }).await {
                tracing::warn!(error = %e, "deleteWebhook failed; getUpdates will say why");
            }
        }
        let mut request = GetUpdates::new();
        request.offset = Some(offset);
        request.limit = Some(BATCH_MAX);
        request.timeout = Some(LONG_POLL.as_secs() as u32);
        request.allowed_updates = Some(ALLOWED_UPDATES.to_vec());
        let batch = match api.call_within(&request, LONG_POLL + CALL_TIMEOUT).await {
            Ok(batch) => {
                pause = FETCH_PAUSE_FIRST;
                batch
            }
            Err(TelegramError::Conflict(why)) if leadership.is_valid(clock) => {
                tracing::error!(
                    event = "POLLING_CONFLICT_DETECTED",
                    reason = why.as_str(),
                    "another poller, or a webhook"
                );
                return Err(PollerError::Conflict(why));
            }
            Err(TelegramError::Conflict(_)) => continue,
            Err(TelegramError::Unauthorized) => return Err(PollerError::Unauthorized),
            Err(e) => {
                tracing::warn!(error = %e, ?pause, "getUpdates failed");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(FETCH_PAUSE_MAX);
                continue;
            }
        };
        if let Some((next, all_settled)) = handle_batch(app, gate, batch).await {
            offset = next;
            if !all_settled {
                // What must come again is fetched after a pause, not in a tight loop.
                tokio::time::sleep(FETCH_PAUSE_FIRST).await;
            }
        }
    }
}

/// Handles a batch and returns the offset that confirms what is settled — past the last update
/// when all are, else at the first one that must be fetched again — and whether all are
/// (`None`: an empty batch).
async fn handle_batch<A: Adapters>(app: &App<A>, gate: &Gate, batch: Vec<TgUpdate>) -> Option<(i32, bool)> {
    let last = batch.iter().map(|u| i64::from(u.id.0)).max()?;
    let mut by_user: BTreeMap<i64, Vec<Update>> = BTreeMap::new();
    for update in &batch {
        if let Some(ours) = incoming::from_telegram(update) {
            by_user.entry(ours.user.get()).or_default().push(ours);
        }
    }
    let users = by_user.into_values().map(|updates| async move {
        let mut unsettled: Option<i64> = None;
        for update in updates {
            // In a user's order: once one must come again, the rest of theirs waits with it.
            if unsettled.is_some() {
                break;
            }
            let Some(_pass) = gate.enter().await else {
                unsettled = Some(update.id);
                break;
            };
            if process(app, &update).await.wants_redelivery() {
                unsettled = Some(update.id);
            }
        }
        unsettled
    });
    let unsettled = futures::future::join_all(users).await.into_iter().flatten().min();
    let next = unsettled.unwrap_or(last + 1);
    Some((i32::try_from(next).expect("Telegram's update ids fit the offset"), unsettled.is_none()))
}
