//! A model of the Store port: what PostgreSQL and the SQL functions of `migrations/` guarantee,
//! in memory. Each operation is written once, as the port's method on [`SimStore`] (one file per
//! concern, as in `atlas::store::postgres`), running on these tables inside the RPC's `exec`. It
//! checks every refusal before it writes anything (a refused operation writes nothing, as a
//! rolled-back transaction), in the same order as the SQL, so the same inputs get the same
//! answers. A differential test against real PostgreSQL keeps it honest
//! (`sim/tests/differential_store.rs`).
//!
//! [`SimStore`]: super::SimStore

mod accounts;
mod admin;
mod broadcasts;
mod findings;
mod notices;
mod promos;
mod purchases;
mod subscriptions;
mod withdrawals;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use atlas::domain::*;
use atlas::ports::store::*;

struct UserRow {
    username: Option<Username>,
    language: Language,
    referrer: Option<UserId>,
    trial_used: bool,
    banned: bool,
    blocked: bool,
    balance: i64,
    created_at: DateTime<Utc>,
}

struct Tariff {
    id: i64,
    code: &'static str,
    title: &'static str,
    active: bool,
}

struct SubRow {
    id: SubscriptionId,
    user: UserId,
    tariff_id: i64,
    period_days: i32,
    expires_at: DateTime<Utc>,
    is_trial: bool,
    auto_renew: bool,
    last_auto_renewal_at: Option<DateTime<Utc>>,
    activation_status: ActivationStatus,
    activation_attempts: i32,
    /// `None` is the schema's `-infinity`: try now.
    activation_next_at: Option<DateTime<Utc>>,
    key_fence: i64,
}

impl SubRow {
    /// After a purchase or renewal: a subscription still waiting for its key (failed, parked
    /// when it ended, backing off) is tried again at once.
    fn revive_activation(&mut self) {
        if self.activation_status == ActivationStatus::Failed {
            self.activation_status = ActivationStatus::Pending;
            self.activation_attempts = 0;
        }
        if self.activation_status == ActivationStatus::Pending {
            self.activation_next_at = None;
        }
    }
}

struct KeyRow {
    id: i64,
    subscription: SubscriptionId,
    key: atlas::ports::vpn::PanelKey,
    active: bool,
    /// Revoked at the panel too (only for a revoked key).
    panel_revoked: bool,
    /// The request a reissued key answers.
    request: Option<String>,
}

struct PromoRow {
    id: PromoId,
    discount: Percent,
    max_uses: Option<u32>,
    used_count: u32,
    active: bool,
    expires_at: Option<DateTime<Utc>>,
}

struct PurchaseRow {
    user: UserId,
    tariff_id: i64,
    period_days: i32,
    promo: Option<PromoId>,
    amount: i64,
    /// None: paid from the balance.
    method: Option<PaymentProviderKind>,
    status: PurchaseStatus,
    expires_at: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
    invoice: Option<Invoice>,
    life: Life,
}

struct PaymentRow {
    id: i64,
    user: UserId,
    amount: i64,
    topup: bool,
    purchase: Option<PurchaseId>,
    /// The pending top-up it paid, if any.
    topup_id: Option<TopUpId>,
}

struct WithdrawalRow {
    user: UserId,
    amount: i64,
    requisites: Requisites,
    status: WithdrawalStatus,
    created_at: DateTime<Utc>,
    idempotency_key: Option<String>,
    decision_key: Option<String>,
}

struct TopUpRow {
    user: UserId,
    amount: i64,
    method: PaymentProviderKind,
    status: PurchaseStatus,
    idempotency_key: Option<String>,
    invoice: Option<Invoice>,
    expires_at: DateTime<Utc>,
    life: Life,
}

/// How long an order waits for its payment, as its opener meant it (its `expires_at` less the
/// opener's clock when it opened it) and as it happened in simulated time, which no instance's
/// clock moves: an order closed as expired sooner than it was meant to wait was closed by an
/// instance whose clock disagrees with the opener's.
struct Life {
    opened: std::time::Duration,
    meant: chrono::Duration,
    expired: Option<std::time::Duration>,
}

impl Life {
    fn new(now: DateTime<Utc>, expires_at: DateTime<Utc>) -> Life {
        Life { opened: crate::clock::sim_now(), meant: expires_at - now, expired: None }
    }

    /// The order was closed as expired now.
    fn expire(&mut self) {
        self.expired = Some(crate::clock::sim_now());
    }

    /// How much sooner than meant it was closed, if it was.
    fn cut_short(&self) -> Option<chrono::Duration> {
        let lived = chrono::Duration::from_std(self.expired?.saturating_sub(self.opened)).ok()?;
        (lived + LIFE_TOLERANCE < self.meant).then(|| self.meant - lived)
    }
}

