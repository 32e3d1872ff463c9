//! Creating a promo code (AdminCreatePromocode: code → duration unit → duration value → max
//! uses → discount percent → confirm) and disabling one. Every answer is parsed before the next
//! question; the code is written once, at the confirmation, with its audit row.

use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use super::{Next, Step, Turn, back, go};
use crate::bot::action::{PromoUnit, StepInput};
use crate::bot::text::{Msg, Word};
use crate::bot::{cancel_keys, confirm_keys};
use crate::domain::{Percent, PromoCode};
use crate::ports::store::{Applied, NewPromo, PromoCreateError, PromoDisableError, Promos};
use crate::runtime::wiring::Adapters;

/// The longest validity an admin may give a code, in hours or days.
const VALIDITY_MAX: u32 = 3_650;
/// The most uses an admin may give a code (more is "unlimited").
const USES_MAX: u32 = 1_000_000;

/// How long a code is valid: a number of hours or days from its creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    pub unit: PromoUnit,
    pub value: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Draft {
    Code,
    Unit { code: PromoCode },
    Value { code: PromoCode, unit: PromoUnit },
    MaxUses { code: PromoCode, validity: Option<Validity> },
    Percent { code: PromoCode, validity: Option<Validity>, max_uses: Option<u32> },
    Confirm { code: PromoCode, validity: Option<Validity>, max_uses: Option<u32>, percent: Percent },
}

impl Draft {
    pub fn expects_text(&self) -> bool {
        matches!(self, Draft::Code | Draft::Value { .. } | Draft::MaxUses { .. } | Draft::Percent { .. })
    }
}

fn step(draft: Draft) -> Next {
    go(Step::CreatePromo(draft))
}

/// A whole number from 1 to `max`, as typed.
fn count(text: &str, max: u32) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() || text.len() > 10 || !text.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    text.parse::<u32>().ok().filter(|n| (1..=max).contains(n))
}

pub fn start<A: Adapters>(turn: &mut Turn<'_, A>) -> Next {
    let keys = cancel_keys(turn);
    turn.say_keys(Msg::AdminPromoAskCode, keys);
    step(Draft::Code)
}

/// Asks the question of `draft` (with fresh buttons).
fn ask<A: Adapters>(turn: &mut Turn<'_, A>, draft: Draft) -> Next {
    match &draft {
        Draft::Code => {
            let keys = cancel_keys(turn);
            turn.say_keys(Msg::AdminPromoAskCode, keys);
        }
        Draft::Unit { .. } => {
            let unit = |u: PromoUnit, w: &'static str| (Msg::BtnUnit { unit: Word(w) }, turn.step(StepInput::Unit(u)));
            let keys = vec![
                vec![unit(PromoUnit::Hours, "hours"), unit(PromoUnit::Days, "days"), unit(PromoUnit::Never, "never")],
                vec![(Msg::BtnCancel, turn.step(StepInput::Cancel))],
            ];
            turn.say_keys(Msg::AdminPromoAskUnit, keys);
        }
        Draft::Value { unit, .. } => {
            let keys = cancel_keys(turn);
            let unit = Word(if *unit == PromoUnit::Hours { "hours" } else { "days" });
            turn.say_keys(Msg::AdminPromoAskValue { unit }, keys);
        }
        Draft::MaxUses { .. } => {
            let keys = vec![vec![
                (Msg::BtnUnlimited, turn.step(StepInput::Unlimited)),
                (Msg::BtnCancel, turn.step(StepInput::Cancel)),
            ]];
            turn.say_keys(Msg::AdminPromoAskMaxUses, keys);
        }
        Draft::Percent { .. } => {
            let keys = cancel_keys(turn);
            turn.say_keys(Msg::AdminPromoAskPercent, keys);
        }
        Draft::Confirm { code, validity, max_uses, percent } => {
            let uses = max_uses.map_or_else(|| turn.text(&Msg::Unlimited), |n| n.to_string());
            let expires = match validity {
                Some(v) => expires_at(turn.now(), *v).format("%Y-%m-%d %H:%M UTC").to_string(),
                None => turn.text(&Msg::NoExpiry),
            };
            let keys = confirm_keys(turn);
            let msg = Msg::AdminPromoConfirm { code: code.to_string(), percent: *percent, uses, expires };
            turn.say_keys(msg, keys);
        }
    }
    step(draft)
}

fn expires_at(now: chrono::DateTime<chrono::Utc>, validity: Validity) -> chrono::DateTime<chrono::Utc> {
    let value = i64::from(validity.value);
    match validity.unit {
        PromoUnit::Hours => now + chrono::Duration::hours(value),
        PromoUnit::Days | PromoUnit::Never => now + chrono::Duration::days(value),
    }
}

/// A refusal of a typed answer: the reason, and the same question again.
fn again<A: Adapters>(turn: &mut Turn<'_, A>, msg: Msg, draft: Draft) -> Next {
    turn.say(msg);
    ask(turn, draft)
}

