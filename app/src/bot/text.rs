//! Everything the bot says, in Russian and English: message catalogs in Fluent
//! (`app/locales/{ru,en}.ftl`), and [`Msg`], the one list of messages with their arguments.
//! Messages are Telegram HTML: the catalogs write the markup, and every argument is escaped
//! before it is placed, so nothing a user typed can become markup. Tests hold the two catalogs
//! and the list to each other: every message in both languages, every placeholder filled, no
//! message left unused.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};

use crate::domain::{Language, Money, Percent};

const RU: &str = include_str!("../../locales/ru.ftl");
const EN: &str = include_str!("../../locales/en.ftl");

/// A value placed into a message.
pub trait Arg {
    fn value(&self) -> FluentValue<'static>;
    /// A typical value, for the tests that render every message.
    fn sample() -> Self;
}

/// Escapes text for Telegram HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

impl Arg for String {
    fn value(&self) -> FluentValue<'static> {
        FluentValue::from(escape(self))
    }

    fn sample() -> String {
        "<b>sample & text</b>".into()
    }
}

impl Arg for Money {
    fn value(&self) -> FluentValue<'static> {
        FluentValue::from(self.to_string())
    }

    fn sample() -> Money {
        Money::positive(19_900).expect("a valid amount")
    }
}

impl Arg for Percent {
    fn value(&self) -> FluentValue<'static> {
        FluentValue::from(self.get())
    }

    fn sample() -> Percent {
        Percent::new(15).expect("a valid percentage")
    }
}

impl Arg for DateTime<Utc> {
    fn value(&self) -> FluentValue<'static> {
        FluentValue::from(self.format("%Y-%m-%d %H:%M UTC").to_string())
    }

    fn sample() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).expect("a valid instant")
    }
}

macro_rules! number_arg {
    ($($ty:ty),+) => {$(
        impl Arg for $ty {
            fn value(&self) -> FluentValue<'static> {
                FluentValue::from(*self)
            }

            fn sample() -> $ty {
                3
            }
        }
    )+};
}
number_arg!(u16, u32, u64, i64);

/// A choice between fixed words, passed to a Fluent selector (`on`/`off`, `credit`/`debit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Word(pub &'static str);

impl Arg for Word {
    fn value(&self) -> FluentValue<'static> {
        FluentValue::from(self.0)
    }

    fn sample() -> Word {
        Word("other")
    }
}

macro_rules! messages {
    ($($variant:ident $({ $($arg:ident : $ty:ty),+ $(,)? })? => $key:literal),+ $(,)?) => {
        /// Every message the bot sends, with its arguments.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Msg {
            $($variant $({ $($arg: $ty),+ })?),+
        }

        impl Msg {
            /// Its id in the catalogs.
            pub fn key(&self) -> &'static str {
                match self {
                    $(Msg::$variant { .. } => $key),+
                }
            }

            fn args(&self) -> Vec<(&'static str, FluentValue<'static>)> {
                match self {
                    $(Msg::$variant $({ $($arg),+ })? => vec![$($((stringify!($arg), Arg::value($arg))),+)?]),+
                }
            }

            /// One of each message, with sample arguments (for the tests).
            pub fn samples() -> Vec<Msg> {
                vec![$(Msg::$variant $({ $($arg: <$ty as Arg>::sample()),+ })?),+]
            }
        }
    };
}

