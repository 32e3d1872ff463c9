//! Pending withdrawals and the admin's decision. Two admins deciding one withdrawal at once:
//! the store decides it once (only from pending); the other is told it was already decided. The
//! decision carries the update's key, so a redelivered press replays the first decision.

use super::{Keys, Next, Turn, audit, back};
use crate::bot::action::Action;
use crate::bot::text::{Msg, Word};
use crate::domain::{Money, WithdrawalId, WithdrawalStatus};
use crate::ports::store::{Verdict, WithdrawalDecision, WithdrawalError, Withdrawals};
use crate::runtime::wiring::Adapters;

/// How many pending requests one listing shows (oldest first).
const LISTED_MAX: u32 = 10;

/// The approve and reject buttons of a withdrawal.
pub fn decide_keys(withdrawal: WithdrawalId) -> Keys {
    vec![vec![
        (Msg::BtnApprove, Action::Decide { withdrawal, approve: true }),
        (Msg::BtnReject, Action::Decide { withdrawal, approve: false }),
    ]]
}

fn verdict(status: WithdrawalStatus) -> Word {
    Word(match status {
        WithdrawalStatus::Approved => "approved",
        WithdrawalStatus::Rejected | WithdrawalStatus::Pending => "rejected",
    })
}

pub async fn list<A: Adapters>(turn: &mut Turn<'_, A>) -> Next {
    audit(turn, "list_withdrawals", None).await;
    let pending = match turn.app.store.pending_withdrawals(LISTED_MAX).await {
        Ok(pending) => pending,
        Err(e) => {
            turn.failed("pending_withdrawals", &e);
            return Next::Done;
        }
    };
    if pending.is_empty() {
        turn.say_keys(Msg::AdminNoWithdrawals, back());
        return Next::Done;
    }
    for w in pending {
        let msg = Msg::AdminWithdrawal {
            id: w.id.get(),
            user: w.user.get(),
            amount: w.amount,
            requisites: w.requisites.as_str().to_owned(),
            created: w.created_at,
        };
        turn.say_keys(msg, decide_keys(w.id));
    }
    Next::Done
}

pub async fn decide<A: Adapters>(turn: &mut Turn<'_, A>, withdrawal: WithdrawalId, approve: bool) -> Next {
    // The admin limit was counted at the gate.
    if !turn.coordinated_or_later() {
        return Next::Done;
    }
    let decision = WithdrawalDecision {
        withdrawal,
        admin: turn.user(),
        verdict: if approve { Verdict::Approve } else { Verdict::Reject },
        reason: None,
        correlation_id: Some(turn.correlation()),
        idempotency_key: Some(turn.key("decide")),
    };
    let id = withdrawal.get();
    match turn.app.store.decide_withdrawal(decision, turn.now()).await {
        Ok(decided) => {
            turn.say_keys(Msg::AdminDecided { id, verdict: verdict(decided.status) }, back());
            notify(turn, decided.user, id, decided.amount, decided.status).await;
        }
        Err(WithdrawalError::NotPending(status)) => {
            turn.say_keys(Msg::AdminAlreadyDecided { id, verdict: verdict(status) }, back());
        }
        Err(WithdrawalError::UnknownWithdrawal) => turn.say_keys(Msg::AdminUnknownWithdrawal, back()),
        Err(e) => turn.failed("decide_withdrawal", &e),
    }
    Next::Done
}

/// The user hears of the decision (again, when a redelivered decision is replayed: replies are
/// at-least-once).
async fn notify<A: Adapters>(
    turn: &mut Turn<'_, A>,
    user: crate::domain::UserId,
    id: i64,
    amount: Money,
    status: WithdrawalStatus,
) {
    turn.tell(user, Msg::WithdrawDecided { id, amount, verdict: verdict(status) }, Vec::new()).await;
}
