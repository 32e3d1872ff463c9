//! What a button asks for, and its callback data: a short text (at most 64 bytes, the Bot API's
//! limit) that is never trusted when it comes back. Decoding accepts exactly what encoding makes
//! and nothing else; it never panics, whatever the bytes. Buttons of a conversation step carry
//! the step's nonce, so a button from an earlier conversation or message is recognised as stale.
//! Buttons that name a user or a withdrawal are admin buttons: the router checks the admin list
//! before it reads them.

use crate::domain::{Language, Payable, TariffCode, UserId, WithdrawalId};

/// The Bot API's limit on callback data.
pub const CALLBACK_DATA_BYTES_MAX: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A screen reached from the menu, valid whatever the conversation.
    Nav(Nav),
    /// An admin screen.
    Admin(AdminNav),
    /// An admin's decision on a withdrawal (the notification's buttons).
    Decide { withdrawal: WithdrawalId, approve: bool },
    /// An admin's action on a user found by search.
    AdminUser { op: UserOp, user: UserId },
    /// A step of the current conversation, valid only while its nonce is the conversation's.
    Step { nonce: u32, input: StepInput },
    /// "Check payment" of a crypto invoice: valid on any message that shows the invoice, for its
    /// payer only (the router checks whose it is).
    Check(Payable),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    Menu,
    Buy,
    Subscription,
    Balance,
    TopUp,
    Trial,
    Promo,
    Referral,
    Withdraw,
    Support,
    Language,
    SetLanguage(Language),
    ToggleAutoRenew,
    ReissueKey,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminNav {
    Menu,
    Withdrawals,
    FindUser,
    Credit,
    Debit,
    NewPromo,
    DisablePromo,
    Reissue,
    Broadcast,
    Stats,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserOp {
    Credit,
    Debit,
    Reissue,
}

/// How a purchase or top-up is paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Method {
    Balance,
    Crypto,
    Stars,
}

/// The unit of a promo code's validity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PromoUnit {
    Hours,
    Days,
    /// The code never expires.
    Never,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepInput {
    Tariff(TariffCode),
    Period(u16),
    Pay(Method),
    EnterPromo,
    Confirm,
    Cancel,
    Unit(PromoUnit),
    Unlimited,
}

const NAV: [(Nav, &str); 15] = [
    (Nav::Menu, "m"),
    (Nav::Buy, "buy"),
    (Nav::Subscription, "sub"),
    (Nav::Balance, "bal"),
    (Nav::TopUp, "tu"),
    (Nav::Trial, "tr"),
    (Nav::Promo, "pr"),
    (Nav::Referral, "ref"),
    (Nav::Withdraw, "wd"),
    (Nav::Support, "sup"),
    (Nav::Language, "lang"),
    (Nav::SetLanguage(Language::Ru), "lang:ru"),
    (Nav::SetLanguage(Language::En), "lang:en"),
    (Nav::ToggleAutoRenew, "ar"),
    (Nav::ReissueKey, "rk"),
];

const ADMIN: [(AdminNav, &str); 10] = [
    (AdminNav::Menu, "a"),
    (AdminNav::Withdrawals, "a:wd"),
    (AdminNav::FindUser, "a:find"),
    (AdminNav::Credit, "a:cr"),
    (AdminNav::Debit, "a:db"),
    (AdminNav::NewPromo, "a:np"),
    (AdminNav::DisablePromo, "a:dp"),
    (AdminNav::Reissue, "a:rk"),
    (AdminNav::Broadcast, "a:bc"),
    (AdminNav::Stats, "a:st"),
];

const USER_OPS: [(UserOp, &str); 3] = [(UserOp::Credit, "cr"), (UserOp::Debit, "db"), (UserOp::Reissue, "rk")];

const METHODS: [(Method, &str); 3] = [(Method::Balance, "b"), (Method::Crypto, "c"), (Method::Stars, "s")];

const UNITS: [(PromoUnit, &str); 3] = [(PromoUnit::Hours, "h"), (PromoUnit::Days, "d"), (PromoUnit::Never, "n")];

