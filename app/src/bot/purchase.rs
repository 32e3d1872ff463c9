//! Buying a period (PurchaseState): tariff → period → payment method (balance, crypto, Telegram
//! Stars) → processing, with an optional promo code (PromoCodeInput, from the menu or from the
//! payment step). Also the Stars payment's pre-checkout answer and its successful payment.
//!
//! Money moves only in the store: a purchase from the balance and the opening of a provider
//! purchase carry the update's key, so a redelivered update pays once; a provider payment counts
//! once by its payment id.

use serde::{Deserialize, Serialize};

use super::action::{Action, Method, Nav, StepInput};
use super::incoming::Payment;
use super::menu::back;
use super::pay;
use super::state::Step as State;
use super::text::Msg;
use super::{Keys, Next, Turn, cancel_keys};
use crate::domain::{Money, Payable, PaymentProviderKind, Percent, PromoCode, PurchaseId, TariffCode, TariffPeriod};
use crate::ports::Messenger;
use crate::ports::coordination::LimitedAction;
use crate::ports::store::{
    Accounts, FinalizeOutcome, PromoError, PromoRefusal, Promos, PurchaseError, PurchaseRequest, Purchases,
    Subscriptions,
};
use crate::runtime::wiring::Adapters;

/// A promo code the user entered and the store accepted, kept for the purchase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promo {
    pub code: PromoCode,
    pub discount: Percent,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    Tariff {
        promo: Option<Promo>,
    },
    Period {
        tariff: TariffCode,
        promo: Option<Promo>,
    },
    Method {
        tariff: TariffCode,
        days: u16,
        promo: Option<Promo>,
        /// A purchase from the balance at this step failed with an unknown outcome: the debit
        /// may have landed. Until the same button settles it (its idempotency key), the step
        /// takes no other way to pay and no promo code, which would buy a second time.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        unconfirmed: bool,
        /// The nonce of the payment step this order began at, when not this one (a promo code
        /// was entered there): the order's purchase key ([`super::Turn::purchase_key`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order: Option<u32>,
    },
    /// Waiting for a promo code typed at the payment step.
    Promo {
        tariff: TariffCode,
        days: u16,
        /// The payment step's order (see `Method`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order: Option<u32>,
    },
    Processing {
        purchase: PurchaseId,
        method: Method,
    },
}

impl Step {
    pub fn expects_text(&self) -> bool {
        matches!(self, Step::Promo { .. })
    }
}

fn go(step: Step) -> Next {
    Next::Go(State::Purchase(step))
}

/// The first step: the tariffs on sale.
pub async fn start<A: Adapters>(turn: &mut Turn<'_, A>, promo: Option<Promo>) -> Next {
    let catalogue = match turn.app.store.catalogue().await {
        Ok(catalogue) => catalogue,
        Err(e) => {
            turn.failed("catalogue", &e);
            return Next::Done;
        }
    };
    let mut tariffs: Vec<&TariffPeriod> = Vec::new();
    for period in &catalogue {
        if !tariffs.iter().any(|t| t.tariff == period.tariff) {
            tariffs.push(period);
        }
    }
    if tariffs.is_empty() {
        turn.say_keys(Msg::NothingOnSale, back());
        return Next::Done;
    }
    let mut keys: Keys = tariffs
        .iter()
        .map(|t| vec![(Msg::BtnTariff { title: t.title.clone() }, turn.step(StepInput::Tariff(t.tariff.clone())))])
        .collect();
    keys.push(vec![(Msg::BtnCancel, turn.step(StepInput::Cancel))]);
    turn.say_keys(Msg::ChooseTariff, keys);
    go(Step::Tariff { promo })
}

/// PromoCodeInput from the menu: the code applies to the purchase that follows.
pub fn promo_start<A: Adapters>(turn: &mut Turn<'_, A>) -> Next {
    let keys = cancel_keys(turn);
    turn.say_keys(Msg::PromoAsk, keys);
    Next::Go(State::PromoInput)
}

pub async fn text<A: Adapters>(turn: &mut Turn<'_, A>, step: Step, text: &str) -> Next {
    match step {
        Step::Promo { tariff, days, order } => promo_entered(turn, Some((tariff, days, order)), text).await,
        _ => {
            turn.say(Msg::NotUnderstood);
            Next::Keep
        }
    }
}

