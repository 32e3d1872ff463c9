//! The broadcast sender, leader-only: the oldest open broadcast goes to every user who can be
//! written to, in order of id, from where it stopped (the job keeps its progress, so a crash or
//! a new leader resumes there). Each delivery is claimed before it is sent, so a recipient never
//! gets one broadcast twice, whoever sends; users who blocked the bot are marked and skipped. The
//! sender keeps below Telegram's ~30 messages per second, leaving room for replies.

use std::time::Duration;

use super::notify::{Sent, send};
use super::{Lease, Tally};
use crate::bot::text::Msg;
use crate::ports::store::Broadcasts;
use crate::runtime::wiring::{Adapters, App};

/// The pause between two broadcast messages: 20 per second, two thirds of Telegram's overall
/// limit, the rest for replies to users.
pub const BROADCAST_PACE: Duration = Duration::from_millis(50);

/// How often one recipient's message is tried when Telegram asks to wait.
const TRIES: u32 = 3;

/// The longest wait for Telegram's `retry_after` inside a tick; a longer one ends the tick.
const RETRY_WAIT_MAX: Duration = Duration::from_secs(30);

/// Sends the open broadcast to at most `limit` more users.
pub async fn tick<A: Adapters>(app: &App<A>, lease: Lease<'_>, pace: Duration, limit: u32) -> Tally {
    let mut tally = Tally::default();
    let job = match app.store.open_broadcast().await {
        Ok(Some(job)) => job,
        Ok(None) => return tally,
        Err(e) => {
            tracing::warn!(error = %e, "open broadcast not read");
            tally.failed += 1;
            return tally;
        }
    };
    let recipients = match app.store.recipients(job.after_user, limit).await {
        Ok(recipients) => recipients,
        Err(e) => {
            tracing::warn!(error = %e, "broadcast recipients not read");
            tally.failed += 1;
            return tally;
        }
    };
    let last_page = recipients.len() < limit as usize;
    let mut through = job.after_user;
    let mut sent = 0;
    let msg = Msg::Broadcast { text: job.text.clone() };
    let mut complete = true;
    'recipients: for recipient in &recipients {
        if !lease.holds() {
            complete = false;
            break;
        }
        match app.store.claim_delivery(job.id, recipient.user, app.clock.now()).await {
            Ok(true) => {
                for attempt in 1..=TRIES {
                    match send(app, recipient.user, recipient.language, &msg, Vec::new()).await {
                        Sent::Sent => {
                            sent += 1;
                            tally.done += 1;
                        }
                        Sent::RetryAfter(wait) if attempt < TRIES && wait <= RETRY_WAIT_MAX => {
                            tokio::time::sleep(wait).await;
                            if lease.holds() {
                                continue;
                            }
                            release(app, job.id, recipient.user).await;
                            complete = false;
                            break 'recipients;
                        }
                        Sent::RetryAfter(_) => {
                            // Certainly not sent: given back, and this page resumes here later.
                            tally.failed += 1;
                            release(app, job.id, recipient.user).await;
                            complete = false;
                            break 'recipients;
                        }
                        Sent::Unreachable => tally.skipped += 1,
                        // Maybe sent (a timeout, a failed call): at most once.
                        Sent::Failed => tally.failed += 1,
                    }
                    break;
                }
                tokio::time::sleep(pace).await;
            }
            Ok(false) => tally.skipped += 1,
            Err(e) => {
                tracing::warn!(error = %e, "broadcast delivery not claimed");
                tally.failed += 1;
                complete = false;
                break;
            }
        }
        through = recipient.user.get();
    }
    let done = last_page && complete;
    if let Err(e) = app.store.advance_broadcast(job.id, through, sent, done, app.clock.now()).await {
        // The claims keep every sent message from going out again when this page is redone.
        tracing::warn!(error = %e, "broadcast progress not recorded");
    }
    if done {
        tracing::info!(event = "BROADCAST_SENT", broadcast_id = job.id.get(), "sent to everyone");
    }
    tally
}

async fn release<A: Adapters>(app: &App<A>, broadcast: crate::domain::BroadcastId, user: crate::domain::UserId) {
    if let Err(e) = app.store.release_delivery(broadcast, user).await {
        tracing::warn!(error = %e, "broadcast claim not released; this recipient misses it");
    }
}