messages! {
    Welcome { name: String } => "welcome",
    Menu => "menu",
    Help => "help",
    ResetNotice => "reset-notice",
    NotUnderstood => "not-understood",
    UnknownCommand => "unknown-command",
    SendText => "send-text",
    StaleButton => "stale-button",
    TryLater => "try-later",
    TooLongToKeep => "too-long-to-keep",
    RateLimited { minutes: u64 } => "rate-limited",
    Failed => "failed",
    PurchaseUnconfirmed => "purchase-unconfirmed",
    PurchaseConfirmFirst => "purchase-confirm-first",
    PurchasePaidAnotherWay => "purchase-paid-another-way",
    CancelledUnconfirmed => "cancelled-unconfirmed",
    Cancelled => "cancelled",
    Banned => "banned",

    BtnBuy => "btn-buy",
    BtnSubscription => "btn-subscription",
    BtnBalance => "btn-balance",
    BtnTopUp => "btn-top-up",
    BtnTrial => "btn-trial",
    BtnPromo => "btn-promo",
    BtnReferral => "btn-referral",
    BtnWithdraw => "btn-withdraw",
    BtnSupport => "btn-support",
    BtnLanguage => "btn-language",
    BtnLanguageRu => "btn-language-ru",
    BtnLanguageEn => "btn-language-en",
    BtnAdmin => "btn-admin",
    BtnMenu => "btn-menu",
    BtnCancel => "btn-cancel",
    BtnConfirm => "btn-confirm",
    BtnCheckPayment => "btn-check-payment",
    BtnPayBalance { balance: Money } => "btn-pay-balance",
    BtnPayCrypto => "btn-pay-crypto",
    BtnPayStars { stars: u32 } => "btn-pay-stars",
    BtnEnterPromo => "btn-enter-promo",
    BtnReissue => "btn-reissue",
    BtnAutoRenew { state: Word } => "btn-auto-renew",
    BtnTariff { title: String } => "btn-tariff",
    BtnPeriod { days: u16, price: Money } => "btn-period",
    BtnApprove => "btn-approve",
    BtnReject => "btn-reject",
    BtnUnit { unit: Word } => "btn-unit",
    BtnUnlimited => "btn-unlimited",
    BtnCredit => "btn-credit",
    BtnDebit => "btn-debit",
    BtnSendBroadcast => "btn-send-broadcast",
    BtnAdminWithdrawals => "btn-admin-withdrawals",
    BtnAdminFind => "btn-admin-find",
    BtnAdminCredit => "btn-admin-credit",
    BtnAdminDebit => "btn-admin-debit",
    BtnAdminNewPromo => "btn-admin-new-promo",
    BtnAdminDisablePromo => "btn-admin-disable-promo",
    BtnAdminReissue => "btn-admin-reissue",
    BtnAdminBroadcast => "btn-admin-broadcast",
    BtnAdminStats => "btn-admin-stats",

    AmountEmpty => "amount-empty",
    AmountNotNumber => "amount-not-number",
    AmountZero => "amount-zero",
    AmountNegative => "amount-negative",
    AmountTooLarge { max: Money } => "amount-too-large",
    AmountTooPrecise => "amount-too-precise",

    TrialActivated { days: u16, until: DateTime<Utc> } => "trial-activated",
    TrialUsed => "trial-used",
    TrialNotForSubscribers => "trial-not-for-subscribers",

    NoSubscription => "no-subscription",
    SubscriptionInfo { until: DateTime<Utc>, trial: Word, auto_renew: Word } => "subscription-info",
    SubscriptionEnded { until: DateTime<Utc> } => "subscription-ended",
    KeyShown { uri: String } => "key-shown",
    KeyPending => "key-pending",
    KeyFailed => "key-failed",
    AutoRenewSet { state: Word } => "auto-renew-set",
    Reissued { uri: String } => "reissued",
    ReissuedBySupport { uri: String } => "reissued-by-support",
    ReissueBusy => "reissue-busy",
    ReissueFenced => "reissue-fenced",

    Balance { balance: Money } => "balance",
    TopUpAskAmount { min: Money, max: Money } => "top-up-ask-amount",
    TopUpTooSmall { min: Money } => "top-up-too-small",
    TopUpChooseMethod { amount: Money } => "top-up-choose-method",
    InvoiceCrypto { amount: Money, url: String } => "invoice-crypto",
    InvoiceStars { stars: u32 } => "invoice-stars",
    InvoiceTitle => "invoice-title",
    InvoicePurchase { days: u16 } => "invoice-purchase",
    InvoiceTopUp { amount: Money } => "invoice-top-up",
    PaymentPending => "payment-pending",
    PaymentUnavailable => "payment-unavailable",
    InvoiceExpired => "invoice-expired",
    InvoiceCancelled => "invoice-cancelled",
    OrderAlreadyPaid => "order-already-paid",
    TopUpCredited { amount: Money, balance: Money } => "top-up-credited",

    ChooseTariff => "choose-tariff",
    NothingOnSale => "nothing-on-sale",
    ChoosePeriod { title: String } => "choose-period",
    ChooseMethod { title: String, days: u16, price: Money } => "choose-method",
    ChooseMethodPromo { title: String, days: u16, price: Money, full: Money, code: String, percent: Percent } => "choose-method-promo",
    PromoAsk => "promo-ask",
    PromoApplied { code: String, percent: Percent } => "promo-applied",
    PromoNotFound => "promo-not-found",
    PromoDisabled => "promo-disabled",
    PromoExpired => "promo-expired",
    PromoExhausted => "promo-exhausted",
    PromoUsed => "promo-used",
    PromoInvalid => "promo-invalid",
    Purchased { until: DateTime<Utc>, amount: Money, balance: Money } => "purchased",
    InsufficientBalance { price: Money, balance: Money } => "insufficient-balance",
    FreeUseBalance => "free-use-balance",
    PurchaseUnavailable => "purchase-unavailable",
    Paid { until: DateTime<Utc> } => "paid",
    PaidToBalance { amount: Money } => "paid-to-balance",
    PaymentUnmatched => "payment-unmatched",
    PaymentRefunded => "payment-refunded",
    PreCheckoutRefused => "pre-checkout-refused",

    WithdrawBalanceTooLow { balance: Money, min: Money } => "withdraw-balance-too-low",
    WithdrawAskAmount { balance: Money, min: Money } => "withdraw-ask-amount",
    WithdrawBelowMin { min: Money } => "withdraw-below-min",
    WithdrawAboveBalance { balance: Money } => "withdraw-above-balance",
    WithdrawConfirmAmount { amount: Money } => "withdraw-confirm-amount",
    WithdrawAskRequisites => "withdraw-ask-requisites",
    RequisitesLength { min: u64, max: u64 } => "requisites-length",
    RequisitesControl => "requisites-control",
    WithdrawFinalConfirm { amount: Money, requisites: String } => "withdraw-final-confirm",
    WithdrawCreated { id: i64, amount: Money, balance: Money } => "withdraw-created",
    WithdrawDecided { id: i64, amount: Money, verdict: Word } => "withdraw-decided",

    Referral { link: String, invited: u64, earned: Money, percent: Percent } => "referral",
    Support { contact: String } => "support",
    LanguageChoose => "language-choose",
    LanguageSet => "language-set",

    AdminOnly => "admin-only",
    AdminMenu => "admin-menu",
    AdminNoWithdrawals => "admin-no-withdrawals",
    AdminWithdrawal { id: i64, user: i64, amount: Money, requisites: String, created: DateTime<Utc> } => "admin-withdrawal",
    AdminDecided { id: i64, verdict: Word } => "admin-decided",
    AdminAlreadyDecided { id: i64, verdict: Word } => "admin-already-decided",
    AdminUnknownWithdrawal => "admin-unknown-withdrawal",
    AdminAskUser => "admin-ask-user",
    AdminUserNotFound => "admin-user-not-found",
    AdminUserInfo { id: i64, username: String, balance: Money, until: String, banned: Word } => "admin-user-info",
    AdminAskAmount { user: i64 } => "admin-ask-amount",
    AdminConfirmAdjust { direction: Word, amount: Money, user: i64 } => "admin-confirm-adjust",
    AdminAdjusted { direction: Word, amount: Money, user: i64, balance: Money } => "admin-adjusted",
    AdminAdjustInsufficient { balance: Money } => "admin-adjust-insufficient",
    AdminPromoAskCode => "admin-promo-ask-code",
    AdminPromoCodeInvalid => "admin-promo-code-invalid",
    AdminPromoAskUnit => "admin-promo-ask-unit",
    AdminPromoAskValue { unit: Word } => "admin-promo-ask-value",
    AdminPromoValueInvalid => "admin-promo-value-invalid",
    AdminPromoAskMaxUses => "admin-promo-ask-max-uses",
    AdminPromoMaxUsesInvalid => "admin-promo-max-uses-invalid",
    AdminPromoAskPercent => "admin-promo-ask-percent",
    AdminPromoPercentInvalid => "admin-promo-percent-invalid",
    AdminPromoConfirm { code: String, percent: Percent, uses: String, expires: String } => "admin-promo-confirm",
    AdminPromoCreated { code: String } => "admin-promo-created",
    AdminPromoExists { code: String } => "admin-promo-exists",
    AdminPromoAskDisable => "admin-promo-ask-disable",
    AdminPromoDisabled { code: String } => "admin-promo-disabled",
    AdminPromoAlreadyOff { code: String } => "admin-promo-already-off",
    AdminPromoUnknown { code: String } => "admin-promo-unknown",
    AdminReissued { user: i64 } => "admin-reissued",
    AdminNoSubscription { user: i64 } => "admin-no-subscription",
    AdminBroadcastAsk { max: u64 } => "admin-broadcast-ask",
    AdminBroadcastEmpty => "admin-broadcast-empty",
    AdminBroadcastTooLong { length: u64, max: u64 } => "admin-broadcast-too-long",
    AdminBroadcastConfirm { text: String } => "admin-broadcast-confirm",
    AdminBroadcastQueued { id: i64 } => "admin-broadcast-queued",
    AdminStats { users: u64, active: u64, trials: u64, pending: u64, purchases: u64, revenue: Money } => "admin-stats",
    ReminderBefore { hours: u64, until: DateTime<Utc> } => "reminder-before",
    TrialEndsSoon { hours: u64, until: DateTime<Utc> } => "trial-ends-soon",
    TrialEnded => "trial-ended",
    KeyReady { uri: String } => "key-ready",
    KeyActivationFailed => "key-activation-failed",
    AdminActivationFailed { user: i64, subscription: i64, error: String } => "admin-activation-failed",
    Renewed { until: DateTime<Utc>, amount: Money } => "renewed",
    RenewalShort => "renewal-short",
    RenewalUnavailable => "renewal-unavailable",
    Broadcast { text: String } => "broadcast",
    Unlimited => "unlimited",
    NoExpiry => "no-expiry",
    NoUsername => "no-username",
}

