//! The user's subscription: what it is, the key (as copyable text), auto-renewal, a new key on
//! request (with a cooldown, through the reissue use case and its Redis lock with fencing), and
//! the one free trial.

use super::action::{Action, Nav};
use super::menu::back;
use super::text::{Msg, Word};
use super::{Next, Turn};
use crate::domain::{ActivationStatus, TariffCode, UserId};
use crate::ports::coordination::LimitedAction;
use crate::ports::store::{Subscriptions, TrialError};
use crate::ports::vpn::PanelKey;
use crate::runtime::wiring::Adapters;
use crate::services::reissue::{ReissueOutcome, reissue_key};

/// The tariff a trial runs on.
pub const TRIAL_TARIFF: &str = "basic";

fn on_off(on: bool) -> Word {
    Word(if on { "on" } else { "off" })
}

pub async fn show<A: Adapters>(turn: &mut Turn<'_, A>) -> Next {
    let subscription = match turn.app.store.subscription(turn.user()).await {
        Ok(s) => s,
        Err(e) => {
            turn.failed("subscription", &e);
            return Next::Done;
        }
    };
    let Some(sub) = subscription else {
        let keys = vec![
            vec![(Msg::BtnBuy, Action::Nav(Nav::Buy)), (Msg::BtnTrial, Action::Nav(Nav::Trial))],
            vec![(Msg::BtnMenu, Action::Nav(Nav::Menu))],
        ];
        turn.say_keys(Msg::NoSubscription, keys);
        return Next::Done;
    };
    if sub.expires_at <= turn.now() {
        let keys = vec![vec![(Msg::BtnBuy, Action::Nav(Nav::Buy)), (Msg::BtnMenu, Action::Nav(Nav::Menu))]];
        turn.say_keys(Msg::SubscriptionEnded { until: sub.expires_at }, keys);
        return Next::Done;
    }
    turn.say(Msg::SubscriptionInfo {
        until: sub.expires_at,
        trial: Word(if sub.is_trial { "yes" } else { "no" }),
        auto_renew: on_off(sub.auto_renew),
    });
    let key = match sub.activation_status {
        ActivationStatus::Active => match turn.app.store.current_key(sub.id).await {
            Ok(Some(key)) => Msg::KeyShown { uri: key.access_uri },
            Ok(None) => Msg::KeyPending,
            Err(e) => {
                turn.failed("current_key", &e);
                return Next::Done;
            }
        },
        ActivationStatus::Pending => Msg::KeyPending,
        ActivationStatus::Failed => Msg::KeyFailed,
    };
    let mut keys =
        vec![vec![(Msg::BtnAutoRenew { state: on_off(!sub.auto_renew) }, Action::Nav(Nav::ToggleAutoRenew))]];
    if sub.activation_status == ActivationStatus::Active {
        keys[0].insert(0, (Msg::BtnReissue, Action::Nav(Nav::ReissueKey)));
    }
    keys.push(vec![(Msg::BtnMenu, Action::Nav(Nav::Menu))]);
    turn.say_keys(key, keys);
    Next::Done
}

pub async fn toggle_auto_renew<A: Adapters>(turn: &mut Turn<'_, A>) -> Next {
    let user = turn.user();
    let current = match turn.app.store.subscription(user).await {
        Ok(Some(sub)) => sub.auto_renew,
        Ok(None) => {
            turn.say_keys(Msg::NoSubscription, back());
            return Next::Done;
        }
        Err(e) => {
            turn.failed("subscription", &e);
            return Next::Done;
        }
    };
    match turn.app.store.set_auto_renew(user, !current, turn.now()).await {
        Ok(true) => turn.say_keys(Msg::AutoRenewSet { state: on_off(!current) }, back()),
        Ok(false) => turn.say_keys(Msg::NoSubscription, back()),
        Err(e) => turn.failed("set_auto_renew", &e),
    }
    Next::Done
}

/// A new key for the user's own subscription, at most once per cooldown.
pub async fn reissue<A: Adapters>(turn: &mut Turn<'_, A>) -> Next {
    if !turn.allow(LimitedAction::KeyReissue).await {
        return Next::Done;
    }
    let user = turn.user();
    reissue_for(turn, user, |key| Msg::Reissued { uri: key.access_uri }, Msg::NoSubscription).await
}

/// Reissues `user`'s key through the shared use case (the Redis lock with fencing) and says how
/// it went: `done` words a success, `none` a user without a subscription.
pub async fn reissue_for<A: Adapters>(
    turn: &mut Turn<'_, A>,
    user: UserId,
    done: impl FnOnce(PanelKey) -> Msg,
    none: Msg,
) -> Next {
    let app = turn.app;
    // Keyed by the update (or the step it answered): delivered again, it reports its reissue.
    let request = turn.key("reissue");
    let (clock, ttl) = (app.clock.as_ref(), app.rules.reissue_lock_ttl);
    let outcome = reissue_key(&app.coordination, &app.store, &app.vpn, clock, user, ttl, Some(request.as_str())).await;
    let msg = match outcome {
        Ok(ReissueOutcome::Reissued { key, .. } | ReissueOutcome::AlreadyReissued { key }) => done(key),
        Ok(ReissueOutcome::Busy) => Msg::ReissueBusy,
        Ok(ReissueOutcome::NoSubscription) => none,
        Ok(ReissueOutcome::Fenced) => Msg::ReissueFenced,
        Ok(ReissueOutcome::TryLater) => Msg::TryLater,
        Err(e) => {
            turn.failed("reissue_key", &e);
            return Next::Done;
        }
    };
    turn.say_keys(msg, back());
    Next::Done
}

/// The one free trial.
pub async fn trial<A: Adapters>(turn: &mut Turn<'_, A>) -> Next {
    if !turn.allow(LimitedAction::TrialActivation).await {
        return Next::Done;
    }
    let days = turn.app.rules.shop.trial_days;
    let tariff = TariffCode::parse(TRIAL_TARIFF).expect("a valid tariff code");
    let msg = match turn.app.store.activate_trial(turn.user(), &tariff, days, turn.now()).await {
        Ok(sub) => {
            tracing::info!(event = "TRIAL_ACTIVATED", days, "trial granted");
            Msg::TrialActivated { days, until: sub.expires_at }
        }
        Err(TrialError::AlreadyUsed) => Msg::TrialUsed,
        Err(TrialError::NotForSubscribers) => Msg::TrialNotForSubscribers,
        Err(TrialError::UserBanned) => Msg::Banned,
        Err(e @ (TrialError::UnknownUser | TrialError::UnknownTariff | TrialError::Unexpected(_))) => {
            turn.failed("activate_trial", &e);
            return Next::Done;
        }
    };
    turn.say_keys(msg, back());
    Next::Done
}