/// A promo code typed: checked (counted against the promo limit), then the purchase goes on:
/// to the tariffs (from the menu) or back to the payment step it was typed at.
pub async fn promo_entered<A: Adapters>(
    turn: &mut Turn<'_, A>,
    at: Option<(TariffCode, u16, Option<u32>)>,
    text: &str,
) -> Next {
    let again = |at: &Option<(TariffCode, u16, Option<u32>)>| match at {
        Some((tariff, days, order)) => go(Step::Promo { tariff: tariff.clone(), days: *days, order: *order }),
        None => Next::Go(State::PromoInput),
    };
    if !turn.allow(LimitedAction::PromoAttempt).await {
        // Said when to retry; the question and its Cancel button stand.
        return Next::Keep;
    }
    let Ok(code) = PromoCode::parse(text) else {
        let keys = cancel_keys(turn);
        turn.say_keys(Msg::PromoInvalid, keys);
        return again(&at);
    };
    let quote = match turn.app.store.validate_promo(turn.user(), &code, turn.now()).await {
        Ok(quote) => quote,
        Err(PromoError::Refused(refusal)) => {
            let keys = cancel_keys(turn);
            turn.say_keys(promo_refusal(refusal), keys);
            return again(&at);
        }
        Err(PromoError::Unexpected(e)) => {
            turn.failed("validate_promo", &e);
            return Next::Done;
        }
    };
    let promo = Promo { code: quote.code, discount: quote.discount };
    match at {
        Some((tariff, days, order)) => method_screen(turn, tariff, days, Some(promo), order).await,
        None => {
            turn.say(Msg::PromoApplied { code: promo.code.to_string(), percent: promo.discount });
            start(turn, Some(promo)).await
        }
    }
}

pub fn promo_refusal(refusal: PromoRefusal) -> Msg {
    match refusal {
        PromoRefusal::NotFound => Msg::PromoNotFound,
        PromoRefusal::Disabled => Msg::PromoDisabled,
        PromoRefusal::Expired => Msg::PromoExpired,
        PromoRefusal::Exhausted => Msg::PromoExhausted,
        PromoRefusal::AlreadyUsedByUser => Msg::PromoUsed,
    }
}

pub async fn input<A: Adapters>(turn: &mut Turn<'_, A>, step: Step, input: StepInput) -> Next {
    match (step, input) {
        (Step::Tariff { promo }, StepInput::Tariff(tariff)) => periods(turn, tariff, promo).await,
        (Step::Period { tariff, promo }, StepInput::Period(days)) => {
            method_screen(turn, tariff, days, promo, None).await
        }
        (Step::Method { tariff, days, promo, unconfirmed, order }, StepInput::Pay(Method::Balance)) => {
            from_balance(turn, Order { tariff, days, promo, began: order }, unconfirmed).await
        }
        (Step::Method { unconfirmed: true, .. }, StepInput::EnterPromo | StepInput::Pay(_)) => {
            turn.say(Msg::PurchaseConfirmFirst);
            Next::Keep
        }
        (Step::Method { tariff, days, order, .. }, StepInput::EnterPromo) => {
            let keys = cancel_keys(turn);
            turn.say_keys(Msg::PromoAsk, keys);
            // The order goes on at the payment step the code leads back to.
            go(Step::Promo { tariff, days, order: turn.order_began(order) })
        }
        (Step::Method { tariff, days, promo, order, .. }, StepInput::Pay(method)) => {
            by_provider(turn, Order { tariff, days, promo, began: order }, method).await
        }
        _ => super::stale(turn),
    }
}

async fn periods_of<A: Adapters>(turn: &mut Turn<'_, A>, tariff: &TariffCode) -> Option<Vec<TariffPeriod>> {
    match turn.app.store.catalogue().await {
        Ok(catalogue) => Some(catalogue.into_iter().filter(|p| &p.tariff == tariff).collect()),
        Err(e) => {
            turn.failed("catalogue", &e);
            None
        }
    }
}

async fn periods<A: Adapters>(turn: &mut Turn<'_, A>, tariff: TariffCode, promo: Option<Promo>) -> Next {
    let Some(periods) = periods_of(turn, &tariff).await else { return Next::Done };
    let Some(first) = periods.first() else {
        turn.say_keys(Msg::PurchaseUnavailable, back());
        return Next::Done;
    };
    let title = first.title.clone();
    let mut keys: Keys = periods
        .iter()
        .filter_map(|p| {
            let days = u16::try_from(p.days).ok()?;
            Some(vec![(Msg::BtnPeriod { days, price: p.price }, turn.step(StepInput::Period(days)))])
        })
        .collect();
    keys.push(vec![(Msg::BtnCancel, turn.step(StepInput::Cancel))]);
    turn.say_keys(Msg::ChoosePeriod { title }, keys);
    go(Step::Period { tariff, promo })
}

