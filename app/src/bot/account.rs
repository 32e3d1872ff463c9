//! The balance and its top-up by a provider: amount → payment method → processing (a crypto
//! invoice checked on request, or a Telegram Stars invoice paid in the chat).

use serde::{Deserialize, Serialize};

use super::action::{Action, Method, Nav, StepInput};
use super::menu::back;
use super::pay;
use super::state::Step;
use super::text::Msg;
use super::withdraw::amount_error;
use super::{Next, Turn, cancel_keys};
use crate::domain::{AMOUNT_MAX, Money, Payable, ShopPolicy, TopUpId};
use crate::ports::coordination::LimitedAction;
use crate::ports::store::{Accounts, Applied, TopUpError};
use crate::runtime::wiring::Adapters;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopUpStep {
    /// Waiting for the amount.
    Amount,
    Method {
        amount: Money,
    },
    Processing {
        topup: TopUpId,
        method: Method,
    },
}

impl TopUpStep {
    pub fn expects_text(&self) -> bool {
        matches!(self, TopUpStep::Amount)
    }
}

pub async fn balance<A: Adapters>(turn: &mut Turn<'_, A>) -> Next {
    match turn.app.store.user(turn.user()).await {
        Ok(Some(user)) => {
            let keys = vec![
                vec![(Msg::BtnTopUp, Action::Nav(Nav::TopUp)), (Msg::BtnWithdraw, Action::Nav(Nav::Withdraw))],
                vec![(Msg::BtnMenu, Action::Nav(Nav::Menu))],
            ];
            turn.say_keys(Msg::Balance { balance: user.balance }, keys);
        }
        Ok(None) => turn.say_keys(Msg::Balance { balance: Money::ZERO }, back()),
        Err(e) => turn.failed("user", &e),
    }
    Next::Done
}

pub fn top_up_start<A: Adapters>(turn: &mut Turn<'_, A>) -> Next {
    let keys = cancel_keys(turn);
    turn.say_keys(Msg::TopUpAskAmount { min: ShopPolicy::TOPUP_MIN, max: AMOUNT_MAX }, keys);
    Next::Go(Step::TopUp(TopUpStep::Amount))
}

pub async fn top_up_text<A: Adapters>(turn: &mut Turn<'_, A>, step: TopUpStep, text: &str) -> Next {
    if step != TopUpStep::Amount {
        turn.say(Msg::NotUnderstood);
        return Next::Keep;
    }
    let amount = match Money::parse(text) {
        Ok(amount) if amount < ShopPolicy::TOPUP_MIN => Err(Msg::TopUpTooSmall { min: ShopPolicy::TOPUP_MIN }),
        Ok(amount) => Ok(amount),
        Err(e) => Err(amount_error(&e)),
    };
    let amount = match amount {
        Ok(amount) => amount,
        Err(msg) => {
            let keys = cancel_keys(turn);
            turn.say_keys(msg, keys);
            return Next::Go(Step::TopUp(TopUpStep::Amount));
        }
    };
    let keys = vec![
        vec![
            (Msg::BtnPayCrypto, turn.step(StepInput::Pay(Method::Crypto))),
            (Msg::BtnPayStars { stars: turn.app.rules.shop.stars(amount) }, turn.step(StepInput::Pay(Method::Stars))),
        ],
        vec![(Msg::BtnCancel, turn.step(StepInput::Cancel))],
    ];
    turn.say_keys(Msg::TopUpChooseMethod { amount }, keys);
    Next::Go(Step::TopUp(TopUpStep::Method { amount }))
}

pub async fn top_up_input<A: Adapters>(turn: &mut Turn<'_, A>, step: TopUpStep, input: StepInput) -> Next {
    match (step, input) {
        (TopUpStep::Method { amount }, StepInput::Pay(method @ (Method::Crypto | Method::Stars))) => {
            open(turn, amount, method).await
        }
        _ => super::stale(turn),
    }
}

async fn open<A: Adapters>(turn: &mut Turn<'_, A>, amount: Money, method: Method) -> Next {
    let provider = pay::provider(method).expect("a provider method");
    let operation = format!("topup:{}", provider.code());
    if let Err(next) = turn.allow_money(LimitedAction::PaymentAttempt, &operation).await {
        return next;
    }
    let ttl = turn.app.rules.shop.purchase_ttl;
    // One key per method: pressing the other method's button of the same step is another top-up.
    let key = Some(turn.key(&operation));
    let opened = match turn.app.store.create_topup(turn.user(), amount, provider, key, ttl, turn.now()).await {
        Ok(opened) => opened,
        Err(TopUpError::UserBanned) => {
            turn.say(Msg::Banned);
            return Next::Done;
        }
        Err(e) => {
            turn.failed("create_topup", &e);
            return Next::Done;
        }
    };
    if opened.applied == Applied::Done {
        tracing::info!(
            event = "TOPUP_OPENED",
            topup_id = opened.topup.get(),
            amount = amount.minor(),
            provider = provider.code()
        );
    }
    let description = Msg::InvoiceTopUp { amount };
    if !pay::invoice(turn, Payable::TopUp(opened.topup), amount, method, description).await {
        return Next::Done;
    }
    Next::Go(Step::TopUp(TopUpStep::Processing { topup: opened.topup, method }))
}

/// Leaving a top-up while its invoice waits: the top-up is closed, unless its crypto invoice
/// turns out to be paid (a payment that still comes is credited all the same).
pub async fn cancel_top_up<A: Adapters>(turn: &mut Turn<'_, A>, step: TopUpStep) -> pay::Cancelled {
    match step {
        TopUpStep::Processing { topup, method } => pay::cancel(turn, Payable::TopUp(topup), method).await,
        _ => pay::Cancelled::Closed,
    }
}
