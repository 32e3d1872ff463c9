//! Withdrawing from the balance (WithdrawStates): amount → confirm → requisites → final confirm.
//! The minimum comes from the shop policy. The balance is looked at when the user names the
//! amount (to say so early) and checked again by the store at the final step, under the user's
//! lock: whatever happened in between, a request never holds more than the balance. The request
//! carries the update's key, so a redelivered final confirmation creates one request. Admins are
//! told at once, with the buttons to decide.

use serde::{Deserialize, Serialize};

use super::action::StepInput;
use super::menu::back;
use super::state::Step as State;
use super::text::Msg;
use super::{Next, Turn, cancel_keys, confirm_keys};
use crate::domain::{
    AMOUNT_MAX, AmountError, Money, REQUISITES_LEN_MAX, REQUISITES_LEN_MIN, Requisites, RequisitesError,
};
use crate::ports::coordination::LimitedAction;
use crate::ports::store::{Accounts, WithdrawalError, Withdrawals};
use crate::runtime::wiring::Adapters;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// Waiting for the amount.
    Amount,
    Confirm {
        amount: Money,
    },
    /// Waiting for the card or wallet.
    Requisites {
        amount: Money,
    },
    FinalConfirm {
        amount: Money,
        requisites: Requisites,
    },
}

impl Step {
    pub fn expects_text(&self) -> bool {
        matches!(self, Step::Amount | Step::Requisites { .. })
    }
}

fn go(step: Step) -> Next {
    Next::Go(State::Withdraw(step))
}

/// What an amount that does not parse gets as an answer.
pub fn amount_error(e: &AmountError) -> Msg {
    match e {
        AmountError::Empty => Msg::AmountEmpty,
        AmountError::NotANumber => Msg::AmountNotNumber,
        AmountError::Zero => Msg::AmountZero,
        AmountError::Negative => Msg::AmountNegative,
        AmountError::TooLarge => Msg::AmountTooLarge { max: AMOUNT_MAX },
        AmountError::TooManyDecimals => Msg::AmountTooPrecise,
    }
}

async fn balance<A: Adapters>(turn: &mut Turn<'_, A>) -> Option<Money> {
    match turn.app.store.user(turn.user()).await {
        Ok(user) => Some(user.map_or(Money::ZERO, |u| u.balance)),
        Err(e) => {
            turn.failed("user", &e);
            None
        }
    }
}

pub async fn start<A: Adapters>(turn: &mut Turn<'_, A>) -> Next {
    let Some(balance) = balance(turn).await else { return Next::Done };
    let min = turn.app.rules.shop.withdrawal_min;
    if balance < min {
        turn.say_keys(Msg::WithdrawBalanceTooLow { balance, min }, back());
        return Next::Done;
    }
    let keys = cancel_keys(turn);
    turn.say_keys(Msg::WithdrawAskAmount { balance, min }, keys);
    go(Step::Amount)
}

pub async fn text<A: Adapters>(turn: &mut Turn<'_, A>, step: Step, text: &str) -> Next {
    match step {
        Step::Amount => amount(turn, text).await,
        Step::Requisites { amount } => requisites(turn, amount, text),
        other => {
            // A confirmation step waits for a button, not for text.
            turn.say(Msg::NotUnderstood);
            show(turn, other)
        }
    }
}

async fn amount<A: Adapters>(turn: &mut Turn<'_, A>, text: &str) -> Next {
    let min = turn.app.rules.shop.withdrawal_min;
    let refusal = match Money::parse(text) {
        Err(e) => Some(amount_error(&e)),
        Ok(amount) if amount < min => Some(Msg::WithdrawBelowMin { min }),
        Ok(amount) => {
            let Some(balance) = balance(turn).await else { return Next::Done };
            if amount > balance {
                Some(Msg::WithdrawAboveBalance { balance })
            } else {
                return show(turn, Step::Confirm { amount });
            }
        }
    };
    let keys = cancel_keys(turn);
    turn.say_keys(refusal.expect("set on every refusing path"), keys);
    go(Step::Amount)
}

fn requisites<A: Adapters>(turn: &mut Turn<'_, A>, amount: Money, text: &str) -> Next {
    match Requisites::parse(text) {
        Ok(requisites) => show(turn, Step::FinalConfirm { amount, requisites }),
        Err(e) => {
            let msg = match e {
                RequisitesError::Length => {
                    Msg::RequisitesLength { min: REQUISITES_LEN_MIN as u64, max: REQUISITES_LEN_MAX as u64 }
                }
                RequisitesError::ControlCharacters => Msg::RequisitesControl,
            };
            let keys = cancel_keys(turn);
            turn.say_keys(msg, keys);
            go(Step::Requisites { amount })
        }
    }
}

/// Shows a step's question (with fresh buttons).
fn show<A: Adapters>(turn: &mut Turn<'_, A>, step: Step) -> Next {
    match &step {
        Step::Amount => {
            let keys = cancel_keys(turn);
            turn.say_keys(Msg::SendText, keys);
        }
        Step::Confirm { amount } => {
            let keys = confirm_keys(turn);
            turn.say_keys(Msg::WithdrawConfirmAmount { amount: *amount }, keys);
        }
        Step::Requisites { .. } => {
            let keys = cancel_keys(turn);
            turn.say_keys(Msg::WithdrawAskRequisites, keys);
        }
        Step::FinalConfirm { amount, requisites } => {
            let keys = confirm_keys(turn);
            let msg = Msg::WithdrawFinalConfirm { amount: *amount, requisites: requisites.as_str().to_owned() };
            turn.say_keys(msg, keys);
        }
    }
    go(step)
}

