//! Auto-renewal from the balance, on every instance: the store claims each due subscription with
//! `FOR UPDATE SKIP LOCKED` and records one claim per (subscription, period), so however many
//! instances run this, a period is charged once. The user is told what happened: renewed, or
//! why not (a short balance, a tariff no longer sold).

use std::time::Duration;

use super::notify::tell;
use super::{Lease, Tally};
use crate::bot::menu::back;
use crate::bot::purchase::subscription_keys;
use crate::bot::text::Msg;
use crate::ports::store::{RenewalOutcome, Subscriptions};
use crate::runtime::wiring::{Adapters, App};

/// Subscriptions renewed in one store call (one transaction).
pub const RENEWAL_BATCH: u32 = 50;

/// Renews at most `limit` subscriptions due within `horizon` (renewing early loses nothing: the
/// new period starts at the old expiry).
pub async fn tick<A: Adapters>(app: &App<A>, lease: Lease<'_>, horizon: Duration, limit: u32) -> Tally {
    let mut tally = Tally::default();
    let mut left = limit;
    while left > 0 && lease.holds() {
        let batch = left.min(RENEWAL_BATCH);
        let outcomes = match app.store.auto_renew_batch(app.clock.now(), horizon, batch).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                tracing::warn!(error = %e, "auto-renewal failed");
                tally.failed += 1;
                break;
            }
        };
        left -= batch;
        let last = (outcomes.len() as u32) < batch;
        for outcome in outcomes {
            tell_outcome(app, outcome, &mut tally).await;
        }
        if last {
            break;
        }
    }
    tally
}

async fn tell_outcome<A: Adapters>(app: &App<A>, outcome: RenewalOutcome, tally: &mut Tally) {
    match outcome {
        RenewalOutcome::Renewed { user, amount, expires_at, .. } => {
            tell(app, user, &Msg::Renewed { until: expires_at, amount }, subscription_keys()).await;
            tally.done += 1;
        }
        RenewalOutcome::InsufficientFunds { subscription, user } => {
            tracing::info!(event = "RENEWAL_SHORT", subscription_id = subscription.get(), user_id = user.get());
            tell(app, user, &Msg::RenewalShort, back()).await;
            tally.done += 1;
        }
        RenewalOutcome::TariffUnavailable { subscription, user } => {
            tracing::info!(event = "RENEWAL_UNAVAILABLE", subscription_id = subscription.get(), user_id = user.get());
            tell(app, user, &Msg::RenewalUnavailable, back()).await;
            tally.done += 1;
        }
        // The user has a purchase in flight: a later tick tries again.
        RenewalOutcome::Busy => tally.skipped += 1,
    }
}
