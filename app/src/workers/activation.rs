//! Key activation, on every instance: each pending subscription that has not ended is taken by
//! one worker for a round (`claim_activations`) and gets its key at the panel under a label of
//! its own (`KeyLabel::Activation`: a retried or concurrent attempt asks for the same id and gets
//! the same key), recorded only while it is still pending and of the same generation. A failed
//! attempt waits out a backoff; after the last one the subscription is marked failed, the user is
//! told and the admins are notified. When the panel was not called at all (none configured, or
//! its calls paused after a run of failures) no attempt is counted: the claim runs out and a
//! later round tries again.

use super::notify::{tell, tell_admins};
use super::{Lease, Tally};
use crate::bot::menu::back;
use crate::bot::text::Msg;
use crate::domain::KeyLabel;
use crate::ports::VpnProvider;
use crate::ports::store::{ActivationOutcome, ActivationResult, Subscriptions};
use crate::ports::vpn::VpnError;
use crate::runtime::wiring::{Adapters, App};

/// Subscriptions taken at once: few enough that the last is tried well within the claim
/// (`ACTIVATION_CLAIM`, a minute; one panel call with its retries takes up to ~16 s).
pub const CLAIM_BATCH: u32 = 3;

/// Activates at most `limit` subscriptions, taking them a few at a time.
pub async fn tick<A: Adapters>(app: &App<A>, lease: Lease<'_>, limit: u32) -> Tally {
    let mut tally = Tally::default();
    let mut left = limit;
    while left > 0 && lease.holds() {
        let take = left.min(CLAIM_BATCH);
        let claimed = match app.store.claim_activations(app.clock.now(), take).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "pending activations not read");
                tally.failed += 1;
                break;
            }
        };
        let last = (claimed.len() as u32) < take;
        left -= take;
        activate(app, lease, claimed, &mut tally).await;
        if last {
            break;
        }
    }
    tally
}

async fn activate<A: Adapters>(
    app: &App<A>,
    lease: Lease<'_>,
    claimed: Vec<crate::ports::store::PendingActivation>,
    tally: &mut Tally,
) {
    for item in claimed {
        if !lease.holds() {
            break;
        }
        let label = item.label.to_string();
        let KeyLabel::Activation { generation, .. } = item.label else {
            unreachable!("an activation is made under an activation label")
        };
        let (result, made, error) = match app.vpn.create_key(item.subscription, &label).await {
            Ok(key) => (ActivationResult::Succeeded(key.clone()), Some(key), String::new()),
            Err(VpnError::Unavailable(why)) => {
                tracing::debug!(subscription_id = item.subscription.get(), why, "panel not called; tried later");
                tally.skipped += 1;
                continue;
            }
            Err(e) => (ActivationResult::Failed { error: e.to_string() }, None, e.to_string()),
        };
        let outcome = match app.store.record_activation(item.subscription, generation, result, app.clock.now()).await {
            Ok(outcome) => outcome,
            Err(e) => {
                // The key (if made) is asked for again under the same label next time.
                tracing::warn!(subscription_id = item.subscription.get(), error = %e, "activation not recorded");
                tally.failed += 1;
                continue;
            }
        };
        let subscription_id = item.subscription.get();
        match outcome {
            ActivationOutcome::Activated => {
                let key = made.expect("activated with a key");
                tracing::info!(event = "KEY_ACTIVATED", subscription_id, user_id = item.user.get(), label);
                tell(app, item.user, &Msg::KeyReady { uri: key.access_uri }, back()).await;
                tally.done += 1;
            }
            // Another worker recorded it first (under the same label: the same key), or a reissue
            // or retirement came between. Nothing to revoke here: if this key is nobody's, the
            // reconciler finds it superseded.
            ActivationOutcome::NotPending => tally.skipped += 1,
            ActivationOutcome::WillRetry { attempts } => {
                tracing::warn!(event = "KEY_ACTIVATION_RETRY", subscription_id, attempts, error, "panel refused");
                tally.failed += 1;
            }
            ActivationOutcome::GaveUp => {
                tracing::error!(event = "KEY_ACTIVATION_FAILED", subscription_id, error, "no key after every attempt");
                tell(app, item.user, &Msg::KeyActivationFailed, back()).await;
                let msg = Msg::AdminActivationFailed { user: item.user.get(), subscription: subscription_id, error };
                tell_admins(app, &msg).await;
                tally.failed += 1;
            }
        }
    }
}