pub async fn input<A: Adapters>(turn: &mut Turn<'_, A>, step: Step, input: StepInput) -> Next {
    match (step, input) {
        (Step::Confirm { amount }, StepInput::Confirm) => show(turn, Step::Requisites { amount }),
        (Step::FinalConfirm { amount, requisites }, StepInput::Confirm) => create(turn, amount, requisites).await,
        _ => super::stale(turn),
    }
}

/// The final confirmation: the request, under the store's own balance check.
async fn create<A: Adapters>(turn: &mut Turn<'_, A>, amount: Money, requisites: Requisites) -> Next {
    if let Err(next) = turn.allow_money(LimitedAction::WithdrawalRequest, "withdraw").await {
        return next;
    }
    let min = turn.app.rules.shop.withdrawal_min;
    let key = Some(turn.key("withdraw"));
    let created =
        match turn.app.store.create_withdrawal(turn.user(), amount, requisites.clone(), min, key, turn.now()).await {
            Ok(created) => created,
            Err(e) => {
                let msg = match e {
                    WithdrawalError::InsufficientBalance => {
                        let balance = balance(turn).await.unwrap_or(Money::ZERO);
                        Msg::WithdrawAboveBalance { balance }
                    }
                    WithdrawalError::BelowMinimum => Msg::WithdrawBelowMin { min },
                    WithdrawalError::UserBanned => Msg::Banned,
                    other => {
                        turn.failed("create_withdrawal", &other);
                        return Next::Done;
                    }
                };
                turn.say_keys(msg, back());
                return Next::Done;
            }
        };
    let id = created.withdrawal.get();
    turn.say_keys(Msg::WithdrawCreated { id, amount, balance: created.balance }, back());
    // Also when the store answers with an earlier press's request: that press may have died
    // before its messages went out, and admins must hear of every request (at least once).
    notify_admins(turn, created.withdrawal, amount, &requisites).await;
    Next::Done
}

async fn notify_admins<A: Adapters>(
    turn: &mut Turn<'_, A>,
    withdrawal: crate::domain::WithdrawalId,
    amount: Money,
    requisites: &Requisites,
) {
    let admins = turn.app.rules.admins.clone();
    for admin in admins {
        let msg = Msg::AdminWithdrawal {
            id: withdrawal.get(),
            user: turn.user().get(),
            amount,
            requisites: requisites.as_str().to_owned(),
            created: turn.now(),
        };
        let keys = super::admin::decide_keys(withdrawal);
        turn.tell(admin, msg, keys).await;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever a person types, the amount parser answers (a value or a reason) and never
        /// panics; what it accepts is positive, at most the maximum, and prints back to itself.
        #[test]
        fn amounts_parse_or_say_why(text in "\\PC{0,40}") {
            if let Ok(amount) = Money::parse(&text) {
                prop_assert!(amount.minor() > 0 && amount <= AMOUNT_MAX);
                prop_assert_eq!(Money::parse(&amount.to_string()), Ok(amount));
            }
        }

        /// Numbers as people type them, against an independent reading in 128-bit arithmetic.
        #[test]
        fn numeric_looking_amounts_read_as_written(sign in "[-+]?", whole in "[0-9]{0,12}", sep in "[.,]?", frac in "[0-9]{0,4}") {
            let frac = if sep.is_empty() { String::new() } else { frac };
            let text = format!("{sign}{whole}{sep}{frac}");
            let expected = if text.is_empty() {
                Err(AmountError::Empty)
            } else if whole.is_empty() && frac.is_empty() {
                Err(AmountError::NotANumber)
            } else if frac.len() > 2 {
                Err(AmountError::TooManyDecimals)
            } else {
                let value = |s: &str| if s.is_empty() { 0 } else { s.parse::<i128>().unwrap() };
                let minor = value(&whole) * 100 + value(&format!("{frac:0<2}"));
                if sign == "-" && minor != 0 {
                    Err(AmountError::Negative)
                } else if minor == 0 {
                    Err(AmountError::Zero)
                } else if minor > i128::from(AMOUNT_MAX.minor()) {
                    Err(AmountError::TooLarge)
                } else {
                    Ok(minor)
                }
            };
            prop_assert_eq!(Money::parse(&text).map(|m| i128::from(m.minor())), expected.clone(), "{:?}", text);
            if let Err(e) = expected {
                // Every refusal has its own words.
                let _reply: Msg = amount_error(&e);
            }
        }

        /// Requisites, with control characters, direction marks and overrides mixed in: what is
        /// accepted is within the length bounds and cannot reorder how it is displayed.
        #[test]
        fn requisites_parse_or_say_why(text in "(\\PC|[\\x00-\\x1f\\x7f\\x{200E}\\x{200F}\\x{202A}-\\x{202E}\\x{2066}-\\x{2069}]){0,300}") {
            let has_bad = text.trim().chars().any(|c| c.is_control() || ('\u{202A}'..='\u{202E}').contains(&c) || ('\u{2066}'..='\u{2069}').contains(&c));
            match Requisites::parse(&text) {
                Ok(r) => {
                    let len = r.as_str().chars().count();
                    prop_assert!((REQUISITES_LEN_MIN..=REQUISITES_LEN_MAX).contains(&len));
                    prop_assert!(!has_bad, "accepted {:?}", text);
                }
                Err(RequisitesError::ControlCharacters) => prop_assert!(has_bad),
                Err(RequisitesError::Length) => {
                    prop_assert!(!(REQUISITES_LEN_MIN..=REQUISITES_LEN_MAX).contains(&text.trim().chars().count()));
                }
            }
        }
    }

    #[test]
    fn odd_amounts_are_refused() {
        for text in ["1e3", "١٢٣", "\u{200F}150", "", "   ", "-0.01", "150.001", "99999999999"] {
            assert!(Money::parse(text).is_err(), "{text:?}");
        }
    }
}
