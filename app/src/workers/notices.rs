//! Expiry reminders (paid subscriptions without auto-renewal) and trial notices, leader-only:
//! each notice is claimed in the store before it is sent (one row per subscription, kind and
//! threshold of a period), so it goes out at most once however many leaders there are.

use super::notify::{Sent, send};
use super::{Lease, Tally};
use crate::bot::menu::back;
use crate::bot::text::Msg;
use crate::domain::{NoticeKind, NoticeThreshold};
use crate::ports::store::{DueNotice, Notices};
use crate::runtime::wiring::{Adapters, App};

/// Sends at most `limit` due notices: for trials (`trial`) or paid subscriptions, `before_hours`
/// ahead of the end and at the end.
pub async fn tick<A: Adapters>(app: &App<A>, lease: Lease<'_>, trial: bool, before_hours: &[u16], limit: u32) -> Tally {
    match app.store.due_notices(trial, before_hours.to_vec(), app.clock.now(), limit).await {
        Ok(due) => deliver(app, lease, due).await,
        Err(e) => {
            tracing::warn!(error = %e, "due notices not read");
            Tally { failed: 1, ..Tally::default() }
        }
    }
}

/// Claims and sends notices found due (maybe a while ago, by a leader that paused since): the
/// claim, not the scan, is what lets each out once.
pub async fn deliver<A: Adapters>(app: &App<A>, lease: Lease<'_>, due: Vec<DueNotice>) -> Tally {
    let mut tally = Tally::default();
    for notice in due {
        if !lease.holds() {
            break;
        }
        match app.store.claim_notice(notice.subscription, notice.kind, notice.threshold, app.clock.now()).await {
            Ok(true) => {}
            Ok(false) => {
                tally.skipped += 1;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "notice not claimed");
                tally.failed += 1;
                continue;
            }
        }
        // Claimed: at most once from here, even if this send fails.
        let sent = send(app, notice.user, notice.language, &message(&notice), back()).await;
        tracing::info!(
            event = "NOTICE_SENT",
            subscription_id = notice.subscription.get(),
            kind = notice.kind.code(),
            threshold = %notice.threshold.code(),
            ?sent
        );
        match sent {
            Sent::Sent => tally.done += 1,
            Sent::Unreachable => tally.skipped += 1,
            // Certainly not sent: the claim is given back, and the tick stops (Telegram asked
            // to slow down); the next one sends it.
            Sent::RetryAfter(_) => {
                tally.failed += 1;
                let (kind, threshold) = (notice.kind, notice.threshold);
                if let Err(e) = app.store.release_notice(notice.subscription, kind, threshold).await {
                    tracing::warn!(error = %e, "notice claim not released; this notice is lost");
                }
                break;
            }
            // Maybe sent (a timeout, a failed call): at most once.
            Sent::Failed => tally.failed += 1,
        }
    }
    tally
}

fn message(notice: &DueNotice) -> Msg {
    let trial = notice.kind == NoticeKind::TrialNotice;
    match (notice.threshold, trial) {
        (NoticeThreshold::Before { hours, period_end }, false) => {
            Msg::ReminderBefore { hours: u64::from(hours), until: period_end }
        }
        (NoticeThreshold::Before { hours, period_end }, true) => {
            Msg::TrialEndsSoon { hours: u64::from(hours), until: period_end }
        }
        (NoticeThreshold::AtEnd { period_end }, false) => Msg::SubscriptionEnded { until: period_end },
        (NoticeThreshold::AtEnd { .. }, true) => Msg::TrialEnded,
    }
}
