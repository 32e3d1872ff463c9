//! The admin tools. The admin list comes from the settings and is checked here, on the server,
//! for every admin step: every command, every callback (whose data is never trusted), every
//! typed answer. A forged attempt gets a clear refusal and is logged with the sender's id. Every
//! admin action counts against the admin limit and writes an audit row with the admin, the target
//! and the correlation id (money actions write theirs in the same statement as the money).

mod broadcast;
mod promos;
mod users;
mod withdrawals;

use serde::{Deserialize, Serialize};

pub use self::withdrawals::decide_keys;
use super::action::{Action, AdminNav, StepInput, UserOp};
use super::state::Step as State;
use super::text::Msg;
use super::{Keys, Next, Turn};
use crate::domain::{UserId, WithdrawalId};
use crate::ports::coordination::LimitedAction;
use crate::ports::store::{AdminAction, AdminTools};
use crate::runtime::wiring::Adapters;
pub use promos::Draft;
pub use users::Adjust;

/// The admin conversations' steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// Waiting for an id or @username to look up.
    FindUser,
    /// AdminDebitBalance (and its credit twin): who, how much, confirm.
    Adjust(Adjust),
    /// Waiting for the user whose key to reissue.
    ReissueUser,
    /// AdminCreatePromocode: code → duration unit → duration value → max uses → percent → confirm.
    CreatePromo(Draft),
    /// Waiting for the code to disable.
    DisablePromo,
    /// Waiting for the broadcast's text.
    BroadcastText,
    BroadcastConfirm {
        text: String,
    },
}

impl Step {
    pub fn expects_text(&self) -> bool {
        match self {
            Step::FindUser | Step::ReissueUser | Step::DisablePromo | Step::BroadcastText => true,
            Step::Adjust(adjust) => adjust.expects_text(),
            Step::CreatePromo(draft) => draft.expects_text(),
            Step::BroadcastConfirm { .. } => false,
        }
    }
}

fn go(step: Step) -> Next {
    Next::Go(State::Admin(step))
}

/// The gate of every admin step: the sender must be on the admin list (checked here, whatever
/// the button said), within the admin limit.
async fn gate<A: Adapters>(turn: &mut Turn<'_, A>, what: &str) -> bool {
    if !turn.is_admin() {
        tracing::warn!(event = "FORGED_ADMIN_ATTEMPT", user_id = turn.user().get(), attempted = what, "not an admin");
        turn.say(Msg::AdminOnly);
        turn.menu();
        return false;
    }
    turn.allow(LimitedAction::AdminCommand).await
}

/// Writes one row of the admin audit log (for actions that move no money).
async fn audit<A: Adapters>(turn: &mut Turn<'_, A>, action: &'static str, target: Option<UserId>) {
    let row = AdminAction { admin: turn.user(), action, target, correlation_id: Some(turn.correlation()) };
    if let Err(e) = turn.app.store.record_admin_action(row, turn.now()).await {
        tracing::error!(error = %e, action, "admin action not written to the audit log");
    }
}

fn menu_keys() -> Keys {
    let a = |msg: Msg, nav: AdminNav| (msg, Action::Admin(nav));
    vec![
        vec![a(Msg::BtnAdminWithdrawals, AdminNav::Withdrawals), a(Msg::BtnAdminFind, AdminNav::FindUser)],
        vec![a(Msg::BtnAdminCredit, AdminNav::Credit), a(Msg::BtnAdminDebit, AdminNav::Debit)],
        vec![a(Msg::BtnAdminNewPromo, AdminNav::NewPromo), a(Msg::BtnAdminDisablePromo, AdminNav::DisablePromo)],
        vec![a(Msg::BtnAdminReissue, AdminNav::Reissue), a(Msg::BtnAdminBroadcast, AdminNav::Broadcast)],
        vec![a(Msg::BtnAdminStats, AdminNav::Stats), (Msg::BtnMenu, Action::Nav(super::action::Nav::Menu))],
    ]
}