pub fn text<A: Adapters>(turn: &mut Turn<'_, A>, draft: Draft, text: &str) -> Next {
    match draft {
        Draft::Code => match PromoCode::parse(text) {
            Ok(code) => ask(turn, Draft::Unit { code }),
            Err(_) => again(turn, Msg::AdminPromoCodeInvalid, Draft::Code),
        },
        Draft::Value { code, unit } => match count(text, VALIDITY_MAX) {
            Some(value) => ask(turn, Draft::MaxUses { code, validity: Some(Validity { unit, value }) }),
            None => again(turn, Msg::AdminPromoValueInvalid, Draft::Value { code, unit }),
        },
        Draft::MaxUses { code, validity } => match count(text, USES_MAX) {
            Some(n) => ask(turn, Draft::Percent { code, validity, max_uses: Some(n) }),
            None => again(turn, Msg::AdminPromoMaxUsesInvalid, Draft::MaxUses { code, validity }),
        },
        Draft::Percent { code, validity, max_uses } => {
            match Percent::parse(text).ok().filter(|p| *p != Percent::ZERO) {
                Some(percent) => ask(turn, Draft::Confirm { code, validity, max_uses, percent }),
                None => again(turn, Msg::AdminPromoPercentInvalid, Draft::Percent { code, validity, max_uses }),
            }
        }
        other => {
            turn.say(Msg::NotUnderstood);
            ask(turn, other)
        }
    }
}

pub async fn input<A: Adapters>(turn: &mut Turn<'_, A>, draft: Draft, input: StepInput) -> Next {
    match (draft, input) {
        (Draft::Unit { code }, StepInput::Unit(PromoUnit::Never)) => ask(turn, Draft::MaxUses { code, validity: None }),
        (Draft::Unit { code }, StepInput::Unit(unit)) => ask(turn, Draft::Value { code, unit }),
        (Draft::MaxUses { code, validity }, StepInput::Unlimited) => {
            ask(turn, Draft::Percent { code, validity, max_uses: None })
        }
        (Draft::Confirm { code, validity, max_uses, percent }, StepInput::Confirm) => {
            create(turn, code, validity, max_uses, percent).await
        }
        _ => crate::bot::stale(turn),
    }
}

async fn create<A: Adapters>(
    turn: &mut Turn<'_, A>,
    code: PromoCode,
    validity: Option<Validity>,
    max_uses: Option<u32>,
    percent: Percent,
) -> Next {
    let promo = NewPromo {
        code: code.clone(),
        discount: percent,
        max_uses: max_uses.and_then(NonZeroU32::new),
        expires_at: validity.map(|v| expires_at(turn.now(), v)),
        created_by: turn.user(),
        correlation_id: Some(turn.correlation()),
    };
    let msg = match turn.app.store.create_promo(promo, turn.now()).await {
        Ok(()) => Msg::AdminPromoCreated { code: code.to_string() },
        Err(PromoCreateError::AlreadyExists) => Msg::AdminPromoExists { code: code.to_string() },
        Err(e) => {
            turn.failed("create_promo", &e);
            return Next::Done;
        }
    };
    turn.say_keys(msg, back());
    Next::Done
}

pub fn ask_disable<A: Adapters>(turn: &mut Turn<'_, A>) -> Next {
    let keys = cancel_keys(turn);
    turn.say_keys(Msg::AdminPromoAskDisable, keys);
    go(Step::DisablePromo)
}

pub async fn disable<A: Adapters>(turn: &mut Turn<'_, A>, text: &str) -> Next {
    let Ok(code) = PromoCode::parse(text) else {
        turn.say(Msg::AdminPromoCodeInvalid);
        return ask_disable(turn);
    };
    let shown = code.to_string();
    let msg = match turn.app.store.disable_promo(&code, turn.user(), Some(turn.correlation()), turn.now()).await {
        Ok(Applied::Done) => Msg::AdminPromoDisabled { code: shown },
        Ok(Applied::Duplicate) => Msg::AdminPromoAlreadyOff { code: shown },
        Err(PromoDisableError::NotFound) => Msg::AdminPromoUnknown { code: shown },
        Err(e) => {
            turn.failed("disable_promo", &e);
            return Next::Done;
        }
    };
    turn.say_keys(msg, back());
    Next::Done
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn counts() {
        assert_eq!(count(" 30 ", VALIDITY_MAX), Some(30));
        for bad in ["0", "-1", "3651", "1e2", "١٢", "", "99999999999"] {
            assert_eq!(count(bad, VALIDITY_MAX), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn counts_and_codes_never_panic(text in "\\PC{0,40}") {
            if let Some(n) = count(&text, USES_MAX) {
                prop_assert!((1..=USES_MAX).contains(&n));
            }
            if let Ok(code) = PromoCode::parse(&text) {
                prop_assert_eq!(PromoCode::parse(code.as_str()), Ok(code.clone()));
            }
        }
    }
}