/// The price and the ways to pay it.
async fn method_screen<A: Adapters>(
    turn: &mut Turn<'_, A>,
    tariff: TariffCode,
    days: u16,
    promo: Option<Promo>,
    began: Option<u32>,
) -> Next {
    let Some(periods) = periods_of(turn, &tariff).await else { return Next::Done };
    let Some(period) = periods.into_iter().find(|p| p.days == i32::from(days)) else {
        turn.say_keys(Msg::PurchaseUnavailable, back());
        return Next::Done;
    };
    let balance = match turn.app.store.user(turn.user()).await {
        Ok(user) => user.map_or(Money::ZERO, |u| u.balance),
        Err(e) => {
            turn.failed("user", &e);
            return Next::Done;
        }
    };
    let price = promo.as_ref().map_or(period.price, |p| p.discount.discount(period.price));
    let title = period.title.clone();
    let msg = match &promo {
        Some(p) => Msg::ChooseMethodPromo {
            title,
            days,
            price,
            full: period.price,
            code: p.code.to_string(),
            percent: p.discount,
        },
        None => Msg::ChooseMethod { title, days, price },
    };
    let mut keys = vec![vec![(Msg::BtnPayBalance { balance }, turn.step(StepInput::Pay(Method::Balance)))]];
    if !price.is_zero() {
        keys.push(vec![
            (Msg::BtnPayCrypto, turn.step(StepInput::Pay(Method::Crypto))),
            (Msg::BtnPayStars { stars: turn.app.rules.shop.stars(price) }, turn.step(StepInput::Pay(Method::Stars))),
        ]);
    }
    let mut last = vec![(Msg::BtnCancel, turn.step(StepInput::Cancel))];
    if promo.is_none() {
        last.insert(0, (Msg::BtnEnterPromo, turn.step(StepInput::EnterPromo)));
    }
    keys.push(last);
    turn.say_keys(msg, keys);
    go(Step::Method { tariff, days, promo, unconfirmed: false, order: began })
}

/// What a payment step sells, and where its order began (see [`Step::Method`]).
struct Order {
    tariff: TariffCode,
    days: u16,
    promo: Option<Promo>,
    began: Option<u32>,
}

fn request<A: Adapters>(turn: &Turn<'_, A>, order: &Order) -> PurchaseRequest {
    PurchaseRequest {
        user: turn.user(),
        tariff: order.tariff.clone(),
        days: i32::from(order.days),
        promo: order.promo.as_ref().map(|p| p.code.clone()),
        // One key for the order whatever the way to pay: the same button replays its purchase,
        // another way to pay is refused (an instance that died after the purchase landed leaves
        // the step's buttons live, and the user, told nothing, may pick another way).
        idempotency_key: Some(turn.purchase_key(order.began)),
    }
}

/// A refusal of the store while buying: what the user is told, and where the conversation goes.
async fn refused<A: Adapters>(turn: &mut Turn<'_, A>, e: PurchaseError, order: Order) -> Next {
    let Order { tariff, days, promo, began } = order;
    match e {
        PurchaseError::InsufficientBalance => {
            let balance = turn.app.store.user(turn.user()).await.ok().flatten().map_or(Money::ZERO, |u| u.balance);
            let price =
                turn.app.store.catalogue().await.ok().and_then(|c| {
                    c.into_iter().find(|p| p.tariff == tariff && p.days == i32::from(days)).map(|p| p.price)
                });
            let keys = vec![vec![(Msg::BtnTopUp, Action::Nav(Nav::TopUp)), (Msg::BtnMenu, Action::Nav(Nav::Menu))]];
            turn.say_keys(Msg::InsufficientBalance { price: price.unwrap_or(Money::ZERO), balance }, keys);
            Next::Done
        }
        // Nothing was bought under the order's key (a purchase under it would have answered
        // first): the order goes on without the code.
        PurchaseError::Promo(refusal) => {
            turn.say(promo_refusal(refusal));
            method_screen(turn, tariff, days, None, turn.order_began(began)).await
        }
        PurchaseError::NothingToPay => {
            turn.say(Msg::FreeUseBalance);
            method_screen(turn, tariff, days, None, turn.order_began(began)).await
        }
        PurchaseError::UnknownTariff => {
            turn.say_keys(Msg::PurchaseUnavailable, back());
            Next::Done
        }
        PurchaseError::UserBanned => {
            turn.say(Msg::Banned);
            Next::Done
        }
        // An earlier press of this order paid it (or opened it for payment) another way or
        // before a code was entered, and its answer was lost: nothing more is charged; the step
        // stays, so that the way chosen first can be pressed again to finish (its purchase
        // answers again). Not unconfirmed any more: the key's purchase is another way's, or the
        // balance's with another code (bought before the code was entered, and just said), so
        // the step's buttons are not held for an unknown one.
        PurchaseError::PaidAnotherWay => {
            turn.say_keys(Msg::PurchasePaidAnotherWay, subscription_keys());
            Next::Amend(State::Purchase(Step::Method { tariff, days, promo, unconfirmed: false, order: began }))
        }
        e @ (PurchaseError::UnknownUser | PurchaseError::IdempotencyKeyReused) => {
            turn.failed("purchase", &e);
            Next::Done
        }
        // The store failed or did not answer in time (opening a provider's invoice: nothing
        // is paid until the invoice is): the same button opens the same purchase.
        e @ PurchaseError::Unexpected(_) => {
            turn.failed("purchase", &e);
            Next::Keep
        }
    }
}