struct Catalog {
    ru: FluentBundle<FluentResource>,
    en: FluentBundle<FluentResource>,
}

fn bundle(lang: &str, source: &'static str) -> FluentBundle<FluentResource> {
    let resource = FluentResource::try_new(source.to_owned())
        .unwrap_or_else(|(_, errors)| panic!("the {lang} catalog does not parse: {errors:?}"));
    let mut bundle = FluentBundle::new_concurrent(vec![lang.parse().expect("a valid language id")]);
    // Telegram shows Unicode isolation marks around placeholders as junk.
    bundle.set_use_isolating(false);
    bundle.add_resource(resource).unwrap_or_else(|errors| panic!("the {lang} catalog repeats ids: {errors:?}"));
    bundle
}

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog { ru: bundle("ru", RU), en: bundle("en", EN) })
}

/// `msg` in `lang`, with the errors Fluent met (none, for a message the tests cover).
fn render_checked(lang: Language, msg: &Msg) -> (String, Vec<String>) {
    let catalog = catalog();
    let bundle = match lang {
        Language::Ru => &catalog.ru,
        Language::En => &catalog.en,
    };
    let Some(pattern) = bundle.get_message(msg.key()).and_then(|m| m.value()) else {
        return (msg.key().to_owned(), vec![format!("no message {} in {}", msg.key(), lang.code())]);
    };
    let mut args = FluentArgs::new();
    for (name, value) in msg.args() {
        args.set(name, value);
    }
    let mut errors = Vec::new();
    let text = bundle.format_pattern(pattern, Some(&args), &mut errors).into_owned();
    (text, errors.iter().map(ToString::to_string).collect())
}

