//! The polling intake: exactly one instance fetches updates with getUpdates, the one holding
//! the `Poller` leader lease; the others stand by and take over within the lease's TTL when it
//! dies or stops. A batch is handled with each user's updates in order (users side by side;
//! pre-checkout queries apart, as Telegram waits only 10 s for them), and the offset that
//! confirms a batch to Telegram moves past an update only once it is settled: one that must be
//! delivered again is fetched again, after a pause that grows while it stays unsettled. A
//! re-fetched update that was handled is a duplicate to the intake, so a takeover neither loses
//! nor doubles an update. One that stays unsettled past [`REDELIVERY_WINDOW`] would hold every
//! user back (Telegram's offset is one for the whole bot): it is given up, logged whole as
//! `UPDATE_ABANDONED` for an operator, and the offset moves on.
//!
//! A 409 while this instance holds the lease means another process is polling this bot (or a
//! webhook is set): it is logged as `POLLING_CONFLICT_DETECTED`, the poller stops with an error
//! and the process exits with status 1 (the audit's behaviour). A 409 after the lease was lost
//! is the expected end of a deposed poller's last request. A webhook found set when a term
//! starts is another deployment's: it is a conflict too, never deleted.
//!
//! On shutdown the poller stops fetching; a batch being handled is finished first.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use teloxide_core::payloads::{GetUpdates, GetWebhookInfo};
use teloxide_core::types::{AllowedUpdate, Update as TgUpdate};
use tokio::sync::watch;

use super::gate::Gate;
use super::intake::process;
use super::leader::lead;
use super::wiring::{Adapters, App};
use crate::bot::incoming::{self, Incoming, Update};
use crate::net::Network;
use crate::ports::Clock;
use crate::ports::coordination::{Leadership, Role};
use crate::telegram::api::{BotApi, CALL_TIMEOUT, TelegramError};

/// The poller's lease: a standby takes over within this long of the poller's death.
pub const POLLER_LEASE_TTL: Duration = Duration::from_secs(10);

/// How long one getUpdates waits for updates; it bounds how long a deposed poller's last
/// request lingers.
pub const LONG_POLL: Duration = Duration::from_secs(5);

/// Updates fetched at once (Telegram's maximum).
pub const BATCH_MAX: u8 = 100;

/// How long an update may stay unsettled (a chat held by a dead instance, a store that fails)
/// before it is given up so the others can go on: longer than any lease (30 s) and than a
/// store restart.
pub const REDELIVERY_WINDOW: Duration = Duration::from_secs(300);

/// Pauses after a failed fetch or an unsettled batch, doubling to the cap.
const PAUSE_FIRST: Duration = Duration::from_millis(250);
const PAUSE_MAX: Duration = Duration::from_secs(5);

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

/// Polls while this instance holds the poller lease, until `shutdown` resolves (then the batch
/// in hand is finished and the lease resigned) or a conflict stops it.
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
            let mut stopped = stop_rx.clone();
            let _ = stopped.wait_for(|stopped| *stopped).await;
        },
    );
    let (fetching_tx, fetching_rx) = watch::channel(true);
    let polling = async {
        let result = fetch_while_leading(&app, &api, &gate, held_rx, fetching_rx).await;
        // The lease is resigned only after the last batch is handled.
        stop_tx.send_replace(true);
        result
    };
    let signal = async {
        shutdown.await;
        fetching_tx.send_replace(false);
    };
    let mut ended = stop_rx.clone();
    let ((), result, ()) = tokio::join!(leading, polling, async {
        tokio::select! {
            () = signal => {}
            _ = ended.wait_for(|stopped| *stopped) => {}
        }
    });
    result
}

/// What the poller keeps between batches.
struct Poll {
    term: Option<u64>,
    offset: i32,
    pause: Duration,
    /// When each unsettled update was first seen unsettled (monotonic).
    unsettled_since: BTreeMap<i64, Duration>,
    /// Updates settled here that Telegram gives out again because the offset stays at an
    /// earlier one that must come again: they are not handled twice. (Redis's dedupe would
    /// drop them too, but not while Redis is away and updates are handled degraded: found by
    /// the simulation's swarm, a press handled again during a partition.)
    settled: BTreeSet<i64>,
}

impl Poll {
    /// A poller's state at the start: nothing fetched yet.
    fn new() -> Poll {
        Poll { term: None, offset: 0, pause: PAUSE_FIRST, unsettled_since: BTreeMap::new(), settled: BTreeSet::new() }
    }
}