async fn from_balance<A: Adapters>(turn: &mut Turn<'_, A>, order: Order, unconfirmed: bool) -> Next {
    if let Err(next) = turn.allow_money(LimitedAction::PaymentAttempt, "buy").await {
        // An unconfirmed purchase keeps its step whatever the limit says: only its button
        // settles it.
        return if unconfirmed { Next::Keep } else { next };
    }
    match turn.app.store.purchase_from_balance(request(turn, &order), turn.now()).await {
        Ok(bought) => {
            reward_referrer(turn, bought.purchase_id).await;
            let msg = Msg::Purchased { until: bought.expires_at, amount: bought.amount, balance: bought.balance };
            turn.say_keys(msg, subscription_keys());
            Next::Done
        }
        // The store failed or did not answer in time, so the debit may have landed: the user is
        // not told "nothing was charged" but to press the same button again, and that press
        // buys once (the order's key) whether or not the first try landed. Meanwhile the step
        // refuses the other ways to pay and a promo code (Amend keeps its buttons live). Found
        // by the simulation: an instance frozen past its store call's timeout ended the
        // purchase, and the same button was then "no longer active".
        Err(e @ PurchaseError::Unexpected(_)) => {
            turn.failed_saying("purchase", &e, Msg::PurchaseUnconfirmed);
            let Order { tariff, days, promo, began } = order;
            Next::Amend(State::Purchase(Step::Method { tariff, days, promo, unconfirmed: true, order: began }))
        }
        Err(e) => refused(turn, e, order).await,
    }
}

pub fn subscription_keys() -> Keys {
    vec![vec![(Msg::BtnSubscription, Action::Nav(Nav::Subscription)), (Msg::BtnMenu, Action::Nav(Nav::Menu))]]
}

async fn by_provider<A: Adapters>(turn: &mut Turn<'_, A>, order: Order, method: Method) -> Next {
    let provider = pay::provider(method).expect("a provider method");
    let operation = format!("open:{}", provider.code());
    if let Err(next) = turn.allow_money(LimitedAction::PaymentAttempt, &operation).await {
        return next;
    }
    let ttl = turn.app.rules.shop.purchase_ttl;
    let pending = match turn.app.store.create_pending_purchase(request(turn, &order), provider, ttl, turn.now()).await {
        Ok(pending) => pending,
        Err(e) => return refused(turn, e, order).await,
    };
    let description = Msg::InvoicePurchase { days: order.days };
    if !pay::invoice(turn, Payable::Purchase(pending.purchase_id), pending.amount, method, description).await {
        return Next::Done;
    }
    go(Step::Processing { purchase: pending.purchase_id, method })
}

/// The buyer's referrer gets their share of a paid purchase (once per purchase, whoever asks).
async fn reward_referrer<A: Adapters>(turn: &mut Turn<'_, A>, purchase: PurchaseId) {
    let percent = turn.app.rules.shop.referral_percent;
    if let Err(e) = turn.app.store.grant_referral_reward(purchase, percent, turn.now()).await {
        tracing::warn!(error = %e, purchase_id = purchase.get(), "referral reward not granted");
    }
}