fn name_of<T: PartialEq + Copy>(table: &[(T, &'static str)], value: T) -> &'static str {
    table.iter().find(|(v, _)| *v == value).map(|(_, name)| *name).expect("every value has a name")
}

fn value_of<T: Copy>(table: &[(T, &'static str)], name: &str) -> Option<T> {
    table.iter().find(|(_, n)| *n == name).map(|(v, _)| *v)
}

/// A positive decimal id, as encoding writes it (no sign, no leading zero, at most 18 digits).
fn id(text: &str) -> Option<i64> {
    let canonical = !text.is_empty() && text.len() <= 18 && !text.starts_with('0');
    if !canonical || !text.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl Action {
    /// The callback data; always within [`CALLBACK_DATA_BYTES_MAX`].
    pub fn data(&self) -> String {
        let data = match self {
            Action::Nav(nav) => name_of(&NAV, *nav).to_owned(),
            Action::Admin(nav) => name_of(&ADMIN, *nav).to_owned(),
            Action::Decide { withdrawal, approve } => {
                format!("a:dec:{withdrawal}:{}", if *approve { "y" } else { "n" })
            }
            Action::AdminUser { op, user } => format!("a:u:{}:{user}", name_of(&USER_OPS, *op)),
            Action::Step { nonce, input } => format!("s:{nonce}:{}", input.data()),
            Action::Check(payable) => format!("chk:{}", payable.payload()),
        };
        assert!(data.len() <= CALLBACK_DATA_BYTES_MAX, "callback data {data:?} is too long");
        data
    }

    /// Reads callback data back; `None` for anything encoding does not make.
    pub fn parse(data: &str) -> Option<Action> {
        if data.len() > CALLBACK_DATA_BYTES_MAX {
            return None;
        }
        if let Some(nav) = value_of(&NAV, data) {
            return Some(Action::Nav(nav));
        }
        if let Some(nav) = value_of(&ADMIN, data) {
            return Some(Action::Admin(nav));
        }
        let parts: Vec<&str> = data.split(':').collect();
        let action = match parts.as_slice() {
            ["a", "dec", w, verdict] => Action::Decide {
                withdrawal: WithdrawalId::new(id(w)?)?,
                approve: match *verdict {
                    "y" => true,
                    "n" => false,
                    _ => return None,
                },
            },
            ["a", "u", op, user] => Action::AdminUser { op: value_of(&USER_OPS, op)?, user: UserId::new(id(user)?)? },
            ["chk", kind, id] => Action::Check(Payable::from_payload(&format!("{kind}:{id}"))?),
            ["s", nonce, rest @ ..] => {
                let nonce = u32::try_from(id(nonce).or_else(|| (*nonce == "0").then_some(0))?).ok()?;
                Action::Step { nonce, input: StepInput::parse(rest)? }
            }
            _ => return None,
        };
        // Only canonical data: what parses must encode back to the same bytes.
        (action.data() == data).then_some(action)
    }
}

impl StepInput {
    fn data(&self) -> String {
        match self {
            StepInput::Tariff(code) => format!("t:{}", code.as_str()),
            StepInput::Period(days) => format!("p:{days}"),
            StepInput::Pay(method) => format!("pay:{}", name_of(&METHODS, *method)),
            StepInput::EnterPromo => "promo".into(),
            StepInput::Confirm => "ok".into(),
            StepInput::Cancel => "no".into(),
            StepInput::Unit(unit) => format!("u:{}", name_of(&UNITS, *unit)),
            StepInput::Unlimited => "unl".into(),
        }
    }

    fn parse(parts: &[&str]) -> Option<StepInput> {
        Some(match parts {
            ["t", code] => StepInput::Tariff(TariffCode::parse(code)?),
            ["p", days] => StepInput::Period(u16::try_from(id(days)?).ok()?),
            ["pay", method] => StepInput::Pay(value_of(&METHODS, method)?),
            ["promo"] => StepInput::EnterPromo,
            ["ok"] => StepInput::Confirm,
            ["no"] => StepInput::Cancel,
            ["u", unit] => StepInput::Unit(value_of(&UNITS, unit)?),
            ["unl"] => StepInput::Unlimited,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::{PurchaseId, TopUpId};

    fn every_kind() -> Vec<Action> {
        let mut all: Vec<Action> = NAV.iter().map(|(n, _)| Action::Nav(*n)).collect();
        all.extend(ADMIN.iter().map(|(n, _)| Action::Admin(*n)));
        all.push(Action::Decide { withdrawal: WithdrawalId::new(i64::MAX / 1000).unwrap(), approve: false });
        all.push(Action::AdminUser { op: UserOp::Debit, user: UserId::new(9_007_199_254_740_991).unwrap() });
        all.push(Action::Check(Payable::Purchase(PurchaseId::new(i64::MAX).unwrap())));
        all.push(Action::Check(Payable::TopUp(TopUpId::new(1).unwrap())));
        let tariff = TariffCode::parse(&"a".repeat(32)).unwrap();
        for input in [
            StepInput::Tariff(tariff),
            StepInput::Period(3660),
            StepInput::Pay(Method::Stars),
            StepInput::EnterPromo,
            StepInput::Confirm,
            StepInput::Cancel,
            StepInput::Unit(PromoUnit::Never),
            StepInput::Unlimited,
        ] {
            all.push(Action::Step { nonce: u32::MAX, input: input.clone() });
            all.push(Action::Step { nonce: 0, input });
        }
        all
    }

    #[test]
    fn every_action_round_trips_within_the_limit() {
        for action in every_kind() {
            let data = action.data();
            assert!(data.len() <= CALLBACK_DATA_BYTES_MAX, "{data}");
            assert_eq!(Action::parse(&data), Some(action), "{data}");
        }
    }

    #[test]
    fn forged_and_malformed_data_is_refused() {
        for bad in [
            "",
            ":",
            "m:",
            "a:dec:0:y",
            "a:dec:-5:y",
            "a:dec:05:y",
            "a:dec:5:maybe",
            "a:u:xx:5",
            "a:u:cr:",
            "s:1",
            "s:1:t:Basic",
            "s:01:ok",
            "s:4294967296:ok",
            "s:1:p:0",
            "s:1:pay:z",
            "chk",
            "chk:p",
            "chk:x:5",
            "chk:p:05",
            "chk:t:0",
            "chk:p:5:6",
            "lang:de",
            "buy ",
        ] {
            assert_eq!(Action::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Action::parse(&"a".repeat(65)), None);
    }

    proptest! {
        #[test]
        fn decoding_never_panics_and_only_accepts_canonical_data(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let data = String::from_utf8_lossy(&bytes);
            if let Some(action) = Action::parse(&data) {
                prop_assert_eq!(action.data(), data.to_string());
            }
        }

        #[test]
        fn decoding_near_valid_data_never_panics(
            prefix in prop::sample::select(vec!["s:", "a:dec:", "a:u:cr:", "s:7:t:", "s:7:p:", "lang:"]),
            tail in "[a-z0-9:_-]{0,40}",
        ) {
            let data = format!("{prefix}{tail}");
            if let Some(action) = Action::parse(&data) {
                prop_assert_eq!(action.data(), data);
            }
        }
    }
}