/// `msg` in `lang`. A message that fails to render (the tests make sure none does) is logged
/// and shown as well as Fluent could.
pub fn render(lang: Language, msg: &Msg) -> String {
    if let Some(fixed) = fixed(lang, msg) {
        return fixed.html.clone();
    }
    let (text, errors) = render_checked(lang, msg);
    if !errors.is_empty() {
        tracing::error!(key = msg.key(), lang = lang.code(), ?errors, "message rendered with errors");
    }
    text
}

/// `msg` as a button's label: plain text, not HTML (Telegram shows a label as it is), so its
/// arguments appear as they were written.
pub fn label(lang: Language, msg: &Msg) -> String {
    if let Some(fixed) = fixed(lang, msg) {
        return fixed.label.clone();
    }
    unescape(&render(lang, msg))
}

/// A message without arguments, rendered once: as HTML and as a label.
struct Fixed {
    html: String,
    label: String,
}

/// The rendering of `msg` when it has no arguments (most buttons, many short replies: a menu
/// alone has a dozen labels), from a table filled once; `None` for a message with arguments.
fn fixed(lang: Language, msg: &Msg) -> Option<&'static Fixed> {
    static FIXED: OnceLock<std::collections::BTreeMap<(&'static str, &'static str), Fixed>> = OnceLock::new();
    let table = FIXED.get_or_init(|| {
        let mut table = std::collections::BTreeMap::new();
        for msg in Msg::samples().iter().filter(|m| m.args().is_empty()) {
            for lang in [Language::Ru, Language::En] {
                let (html, _) = render_checked(lang, msg);
                let label = unescape(&html);
                table.insert((lang.code(), msg.key()), Fixed { html, label });
            }
        }
        table
    });
    // Only messages without arguments are in the table (a key names one message).
    table.get(&(lang.code(), msg.key()))
}