/// `/admin`.
pub async fn open<A: Adapters>(turn: &mut Turn<'_, A>) -> Next {
    if !gate(turn, "admin_menu").await {
        return Next::Keep;
    }
    audit(turn, "admin_menu", None).await;
    turn.say_keys(Msg::AdminMenu, menu_keys());
    Next::Done
}

/// A button of the admin menu.
pub async fn nav<A: Adapters>(turn: &mut Turn<'_, A>, nav: AdminNav) -> Next {
    if !gate(turn, "admin_nav").await {
        return Next::Keep;
    }
    match nav {
        AdminNav::Menu => {
            audit(turn, "admin_menu", None).await;
            turn.say_keys(Msg::AdminMenu, menu_keys());
            Next::Done
        }
        AdminNav::Withdrawals => withdrawals::list(turn).await,
        AdminNav::FindUser => users::ask_user(turn, Step::FindUser),
        AdminNav::Credit => users::ask_user(turn, Step::Adjust(Adjust::credit())),
        AdminNav::Debit => users::ask_user(turn, Step::Adjust(Adjust::debit())),
        AdminNav::Reissue => users::ask_user(turn, Step::ReissueUser),
        AdminNav::NewPromo => promos::start(turn),
        AdminNav::DisablePromo => promos::ask_disable(turn),
        AdminNav::Broadcast => broadcast::start(turn),
        AdminNav::Stats => stats(turn).await,
    }
}

/// An admin's decision from a withdrawal's buttons.
pub async fn decide<A: Adapters>(turn: &mut Turn<'_, A>, withdrawal: WithdrawalId, approve: bool) -> Next {
    if !gate(turn, "decide_withdrawal").await {
        return Next::Keep;
    }
    withdrawals::decide(turn, withdrawal, approve).await
}

/// An admin's action from a found user's buttons.
pub async fn user_op<A: Adapters>(turn: &mut Turn<'_, A>, op: UserOp, user: UserId) -> Next {
    if !gate(turn, "user_op").await {
        return Next::Keep;
    }
    users::op(turn, op, user).await
}

pub async fn text<A: Adapters>(turn: &mut Turn<'_, A>, step: Step, text: &str) -> Next {
    if !gate(turn, "admin_text").await {
        return Next::Keep;
    }
    match step {
        Step::FindUser => users::find(turn, text).await,
        Step::Adjust(adjust) => users::adjust_text(turn, adjust, text).await,
        Step::ReissueUser => users::reissue_text(turn, text).await,
        Step::CreatePromo(draft) => promos::text(turn, draft, text),
        Step::DisablePromo => promos::disable(turn, text).await,
        Step::BroadcastText => broadcast::text(turn, text),
        Step::BroadcastConfirm { .. } => {
            turn.say(Msg::NotUnderstood);
            Next::Keep
        }
    }
}

pub async fn input<A: Adapters>(turn: &mut Turn<'_, A>, step: Step, input: StepInput) -> Next {
    if !gate(turn, "admin_step").await {
        return Next::Keep;
    }
    match (step, input) {
        (Step::Adjust(adjust), StepInput::Confirm) => users::adjust_confirm(turn, adjust).await,
        (Step::CreatePromo(draft), input) => promos::input(turn, draft, input).await,
        (Step::BroadcastConfirm { text }, StepInput::Confirm) => broadcast::confirm(turn, &text).await,
        _ => super::stale(turn),
    }
}

async fn stats<A: Adapters>(turn: &mut Turn<'_, A>) -> Next {
    audit(turn, "stats", None).await;
    match turn.app.store.stats(turn.now()).await {
        Ok(s) => {
            let msg = Msg::AdminStats {
                users: s.users,
                active: s.active_subscriptions,
                trials: s.trials,
                pending: s.pending_withdrawals,
                purchases: s.purchases_day,
                revenue: s.revenue_day,
            };
            turn.say_keys(msg, back());
        }
        Err(e) => turn.failed("stats", &e),
    }
    Next::Done
}

/// Back to the admin menu.
fn back() -> Keys {
    vec![vec![(Msg::BtnAdmin, Action::Admin(AdminNav::Menu))]]
}
