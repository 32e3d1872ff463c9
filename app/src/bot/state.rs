//! The conversation state: one serde enum, each variant carrying its data, stored in the FSM
//! record by the intake function (versioned envelope, `coord::fsm`). The record also keeps the
//! user's language, so most updates need no database read to answer in it.

use serde::{Deserialize, Serialize};

use super::{account, admin, purchase, withdraw};
use crate::domain::Language;

/// What the FSM record of a user holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub lang: Language,
    /// `None`: at the main menu.
    pub conversation: Option<Conversation>,
}

/// A conversation in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// The nonce of the step's message: its buttons carry it, and a button with another nonce is
    /// stale (from an earlier step or conversation).
    pub nonce: u32,
    pub step: Step,
}

/// Every conversation's steps. Changing a variant incompatibly means bumping `coord::fsm`'s
/// `FSM_FORMAT`: old records then reset the user to the menu with an apology.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "c", content = "s", rename_all = "snake_case")]
pub enum Step {
    /// PurchaseState: tariff → period → payment method → processing.
    Purchase(purchase::Step),
    /// PromoCodeInput: waiting for a code, for the purchase that follows.
    PromoInput,
    /// A top-up of the balance: amount → method → processing.
    TopUp(account::TopUpStep),
    /// WithdrawStates: amount → confirm → requisites → final confirm.
    Withdraw(withdraw::Step),
    /// The admin tools' conversations.
    Admin(admin::Step),
}

impl Step {
    /// Whether this is a purchase from the balance whose outcome is not known yet.
    pub fn unconfirmed_purchase(&self) -> bool {
        matches!(self, Step::Purchase(purchase::Step::Method { unconfirmed: true, .. }))
    }

    /// Whether this is the step waiting for `payable`'s payment.
    pub fn waits_for(&self, payable: crate::domain::Payable) -> bool {
        use crate::domain::Payable;
        match (self, payable) {
            (Step::Purchase(purchase::Step::Processing { purchase, .. }), Payable::Purchase(id)) => *purchase == id,
            (Step::TopUp(account::TopUpStep::Processing { topup, .. }), Payable::TopUp(id)) => *topup == id,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coord::fsm::{self, Loaded};
    use crate::domain::{Money, Requisites};
    use crate::ports::coordination::FsmRecord;

    #[test]
    fn a_record_round_trips_through_the_fsm_envelope() {
        let record = Record {
            lang: Language::En,
            conversation: Some(Conversation {
                nonce: 77,
                step: Step::Withdraw(withdraw::Step::FinalConfirm {
                    amount: Money::positive(50_000).unwrap(),
                    requisites: Requisites::parse("4276 0000 1111 2222").unwrap(),
                }),
            }),
        };
        let bytes = fsm::encode(&record).unwrap();
        let stored = FsmRecord { version: 1, data: Some(bytes) };
        assert_eq!(fsm::decode::<Record>(&stored), Loaded::Resumed(record));
        // A record written by an older bot that no longer decodes resets the user.
        let old = FsmRecord {
            version: 1,
            data: Some(br#"{"f":1,"s":{"lang":"en","conversation":{"nonce":1,"step":{"c":"gone"}}}}"#.to_vec()),
        };
        assert_eq!(fsm::decode::<Record>(&old), Loaded::Reset);
    }
}