/// Undoes [`escape`]: the catalogs' labels carry no markup, only escaped arguments.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use fluent_syntax::ast;

    use super::*;

    /// The variables a pattern uses, through selectors and nested placeables.
    fn variables(pattern: &ast::Pattern<&str>, out: &mut BTreeSet<String>) {
        for element in &pattern.elements {
            if let ast::PatternElement::Placeable { expression } = element {
                expression_variables(expression, out);
            }
        }
    }

    fn expression_variables(expression: &ast::Expression<&str>, out: &mut BTreeSet<String>) {
        match expression {
            ast::Expression::Select { selector, variants } => {
                inline_variables(selector, out);
                for v in variants {
                    variables(&v.value, out);
                }
            }
            ast::Expression::Inline(inline) => inline_variables(inline, out),
        }
    }

    fn inline_variables(inline: &ast::InlineExpression<&str>, out: &mut BTreeSet<String>) {
        match inline {
            ast::InlineExpression::VariableReference { id } => {
                out.insert(id.name.to_owned());
            }
            ast::InlineExpression::Placeable { expression } => expression_variables(expression, out),
            ast::InlineExpression::FunctionReference { arguments, .. } => {
                for a in &arguments.positional {
                    inline_variables(a, out);
                }
            }
            _ => {}
        }
    }

    /// Message id -> the variables it uses, for one catalog.
    fn catalog_variables(source: &str) -> std::collections::BTreeMap<String, BTreeSet<String>> {
        let resource = fluent_syntax::parser::parse(source).expect("the catalog parses");
        let mut out = std::collections::BTreeMap::new();
        for entry in &resource.body {
            if let ast::Entry::Message(m) = entry {
                let mut vars = BTreeSet::new();
                if let Some(value) = &m.value {
                    variables(value, &mut vars);
                }
                out.insert(m.id.name.to_owned(), vars);
            }
        }
        out
    }

    #[test]
    fn both_catalogs_have_every_message_with_the_same_placeholders() {
        let (ru, en) = (catalog_variables(RU), catalog_variables(EN));
        let keys: BTreeSet<String> = Msg::samples().iter().map(|m| m.key().to_owned()).collect();
        assert_eq!(ru.keys().cloned().collect::<BTreeSet<_>>(), keys, "ru.ftl and the list of messages differ");
        assert_eq!(en.keys().cloned().collect::<BTreeSet<_>>(), keys, "en.ftl and the list of messages differ");
        for msg in Msg::samples() {
            let passed: BTreeSet<String> = msg.args().iter().map(|(name, _)| (*name).to_owned()).collect();
            assert_eq!(ru[msg.key()], passed, "ru {}: placeholders differ from the arguments", msg.key());
            assert_eq!(en[msg.key()], passed, "en {}: placeholders differ from the arguments", msg.key());
        }
    }

    #[test]
    fn every_message_renders_in_both_languages_without_errors() {
        for msg in Msg::samples() {
            for lang in [Language::Ru, Language::En] {
                let (text, errors) = render_checked(lang, &msg);
                assert!(errors.is_empty(), "{} in {}: {errors:?}", msg.key(), lang.code());
                assert!(!text.trim().is_empty(), "{} in {} is empty", msg.key(), lang.code());
                assert!(!text.contains("<b>sample"), "{}: an argument was not escaped: {text}", msg.key());
            }
        }
    }

    #[test]
    fn the_languages_differ_and_plurals_follow_each() {
        let ru = render(Language::Ru, &Msg::RateLimited { minutes: 5 });
        let en = render(Language::En, &Msg::RateLimited { minutes: 5 });
        assert_ne!(ru, en);
        assert!(ru.contains("5 минут"), "{ru}");
        assert!(render(Language::Ru, &Msg::RateLimited { minutes: 2 }).contains("2 минуты"));
        assert!(render(Language::En, &Msg::RateLimited { minutes: 1 }).contains("1 minute"));
    }

    /// Labels are plain text: the catalogs' labels carry no markup, and an argument shows as
    /// it was written.
    #[test]
    fn labels_are_plain_text() {
        for lang in [Language::Ru, Language::En] {
            for msg in Msg::samples().iter().filter(|m| m.key().starts_with("btn-")) {
                let (text, _) = render_checked(lang, msg);
                let without_args = text.replace(&escape(&String::sample()), "");
                assert!(!without_args.contains('<') && !without_args.contains('&'), "{}: {text}", msg.key());
            }
            let tariff = Msg::BtnTariff { title: "Fast & <Safe>".into() };
            assert!(label(lang, &tariff).contains("Fast & <Safe>"), "{}", label(lang, &tariff));
        }
    }

    #[test]
    fn markup_in_arguments_is_escaped() {
        let text = render(Language::En, &Msg::Welcome { name: "<script>&".into() });
        assert!(text.contains("&lt;script&gt;&amp;"), "{text}");
    }
}
