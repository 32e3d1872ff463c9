//! The shop's nouns: users, tariffs, subscriptions, purchases, payments, withdrawals.

use chrono::{DateTime, Utc};

use crate::domain::{Money, PurchaseId, SubscriptionId, TopUpId, UserId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    Ru,
    En,
}

impl Language {
    pub fn code(self) -> &'static str {
        match self {
            Language::Ru => "ru",
            Language::En => "en",
        }
    }

    /// The stored code, or the default for anything else (a Telegram `language_code` such as
    /// `en-GB` maps to English).
    pub fn from_code(code: &str) -> Language {
        if code.starts_with("en") { Language::En } else { Language::Ru }
    }
}

/// A tariff code from the catalogue (`basic`, `family`): lower-case letters, digits and `_`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TariffCode(String);

impl TryFrom<String> for TariffCode {
    type Error = String;

    fn try_from(code: String) -> Result<TariffCode, String> {
        TariffCode::parse(&code).ok_or_else(|| format!("{code:?} is not a tariff code"))
    }
}

impl From<TariffCode> for String {
    fn from(code: TariffCode) -> String {
        code.0
    }
}

impl TariffCode {
    pub fn parse(input: &str) -> Option<TariffCode> {
        let ok = (1..=32).contains(&input.len())
            && input.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        ok.then(|| TariffCode(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who took the money for a purchase or top-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaymentProviderKind {
    Crypto,
    Stars,
}

impl PaymentProviderKind {
    pub fn code(self) -> &'static str {
        match self {
            PaymentProviderKind::Crypto => "crypto",
            PaymentProviderKind::Stars => "stars",
        }
    }

    pub fn from_code(code: &str) -> Option<PaymentProviderKind> {
        [PaymentProviderKind::Crypto, PaymentProviderKind::Stars].into_iter().find(|k| k.code() == code)
    }
}

/// A payment's id at its provider: 1 to 128 printable ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProviderPaymentId(String);

impl ProviderPaymentId {
    pub fn parse(input: &str) -> Option<ProviderPaymentId> {
        let ok = (1..=128).contains(&input.len()) && input.chars().all(|c| c.is_ascii_graphic());
        ok.then(|| ProviderPaymentId(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key that makes a user-triggered operation happen once however often it is sent
/// (derived from the Telegram update or callback that asked for it): 8 to 128 ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(input: &str) -> Option<IdempotencyKey> {
        let ok = (8..=128).contains(&input.len()) && input.chars().all(|c| c.is_ascii_graphic());
        ok.then(|| IdempotencyKey(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Telegram username (without the `@`): letters, digits and `_`, at most 32.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

impl Username {
    /// Parses a username as Telegram sends it, or as an admin types it (a leading `@` is dropped).
    pub fn parse(input: &str) -> Option<Username> {
        let name = input.trim();
        let name = name.strip_prefix('@').unwrap_or(name);
        let ok = (1..=32).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        ok.then(|| Username(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    /// As last seen at `/start`.
    pub username: Option<Username>,
    pub language: Language,
    pub referrer: Option<UserId>,
    pub trial_used: bool,
    pub banned: bool,
    /// The user blocked the bot: nothing is sent to them until they come back.
    pub blocked: bool,
    /// Equal to the sum of the user's ledger entries.
    pub balance: Money,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TariffPeriod {
    pub tariff: TariffCode,
    pub title: String,
    pub days: i32,
    pub price: Money,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationStatus {
    Pending,
    Active,
    Failed,
}

impl ActivationStatus {
    pub fn from_code(code: &str) -> Option<ActivationStatus> {
        match code {
            "pending" => Some(ActivationStatus::Pending),
            "active" => Some(ActivationStatus::Active),
            "failed" => Some(ActivationStatus::Failed),
            _ => None,
        }
    }
}

/// How many times the activation worker asks the VPN panel for a key before it gives up and marks
/// the subscription failed for an admin to look at (with `domain::activation_backoff`, about three
/// hours of a failing panel). The schema's CHECK uses the same bound.
pub const ACTIVATION_ATTEMPTS_MAX: i32 = 10;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub user: UserId,
    pub tariff_id: i64,
    pub period_days: i32,
    pub expires_at: DateTime<Utc>,
    pub is_trial: bool,
    pub auto_renew: bool,
    pub last_auto_renewal_at: Option<DateTime<Utc>>,
    pub activation_status: ActivationStatus,
    pub activation_attempts: i32,
    /// The newest reissue fencing token claimed for this subscription (0: none yet).
    pub key_fence: u64,
}

/// Where a purchase stands. Paid from the balance it is born `Paid`; paid by a provider it waits
/// in `Pending` until its payment, a cancellation or its expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PurchaseStatus {
    Pending,
    Paid,
    Cancelled,
    Expired,
}

impl PurchaseStatus {
    pub fn code(self) -> &'static str {
        match self {
            PurchaseStatus::Pending => "pending",
            PurchaseStatus::Paid => "paid",
            PurchaseStatus::Cancelled => "cancelled",
            PurchaseStatus::Expired => "expired",
        }
    }

    pub fn from_code(code: &str) -> Option<PurchaseStatus> {
        [PurchaseStatus::Pending, PurchaseStatus::Paid, PurchaseStatus::Cancelled, PurchaseStatus::Expired]
            .into_iter()
            .find(|s| s.code() == code)
    }
}

/// What an invoice pays for: a purchase of a period, or a top-up of the balance. Its payload
/// (in a Telegram Stars invoice, in a Crypto Pay invoice) is `p:<id>` or `t:<id>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Payable {
    Purchase(PurchaseId),
    TopUp(TopUpId),
}

impl Payable {
    pub fn payload(self) -> String {
        match self {
            Payable::Purchase(id) => format!("p:{id}"),
            Payable::TopUp(id) => format!("t:{id}"),
        }
    }

    /// Reads a payload back; anything else (a forged or foreign payload, or ours written
    /// another way) is `None`.
    pub fn from_payload(payload: &str) -> Option<Payable> {
        let (kind, id) = payload.split_once(':')?;
        if id.is_empty() || id.len() > 19 || id.starts_with('0') || !id.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let id: i64 = id.parse().ok()?;
        match kind {
            "p" => PurchaseId::new(id).map(Payable::Purchase),
            "t" => TopUpId::new(id).map(Payable::TopUp),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WithdrawalStatus {
    Pending,
    Approved,
    Rejected,
}

impl WithdrawalStatus {
    pub fn from_code(code: &str) -> Option<WithdrawalStatus> {
        match code {
            "pending" => Some(WithdrawalStatus::Pending),
            "approved" => Some(WithdrawalStatus::Approved),
            "rejected" => Some(WithdrawalStatus::Rejected),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NoticeKind {
    ExpiryReminder,
    TrialNotice,
    RenewalFailed,
    Expired,
    /// The subscription's key is ready (first activation, or a new one after it ended).
    KeyReady,
    /// The key could not be made after every attempt.
    ActivationFailed,
    /// Renewed from the balance.
    Renewed,
}

impl NoticeKind {
    pub fn code(self) -> &'static str {
        match self {
            NoticeKind::ExpiryReminder => "expiry_reminder",
            NoticeKind::TrialNotice => "trial_notice",
            NoticeKind::RenewalFailed => "renewal_failed",
            NoticeKind::Expired => "expired",
            NoticeKind::KeyReady => "key_ready",
            NoticeKind::ActivationFailed => "activation_failed",
            NoticeKind::Renewed => "renewed",
        }
    }
}

/// Which notice of which period. A notice is claimed once per (subscription, kind, threshold),
/// and the threshold names the period by its end, so the next period's notices are new ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NoticeThreshold {
    /// `hours` before the period that ends at `period_end`.
    Before { hours: u16, period_end: DateTime<Utc> },
    /// When the period that ends at `period_end` is over.
    AtEnd { period_end: DateTime<Utc> },
}

impl NoticeThreshold {
    /// The stored form: `72h@1767225600` or `end@1767225600` (the period's end in unix seconds).
    pub fn code(self) -> String {
        match self {
            NoticeThreshold::Before { hours, period_end } => format!("{hours}h@{}", period_end.timestamp()),
            NoticeThreshold::AtEnd { period_end } => format!("end@{}", period_end.timestamp()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_refuse_bad_input() {
        assert!(TariffCode::parse("Basic").is_none());
        assert!(TariffCode::parse("basic").is_some());
        assert!(ProviderPaymentId::parse("").is_none());
        assert!(ProviderPaymentId::parse("has space").is_none());
        assert!(IdempotencyKey::parse("short").is_none());
        assert!(IdempotencyKey::parse("update:12345").is_some());
        assert_eq!(Language::from_code("en-GB"), Language::En);
        assert_eq!(Language::from_code("de"), Language::Ru);
        assert_eq!(Username::parse("@Alice_1").unwrap().as_str(), "Alice_1");
        assert!(Username::parse("bad name").is_none());
        assert!(Username::parse("").is_none());
        let p = Payable::Purchase(PurchaseId::new(77).unwrap());
        assert_eq!(Payable::from_payload(&p.payload()), Some(p));
        for bad in ["", "p:", "p:0", "p:05", "p:-1", "x:5", "p:5:6", "t:99999999999999999999", "p: 5"] {
            assert_eq!(Payable::from_payload(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        /// A payload we did not make is never read as one of ours; one we made always is.
        #[test]
        fn payloads_read_back_exactly_what_was_written(text in "\\PC{0,40}", id in 1i64..i64::MAX, top_up: bool) {
            if let Some(payable) = Payable::from_payload(&text) {
                proptest::prop_assert_eq!(payable.payload(), text);
            }
            let payable = if top_up { Payable::TopUp(TopUpId::new(id).unwrap()) } else { Payable::Purchase(PurchaseId::new(id).unwrap()) };
            proptest::prop_assert_eq!(Payable::from_payload(&payable.payload()), Some(payable));
        }

        /// A username is what Telegram allows (letters, digits, `_`, up to 32), with an optional `@`.
        #[test]
        fn usernames_keep_only_what_telegram_allows(text in "@?[A-Za-z0-9_ .é-]{0,40}") {
            match Username::parse(&text) {
                Some(name) => {
                    let bare = text.trim().trim_start_matches('@');
                    proptest::prop_assert_eq!(name.as_str(), bare);
                    proptest::prop_assert!((1..=32).contains(&bare.len()));
                    proptest::prop_assert!(bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                }
                None => {
                    let bare = text.trim().trim_start_matches('@');
                    let allowed = (1..=32).contains(&bare.len()) && bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    proptest::prop_assert!(!allowed, "refused {:?}", text);
                }
            }
        }
    }

    #[test]
    fn notice_thresholds_name_their_period() {
        let end = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        assert_eq!(NoticeThreshold::Before { hours: 72, period_end: end }.code(), "72h@1767225600");
        assert_eq!(NoticeThreshold::AtEnd { period_end: end }.code(), "end@1767225600");
    }
}