async fn fetch_while_leading<A: Adapters, N: Network>(
    app: &App<A>,
    api: &BotApi<N>,
    gate: &Gate,
    mut held: watch::Receiver<Option<Leadership>>,
    mut fetching: watch::Receiver<bool>,
) -> Result<(), PollerError> {
    let clock = app.clock.as_ref();
    let mut poll = Poll::new();
    let valid = |held: &watch::Receiver<Option<Leadership>>| held.borrow().clone().filter(|l| l.is_valid(clock));
    while *fetching.borrow() {
        let Some(leadership) = valid(&held) else {
            if poll.term.take().is_some() {
                tracing::info!("poller lease lost: standing by");
            }
            tokio::select! {
                _ = tokio::time::timeout(POLLER_LEASE_TTL / 6, held.changed()) => {}
                _ = fetching.changed() => {}
            }
            continue;
        };
        if poll.term != Some(leadership.epoch) {
            poll.term = Some(leadership.epoch);
            // Another poller may have confirmed past what this one remembers.
            poll.settled.clear();
            no_webhook(api).await?;
            tracing::info!(epoch = leadership.epoch, "polling for updates");
        }
        let mut request = GetUpdates::new();
        request.offset = Some(poll.offset);
        request.limit = Some(BATCH_MAX);
        request.timeout = Some(LONG_POLL.as_secs() as u32);
        request.allowed_updates = Some(ALLOWED_UPDATES.to_vec());
        // A fetch in flight is dropped on shutdown: nothing fetched was taken yet.
        let fetched = tokio::select! {
            fetched = api.call_within(&request, LONG_POLL + CALL_TIMEOUT) => fetched,
            _ = fetching.wait_for(|fetching| !*fetching) => break,
        };
        let batch = match fetched {
            Ok(batch) => batch,
            Err(TelegramError::Conflict(why)) if valid(&held).is_some() => {
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
                tracing::warn!(error = %e, pause = ?poll.pause, "getUpdates failed");
                tokio::time::sleep(poll.pause).await;
                poll.pause = (poll.pause * 2).min(PAUSE_MAX);
                continue;
            }
        };
        // Handled to the end, shutdown or not: its updates are taken.
        let fresh = batch.iter().filter(|u| !poll.settled.contains(&i64::from(u.id.0)));
        let unsettled = handle_batch(app, gate, fresh).await;
        if settle(&mut poll, &batch, unsettled, clock) {
            poll.pause = PAUSE_FIRST;
        } else {
            tokio::time::sleep(poll.pause).await;
            poll.pause = (poll.pause * 2).min(PAUSE_MAX);
        }
    }
    Ok(())
}

/// getUpdates would delete nothing and fail while a webhook is set: a webhook found at the
/// start of a term is another deployment's, a conflict (never deleted from here).
async fn no_webhook<N: Network>(api: &BotApi<N>) -> Result<(), PollerError> {
    match api.call(&GetWebhookInfo {}).await {
        Ok(info) if info.url.is_some() => {
            let why = "a webhook is set (another deployment takes updates by webhook)".to_owned();
            tracing::error!(event = "POLLING_CONFLICT_DETECTED", reason = why.as_str(), "webhook set");
            Err(PollerError::Conflict(why))
        }
        Ok(_) => Ok(()),
        Err(TelegramError::Unauthorized) => Err(PollerError::Unauthorized),
        // getUpdates will say what is wrong, if anything is.
        Err(e) => {
            tracing::warn!(error = %e, "getWebhookInfo failed");
            Ok(())
        }
    }
}

/// Moves the offset past what is settled, gives up updates unsettled for too long, and says
/// whether everything in the batch is settled.
fn settle(poll: &mut Poll, batch: &[TgUpdate], mut unsettled: Vec<i64>, clock: &dyn Clock) -> bool {
    let Some(last) = batch.iter().map(|u| i64::from(u.id.0)).max() else {
        return true;
    };
    let now = clock.monotonic();
    unsettled.retain(|id| {
        let since = *poll.unsettled_since.entry(*id).or_insert(now);
        if now.saturating_sub(since) < REDELIVERY_WINDOW {
            return true;
        }
        let update = batch.iter().find(|u| i64::from(u.id.0) == *id);
        let json = update.and_then(|u| serde_json::to_string(u).ok()).unwrap_or_default();
        tracing::error!(event = "UPDATE_ABANDONED", update_id = id, update = json.as_str(), "unsettled for too long");
        false
    });
    poll.unsettled_since.retain(|id, _| unsettled.contains(id));
    let next = unsettled.iter().min().copied().unwrap_or(last + 1);
    poll.settled.extend(batch.iter().map(|u| i64::from(u.id.0)).filter(|id| !unsettled.contains(id)));
    poll.settled.retain(|id| *id >= next && !unsettled.contains(id));
    // Telegram's update ids fit the 32-bit offset; past it there is nothing to confirm.
    poll.offset = i32::try_from(next).unwrap_or(i32::MAX);
    unsettled.is_empty()
}