/// What a finalized purchase tells its buyer.
pub(super) async fn finalized<A: Adapters>(
    turn: &mut Turn<'_, A>,
    purchase: PurchaseId,
    outcome: FinalizeOutcome,
    amount: Money,
) {
    match outcome {
        FinalizeOutcome::Finalized { expires_at } => {
            reward_referrer(turn, purchase).await;
            turn.say_keys(Msg::Paid { until: expires_at }, subscription_keys());
        }
        // Counted before (a redelivery, a second check): said again as it was the first time.
        FinalizeOutcome::Duplicate { to_balance: false } => {
            reward_referrer(turn, purchase).await;
            match turn.app.store.subscription(turn.user()).await {
                Ok(Some(sub)) => turn.say_keys(Msg::Paid { until: sub.expires_at }, subscription_keys()),
                Ok(None) => turn.failed("subscription", &"a paid purchase without a subscription"),
                Err(e) => turn.failed("subscription", &e),
            }
        }
        FinalizeOutcome::Duplicate { to_balance: true } | FinalizeOutcome::CreditedToBalance => {
            turn.say_keys(Msg::PaidToBalance { amount }, back());
        }
    }
}

/// Leaving a purchase while its invoice waits: the purchase is cancelled and its promo use given
/// back, unless its crypto invoice turns out to be paid.
pub async fn cancel<A: Adapters>(turn: &mut Turn<'_, A>, step: Step) -> pay::Cancelled {
    match step {
        Step::Processing { purchase, method } => pay::cancel(turn, Payable::Purchase(purchase), method).await,
        // Not "Cancelled.": the purchase from the balance may have gone through before.
        Step::Method { unconfirmed: true, .. } => {
            turn.say(Msg::CancelledUnconfirmed);
            pay::Cancelled::ClosedUnsure
        }
        _ => pay::Cancelled::Closed,
    }
}

/// Telegram asks whether a Stars invoice may still be paid: yes only when what it pays for is
/// still pending, not expired, the payer's own, and the price matches.
pub async fn pre_checkout<A: Adapters>(
    turn: &mut Turn<'_, A>,
    query_id: &str,
    payload: &str,
    currency: &str,
    total: u32,
) {
    let bill = match Payable::from_payload(payload) {
        Some(payable) => pay::bill(turn, payable).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "bill not read; the payment is refused and can be tried again");
            None
        }),
        None => None,
    };
    let ok = bill.is_some_and(|bill| {
        bill.payable_by(turn.user(), PaymentProviderKind::Stars, turn.now())
            && currency == pay::STARS_CURRENCY
            && total == turn.app.rules.shop.stars(bill.amount)
    });
    let refusal = (!ok).then(|| turn.text(&Msg::PreCheckoutRefused));
    if !ok {
        tracing::info!(event = "PRE_CHECKOUT_REFUSED", payload_len = payload.len(), "invoice not payable");
    }
    if let Err(e) = turn.app.messenger.answer_pre_checkout(query_id, refusal.as_deref()).await {
        tracing::warn!(error = %e, "pre-checkout not answered");
    }
}

/// A payment that cannot be counted: given back when it is in Stars, otherwise left for support.
async fn refund_if_stars<A: Adapters>(
    turn: &mut Turn<'_, A>,
    payload: &str,
    payment: &Payment,
    why: &(dyn std::fmt::Display + Sync),
) {
    if payment.currency == pay::STARS_CURRENCY {
        pay::refund_stars(turn, payload, &payment.charge_id, why).await;
    } else {
        pay::unmatched(turn, payload, &payment.charge_id, why);
    }
}

/// A Stars payment went through: counted once by its charge id, for the purchase or top-up its
/// payload names. The conversation waiting for it ends. Telegram has taken the Stars and will
/// not send this update again once it is handled: when the store cannot be asked, the update
/// is handed back to be delivered again ([`Next::Retry`]) rather than lost.
pub async fn paid<A: Adapters>(turn: &mut Turn<'_, A>, step: Option<State>, payment: &Payment) -> Next {
    let Some(payable) = Payable::from_payload(&payment.payload) else {
        let payload: String = payment.payload.chars().take(128).collect();
        refund_if_stars(turn, &payload, payment, &"a payload that is not ours").await;
        return Next::Keep;
    };
    let expected = match pay::bill(turn, payable).await {
        Ok(bill) => bill.map(|b| b.amount),
        Err(e) => {
            tracing::warn!(error = %e, payable = %payable.payload(), "payment not counted yet: the store failed");
            return Next::Retry;
        }
    };
    let provider_payment = expected
        .and_then(|expected| pay::stars_payment(turn, &payment.currency, payment.total, &payment.charge_id, expected));
    let Some(provider_payment) = provider_payment else {
        let why = "for nothing known, or in another currency";
        refund_if_stars(turn, &payable.payload(), payment, &why).await;
        return Next::Keep;
    };
    if pay::settle(turn, payable, provider_payment).await == pay::Settled::StoreFailed {
        return Next::Retry;
    }
    if step.is_some_and(|step| step.waits_for(payable)) { Next::Done } else { Next::Keep }
}