/// What an instance's clock may be off the others' after setting it by the shared clock, and
/// a worker's tick besides.
const LIFE_TOLERANCE: chrono::Duration = chrono::Duration::seconds(2);

/// An admin audit row: who, what, to whom, and (for adjustments) the key and the amount.
struct AuditRow {
    id: i64,
    admin: UserId,
    action: &'static str,
    target: Option<UserId>,
    key: Option<String>,
    amount: Option<i64>,
}

struct BroadcastRow {
    admin: UserId,
    text: String,
    idempotency_key: Option<String>,
    done: bool,
    last_user_id: i64,
    sent_count: u32,
}

/// The whole database.
pub struct Model {
    users: BTreeMap<UserId, UserRow>,
    tariffs: Vec<Tariff>,
    periods: BTreeMap<(i64, i32), i64>,
    subscriptions: BTreeMap<SubscriptionId, SubRow>,
    sub_of_user: BTreeMap<UserId, SubscriptionId>,
    keys: Vec<KeyRow>,
    promos: BTreeMap<String, PromoRow>,
    /// (promo, user) -> purchase
    redemptions: BTreeMap<(PromoId, UserId), PurchaseId>,
    purchases: BTreeMap<PurchaseId, PurchaseRow>,
    payments: BTreeMap<(&'static str, String), PaymentRow>,
    idempotency: BTreeMap<String, PurchaseId>,
    withdrawals: BTreeMap<WithdrawalId, WithdrawalRow>,
    topups: BTreeMap<TopUpId, TopUpRow>,
    broadcasts: BTreeMap<BroadcastId, BroadcastRow>,
    /// purchase -> (referrer, amount)
    rewards: BTreeMap<PurchaseId, (UserId, i64)>,
    /// (user, amount, kind, reference)
    ledger: Vec<(UserId, i64, &'static str, String)>,
    ledger_refs: BTreeSet<(&'static str, String)>,
    renewals: BTreeSet<(SubscriptionId, DateTime<Utc>)>,
    notices: BTreeSet<(SubscriptionId, &'static str, String)>,
    deliveries: BTreeSet<(BroadcastId, UserId)>,
    audit_log: Vec<AuditRow>,
    next_id: i64,
    /// Every promo check (`validate_promo`) in simulated time, for the rate-limit checker: not
    /// a table, no answer depends on it.
    promo_checks: Vec<(UserId, String, std::time::Duration)>,
}

/// A purchase's tariff id, price, and the promo it uses.
type Quote = (i64, i64, Option<(PromoId, Percent)>);

/// An amount of the model as the port reports it; amounts here are never negative.
fn money(minor: i64) -> Money {
    Money::from_minor(minor).expect("the model never holds a negative amount")
}

fn discounted(price: i64, discount: Percent) -> i64 {
    discount.discount(money(price)).minor()
}

impl Default for Model {
    fn default() -> Self {
        Model::new()
    }
}

impl Model {
    /// A migrated database: the seed catalogue of `0001_schema.sql`.
    pub fn new() -> Model {
        let tariffs = vec![
            Tariff { id: 1, code: "basic", title: "Basic", active: true },
            Tariff { id: 2, code: "family", title: "Family", active: true },
        ];
        let mut periods = BTreeMap::new();
        for (days, price) in [(30, 19_900), (90, 54_900), (180, 99_900), (365, 179_900)] {
            periods.insert((1, days), price);
            periods.insert((2, days), price * 2);
        }
        Model {
            users: BTreeMap::new(),
            tariffs,
            periods,
            subscriptions: BTreeMap::new(),
            sub_of_user: BTreeMap::new(),
            keys: Vec::new(),
            promos: BTreeMap::new(),
            redemptions: BTreeMap::new(),
            purchases: BTreeMap::new(),
            payments: BTreeMap::new(),
            idempotency: BTreeMap::new(),
            withdrawals: BTreeMap::new(),
            topups: BTreeMap::new(),
            broadcasts: BTreeMap::new(),
            rewards: BTreeMap::new(),
            ledger: Vec::new(),
            ledger_refs: BTreeSet::new(),
            renewals: BTreeSet::new(),
            notices: BTreeSet::new(),
            deliveries: BTreeSet::new(),
            audit_log: Vec::new(),
            next_id: 1,
            promo_checks: Vec::new(),
        }
    }

    /// The next row id (one sequence for every table: only order matters to the differential
    /// test, which renames ids by their order).
    fn next<T>(&mut self, wrap: fn(i64) -> Option<T>) -> T {
        self.next_id += 1;
        wrap(self.next_id).expect("ids are positive")
    }

    /// Appends an admin audit row and returns its id.
    fn audit(
        &mut self,
        admin: UserId,
        action: &'static str,
        target: Option<UserId>,
        key: Option<String>,
        amount: Option<i64>,
    ) -> i64 {
        let id = self.next(Some);
        self.audit_log.push(AuditRow { id, admin, action, target, key, amount });
        id
    }

    /// The ledger's one way to move a balance; the caller checked it stays non-negative.
    fn post(&mut self, user: UserId, amount: i64, kind: &'static str, reference: String) {
        let row = self.users.get_mut(&user).expect("ledger entries are for known users");
        row.balance += amount;
        assert!(row.balance >= 0, "a balance went below zero: the CHECK would have refused");
        assert!(
            self.ledger_refs.insert((kind, reference.clone())),
            "a ledger reference repeated: UNIQUE (kind, reference)"
        );
        self.ledger.push((user, amount, kind, reference));
    }

    pub fn balance_of(&self, user: UserId) -> Option<Money> {
        self.users.get(&user).map(|u| money(u.balance))
    }

    /// The admin audit log in order: (admin, action, target), for checkers and the differential
    /// test.
    pub fn audit_log(&self) -> Vec<(UserId, &'static str, Option<UserId>)> {
        self.audit_log.iter().map(|r| (r.admin, r.action, r.target)).collect()
    }

    /// Every user's balance, for checkers.
    pub fn balances(&self) -> BTreeMap<UserId, Money> {
        self.users.iter().map(|(user, row)| (*user, money(row.balance))).collect()
    }

    /// The sum of a user's ledger entries (for checkers: it must equal the balance).
    pub fn ledger_sum(&self, user: UserId) -> i64 {
        self.ledger.iter().filter(|e| e.0 == user).map(|e| e.1).sum()
    }

    /// Records a new active key of a subscription.
    fn push_key(&mut self, subscription: SubscriptionId, key: atlas::ports::vpn::PanelKey) -> i64 {
        self.push_reissued_key(subscription, key, None)
    }

    fn push_reissued_key(
        &mut self,
        subscription: SubscriptionId,
        key: atlas::ports::vpn::PanelKey,
        request: Option<String>,
    ) -> i64 {
        let id = self.next(Some);
        self.keys.push(KeyRow { id, subscription, key, active: true, panel_revoked: false, request });
        id
    }

    /// Active keys by subscription, for checkers.
    pub fn active_keys(&self) -> BTreeMap<SubscriptionId, Vec<String>> {
        let mut out: BTreeMap<SubscriptionId, Vec<String>> = BTreeMap::new();
        for k in self.keys.iter().filter(|k| k.active) {
            out.entry(k.subscription).or_default().push(k.key.panel_key_id.clone());
        }
        out
    }

    /// Every key the store recorded, by panel key id: its row's id, in the order rows were written.
    pub fn key_rows(&self) -> BTreeMap<String, i64> {
        self.keys.iter().map(|k| (k.key.panel_key_id.clone(), k.id)).collect()
    }

    /// The price of a period on sale.
    pub fn price_of(&self, tariff: &TariffCode, days: i32) -> Option<Money> {
        self.price(tariff, days).ok().map(|(_, price)| money(price))
    }

    fn user_row(&self, user: UserId) -> Option<User> {
        self.users.get(&user).map(|u| User {
            id: user,
            username: u.username.clone(),
            language: u.language,
            referrer: u.referrer,
            trial_used: u.trial_used,
            banned: u.banned,
            blocked: u.blocked,
            balance: money(u.balance),
            created_at: u.created_at,
        })
    }

    fn subscription_row(&self, user: UserId) -> Option<Subscription> {
        let s = self.subscriptions.get(self.sub_of_user.get(&user)?)?;
        Some(Subscription {
            id: s.id,
            user: s.user,
            tariff_id: s.tariff_id,
            period_days: s.period_days,
            expires_at: s.expires_at,
            is_trial: s.is_trial,
            auto_renew: s.auto_renew,
            last_auto_renewal_at: s.last_auto_renewal_at,
            activation_status: s.activation_status,
            activation_attempts: s.activation_attempts,
            key_fence: s.key_fence as u64,
        })
    }

    /// `atlas_lock_user`'s checks: a known user, not banned.
    fn lock_user(&self, user: UserId) -> Result<&UserRow, UserRefusal> {
        let row = self.users.get(&user).ok_or(UserRefusal::Unknown)?;
        if row.banned {
            return Err(UserRefusal::Banned);
        }
        Ok(row)
    }

    fn price(&self, tariff: &TariffCode, days: i32) -> Result<(i64, i64), PurchaseError> {
        let t =
            self.tariffs.iter().find(|t| t.code == tariff.as_str() && t.active).ok_or(PurchaseError::UnknownTariff)?;
        let price = self.periods.get(&(t.id, days)).ok_or(PurchaseError::UnknownTariff)?;
        Ok((t.id, *price))
    }

    /// The checks of `atlas_consume_promo`, without writing.
    fn check_promo(
        &self,
        code: &PromoCode,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<(PromoId, Percent), PromoRefusal> {
        let promo = self.promos.get(code.as_str());
        if let Some(p) = promo
            && self.redemptions.contains_key(&(p.id, user))
        {
            return Err(PromoRefusal::AlreadyUsedByUser);
        }
        let p = promo.ok_or(PromoRefusal::NotFound)?;
        if !p.active {
            return Err(PromoRefusal::Disabled);
        }
        if p.expires_at.is_some_and(|at| at <= now) {
            return Err(PromoRefusal::Expired);
        }
        if p.max_uses.is_some_and(|m| p.used_count >= m) {
            return Err(PromoRefusal::Exhausted);
        }
        Ok((p.id, p.discount))
    }

    fn extend(&mut self, user: UserId, tariff_id: i64, days: i32, now: DateTime<Utc>) -> DateTime<Utc> {
        let period = Duration::days(i64::from(days));
        if let Some(id) = self.sub_of_user.get(&user) {
            let s = self.subscriptions.get_mut(id).expect("indexed");
            s.tariff_id = tariff_id;
            s.period_days = days;
            s.expires_at = s.expires_at.max(now) + period;
            s.is_trial = false;
            s.revive_activation();
            return s.expires_at;
        }
        self.new_subscription(user, tariff_id, days, now, false);
        now + period
    }

    /// Inserts a fresh subscription (pending activation) and returns its id.
    fn new_subscription(
        &mut self,
        user: UserId,
        tariff_id: i64,
        days: i32,
        now: DateTime<Utc>,
        is_trial: bool,
    ) -> SubscriptionId {
        let id = self.next(SubscriptionId::new);
        let row = SubRow {
            id,
            user,
            tariff_id,
            period_days: days,
            expires_at: now + Duration::days(i64::from(days)),
            is_trial,
            auto_renew: false,
            last_auto_renewal_at: None,
            activation_status: ActivationStatus::Pending,
            activation_attempts: 0,
            activation_next_at: None,
            key_fence: 0,
        };
        self.subscriptions.insert(id, row);
        self.sub_of_user.insert(user, id);
        id
    }

    /// `atlas_keyed_purchase`: the purchase a replayed key names, if it is this user's, paid
    /// this way (`method`: `None` from the balance) and with this code.
    fn idempotent(
        &self,
        r: &PurchaseRequest,
        method: Option<PaymentProviderKind>,
    ) -> Result<Option<PurchaseId>, PurchaseError> {
        let Some(purchase) = r.idempotency_key.as_ref().and_then(|k| self.idempotency.get(k.as_str())) else {
            return Ok(None);
        };
        let row = &self.purchases[purchase];
        if row.user != r.user {
            return Err(PurchaseError::IdempotencyKeyReused);
        }
        let promo = r.promo.as_ref().and_then(|code| self.promos.get(code.as_str())).map(|p| p.id);
        if row.method != method || row.promo != promo {
            return Err(PurchaseError::PaidAnotherWay);
        }
        Ok(Some(*purchase))
    }

    /// `atlas_open_purchase`'s checks: price, then promo.
    fn quote(&self, r: &PurchaseRequest, now: DateTime<Utc>) -> Result<Quote, PurchaseError> {
        let (tariff_id, price) = self.price(&r.tariff, r.days)?;
        let promo = match &r.promo {
            Some(code) => Some(self.check_promo(code, r.user, now)?),
            None => None,
        };
        Ok((tariff_id, price, promo))
    }

    fn open_purchase(
        &mut self,
        r: &PurchaseRequest,
        quote: Quote,
        method: Option<PaymentProviderKind>,
        status: PurchaseStatus,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> (PurchaseId, i64) {
        let (tariff_id, price, promo) = quote;
        let amount = promo.map_or(price, |(_, discount)| discounted(price, discount));
        let id = self.next(PurchaseId::new);
        let row = PurchaseRow {
            user: r.user,
            tariff_id,
            period_days: r.days,
            promo: promo.map(|p| p.0),
            amount,
            method,
            status,
            expires_at,
            paid_at: (status == PurchaseStatus::Paid).then_some(now),
            invoice: None,
            life: Life::new(now, expires_at),
        };
        self.purchases.insert(id, row);
        if let (Some((promo_id, _)), Some(code)) = (promo, &r.promo) {
            self.promos.get_mut(code.as_str()).expect("checked").used_count += 1;
            self.redemptions.insert((promo_id, r.user), id);
        }
        if let Some(key) = &r.idempotency_key {
            self.idempotency.insert(key.as_str().to_owned(), id);
        }
        (id, amount)
    }
}

/// Why `lock_user` refused; each operation maps it into its own error.
#[derive(Clone, Copy, Debug)]
enum UserRefusal {
    Unknown,
    Banned,
}