/// Handles a batch: each user's updates in order, users side by side, pre-checkout queries
/// apart and at once. Returns the updates that must be fetched again.
async fn handle_batch<'b, A: Adapters>(
    app: &App<A>,
    gate: &Gate,
    batch: impl IntoIterator<Item = &'b TgUpdate>,
) -> Vec<i64> {
    let mut queues: BTreeMap<(i64, bool), Vec<Update>> = BTreeMap::new();
    for update in batch {
        if let Some(ours) = incoming::from_telegram(update) {
            let pre_checkout = matches!(ours.incoming, Incoming::PreCheckout { .. });
            queues.entry((ours.user.get(), pre_checkout)).or_default().push(ours);
        }
    }
    let queues = queues.into_values().map(|updates| async move {
        let mut unsettled = Vec::new();
        for update in updates {
            // In the queue's order: once one must come again, the rest of it waits with it.
            if !unsettled.is_empty() {
                unsettled.push(update.id);
                continue;
            }
            let Some(_pass) = gate.enter().await else {
                unsettled.push(update.id);
                continue;
            };
            if process(app, &update).await.wants_redelivery() {
                unsettled.push(update.id);
            }
        }
        unsettled
    });
    futures::future::join_all(queues).await.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::{DateTime, Utc};

    use super::*;

    struct Hand(Mutex<Duration>);

    impl Clock for Hand {
        fn now(&self) -> DateTime<Utc> {
            DateTime::from_timestamp(1_767_225_600, 0).unwrap()
        }

        fn monotonic(&self) -> Duration {
            *self.0.lock().unwrap()
        }
    }

    fn batch(ids: &[u32]) -> Vec<TgUpdate> {
        ids.iter()
            .map(|id| {
                let json = format!(
                    r#"{{"update_id":{id},"message":{{"message_id":1,"date":1767225600,"chat":{{"id":5,"type":"private","first_name":"U"}},"from":{{"id":5,"is_bot":false,"first_name":"U"}},"text":"hi"}}}}"#
                );
                serde_json::from_str(&json).unwrap()
            })
            .collect()
    }

    #[test]
    fn the_offset_moves_past_settled_updates_and_gives_up_a_stuck_one_in_time() {
        let clock = Hand(Mutex::new(Duration::from_secs(1)));
        let mut poll = Poll::new();
        assert!(settle(&mut poll, &batch(&[10, 11, 12]), vec![], &clock));
        assert_eq!(poll.offset, 13, "past the last");
        assert!(settle(&mut poll, &[], vec![], &clock), "an empty batch changes nothing");
        assert_eq!(poll.offset, 13);
        assert!(!settle(&mut poll, &batch(&[13, 14, 15]), vec![15, 14], &clock));
        assert_eq!(poll.offset, 14, "at the first that must come again");
        assert!(poll.settled.is_empty(), "13 is below the offset: Telegram forgets it");
        // Still unsettled just inside the window: held.
        *clock.0.lock().unwrap() += REDELIVERY_WINDOW - Duration::from_secs(1);
        assert!(!settle(&mut poll, &batch(&[14, 15]), vec![14, 15], &clock));
        assert_eq!(poll.offset, 14);
        // Past it: given up, and the offset moves on.
        *clock.0.lock().unwrap() += Duration::from_secs(2);
        assert!(settle(&mut poll, &batch(&[14, 15, 16]), vec![14, 15], &clock));
        assert_eq!(poll.offset, 17);
        assert!(poll.unsettled_since.is_empty());
        assert!(poll.settled.is_empty(), "all below the offset now");
    }

    #[test]
    fn updates_settled_above_the_offset_are_remembered_until_it_passes_them() {
        let clock = Hand(Mutex::new(Duration::from_secs(1)));
        let mut poll = Poll::new();
        assert!(!settle(&mut poll, &batch(&[20, 21, 22]), vec![20], &clock));
        assert_eq!(poll.offset, 20);
        assert_eq!(poll.settled.iter().copied().collect::<Vec<_>>(), [21, 22], "skipped when they come again");
        // 20 comes again (with 21 and 22, which the loop does not hand to the handler): settled.
        assert!(settle(&mut poll, &batch(&[20, 21, 22]), vec![], &clock));
        assert_eq!(poll.offset, 23);
        assert!(poll.settled.is_empty());
    }
}
