//! The starting state of a run, arranged through the store port itself (on the model, before
//! the network starts), and the facts about it that workloads and checkers share: the users, what
//! they hold, what they buy. The price is never written here: it is read from the catalogue.

use std::time::Duration;

use atlas::domain::{Language, Money, PaymentProviderKind, Percent, ProviderPaymentId, ShopPolicy, TariffCode, UserId};
use atlas::ports::store::{Accounts, ProviderPayment, PurchaseRequest, Purchases};
use atlas::runtime::wiring::Rules;
use futures::FutureExt as _;

use crate::clock::SimClock;
use crate::store_host::{SimStore, StoreLink};
use atlas::ports::Clock as _;

/// What each user of the purchases workload starts with on the balance (minor units).
pub const SEED_BALANCE_MINOR: i64 = 10_000_000;

/// The period every simulated purchase buys.
pub const PERIOD_DAYS: i32 = 30;

pub fn tariff() -> TariffCode {
    TariffCode::parse("basic").expect("a valid tariff code")
}

/// The users of a workload: 1..=n.
pub fn users(n: u32) -> impl Iterator<Item = UserId> {
    (1..=i64::from(n)).map(|u| UserId::new(u).expect("positive"))
}

/// The price of the period every simulated purchase buys, from the store's catalogue.
pub fn period_price(link: &StoreLink) -> Money {
    link.with_model(|m| m.price_of(&tariff(), PERIOD_DAYS)).expect("the seed catalogue sells the period")
}

/// The rules of every simulated instance.
pub fn rules() -> Rules {
    let shop = ShopPolicy {
        trial_days: 3,
        withdrawal_min: Money::positive(10_000).expect("100.00"),
        referral_percent: Percent::new(10).expect("10%"),
        purchase_ttl: Duration::from_secs(3600),
        star_price: Money::positive(150).expect("1.50"),
    };
    Rules {
        shop,
        admins: Vec::new(),
        support_contact: "@atlas_support".into(),
        bot_username: Some("atlas_sim_bot".into()),
        reissue_lock_ttl: atlas::services::reissue::REISSUE_LOCK_TTL,
    }
}

/// Runs a store call on the model in place: the direct store never waits, so it is ready at once.
pub(crate) fn now<T>(call: impl std::future::Future<Output = T>) -> T {
    call.now_or_never().expect("the direct store answers at once")
}

/// Users 1..=n with `balance` each, topped up through the store's own operation.
pub fn balances(link: &StoreLink, users_n: u32, balance: Money) {
    let store = SimStore::direct_on(link.clone());
    let at = SimClock::default().now();
    for user in users(users_n) {
        now(store.register_user(user, Language::Ru, None, None, at)).expect("register");
        let payment = ProviderPayment {
            provider: PaymentProviderKind::Crypto,
            payment_id: ProviderPaymentId::parse(&format!("seed-{user}")).expect("valid"),
            amount: balance,
        };
        now(store.top_up(user, payment, at)).expect("seed top-up");
    }
}

/// Users 1..=n, each with a paid period (and nothing left on the balance).
pub fn subscriptions(link: &StoreLink, users_n: u32) {
    balances(link, users_n, period_price(link));
    let store = SimStore::direct_on(link.clone());
    let at = SimClock::default().now();
    for user in users(users_n) {
        let request = PurchaseRequest { user, tariff: tariff(), days: PERIOD_DAYS, promo: None, idempotency_key: None };
        now(store.purchase_from_balance(request, at)).expect("seed purchase");
    }
}
