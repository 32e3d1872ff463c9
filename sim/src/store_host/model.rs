//! A model of the Store port: what PostgreSQL and the SQL functions of `migrations/` guarantee,
//! in memory. Each operation checks every refusal before it writes anything (a refused operation
//! writes nothing, as a rolled-back transaction), in the same order as the SQL, so the same
//! inputs get the same answers. A differential test against real PostgreSQL keeps it honest
//! (`sim/tests/differential_store.rs`).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use atlas::domain::*;
use atlas::ports::store::*;
use atlas::ports::vpn::PanelKey;

struct UserRow {
    language: Language,
    referrer: Option<UserId>,
    trial_used: bool,
    banned: bool,
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
    id: i64,
    user: UserId,
    tariff_id: i64,
    period_days: i32,
    expires_at: DateTime<Utc>,
    is_trial: bool,
    auto_renew: bool,
    last_auto_renewal_at: Option<DateTime<Utc>>,
    activation_status: ActivationStatus,
    activation_attempts: i32,
    key_fence: i64,
}

struct KeyRow {
    subscription_id: i64,
    panel_key_id: String,
    active: bool,
}

struct PromoRow {
    id: i64,
    discount_percent: i32,
    max_uses: Option<i32>,
    used_count: i32,
    active: bool,
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PurchaseStatus {
    Pending,
    Paid,
    Cancelled,
    Expired,
}

impl PurchaseStatus {
    fn code(self) -> &'static str {
        match self {
            PurchaseStatus::Pending => "pending",
            PurchaseStatus::Paid => "paid",
            PurchaseStatus::Cancelled => "cancelled",
            PurchaseStatus::Expired => "expired",
        }
    }
}

struct PurchaseRow {
    user: UserId,
    tariff_id: i64,
    period_days: i32,
    promo_id: Option<i64>,
    amount: i64,
    /// None: paid from the balance.
    method: Option<PaymentProviderKind>,
    status: PurchaseStatus,
    expires_at: DateTime<Utc>,
}

struct PaymentRow {
    id: i64,
    user: UserId,
    amount: i64,
    topup: bool,
    purchase_id: Option<i64>,
}

struct WithdrawalRow {
    user: UserId,
    amount: i64,
    status: WithdrawalStatus,
}

/// The whole database.
pub struct Model {
    users: BTreeMap<UserId, UserRow>,
    tariffs: Vec<Tariff>,
    periods: BTreeMap<(i64, i32), i64>,
    subscriptions: BTreeMap<i64, SubRow>,
    sub_of_user: BTreeMap<UserId, i64>,
    keys: Vec<KeyRow>,
    promos: BTreeMap<String, PromoRow>,
    /// (promo id, user) -> purchase id
    redemptions: BTreeMap<(i64, UserId), i64>,
    purchases: BTreeMap<i64, PurchaseRow>,
    payments: BTreeMap<(&'static str, String), PaymentRow>,
    idempotency: BTreeMap<String, i64>,
    withdrawals: BTreeMap<i64, WithdrawalRow>,
    /// purchase id -> (referrer, amount)
    rewards: BTreeMap<i64, (UserId, i64)>,
    /// (user, amount, kind, reference)
    pub ledger: Vec<(UserId, i64, &'static str, String)>,
    ledger_refs: BTreeSet<(&'static str, String)>,
    renewals: BTreeSet<(i64, DateTime<Utc>)>,
    notices: BTreeSet<(i64, &'static str, String)>,
    audit_log: Vec<(UserId, &'static str)>,
    next_id: i64,
}

/// A purchase's tariff id, price, and the promo it uses (id, discount percent).
type Quote = (i64, i64, Option<(i64, i32)>);

fn discounted(price: i64, percent: i32) -> i64 {
    price - price * i64::from(percent) / 100
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
            rewards: BTreeMap::new(),
            ledger: Vec::new(),
            ledger_refs: BTreeSet::new(),
            renewals: BTreeSet::new(),
            notices: BTreeSet::new(),
            audit_log: Vec::new(),
            next_id: 1,
        }
    }

    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
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

    pub fn balance_of(&self, user: UserId) -> Option<i64> {
        self.users.get(&user).map(|u| u.balance)
    }

    /// Active keys by subscription, for checkers.
    pub fn active_keys(&self) -> BTreeMap<i64, Vec<String>> {
        let mut out: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for k in self.keys.iter().filter(|k| k.active) {
            out.entry(k.subscription_id).or_default().push(k.panel_key_id.clone());
        }
        out
    }

    fn lock_user(&self, user: UserId) -> Result<&UserRow, &'static str> {
        let row = self.users.get(&user).ok_or("UNKNOWN_USER")?;
        if row.banned {
            return Err("USER_BANNED");
        }
        Ok(row)
    }

    fn price(&self, tariff: &TariffCode, days: i32) -> Result<(i64, i64), &'static str> {
        let t = self.tariffs.iter().find(|t| t.code == tariff.as_str() && t.active).ok_or("UNKNOWN_TARIFF")?;
        let price = self.periods.get(&(t.id, days)).ok_or("UNKNOWN_TARIFF")?;
        Ok((t.id, *price))
    }

    /// The checks of `atlas_consume_promo`, without writing.
    fn check_promo(&self, code: &PromoCode, user: UserId, now: DateTime<Utc>) -> Result<(i64, i32), PromoRefusal> {
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
        Ok((p.id, p.discount_percent))
    }

    fn extend(&mut self, user: UserId, tariff_id: i64, days: i32, now: DateTime<Utc>) -> DateTime<Utc> {
        let period = Duration::days(i64::from(days));
        if let Some(id) = self.sub_of_user.get(&user) {
            let s = self.subscriptions.get_mut(id).expect("indexed");
            s.tariff_id = tariff_id;
            s.period_days = days;
            s.expires_at = s.expires_at.max(now) + period;
            s.is_trial = false;
            if s.activation_status == ActivationStatus::Failed {
                s.activation_status = ActivationStatus::Pending;
                s.activation_attempts = 0;
            }
            return s.expires_at;
        }
        self.new_subscription(user, tariff_id, days, now, false);
        now + period
    }

    /// Inserts a fresh subscription (pending activation) and returns its id.
    fn new_subscription(&mut self, user: UserId, tariff_id: i64, days: i32, now: DateTime<Utc>, is_trial: bool) -> i64 {
        let id = self.id();
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
            key_fence: 0,
        };
        self.subscriptions.insert(id, row);
        self.sub_of_user.insert(user, id);
        id
    }

    fn idempotent(
        &self,
        key: Option<&IdempotencyKey>,
        user: UserId,
        from_balance: bool,
    ) -> Result<Option<i64>, &'static str> {
        let Some(purchase) = key.and_then(|k| self.idempotency.get(k.as_str())) else {
            return Ok(None);
        };
        let row = &self.purchases[purchase];
        if row.user != user || row.method.is_none() != from_balance {
            return Err("IDEMPOTENCY_KEY_REUSED");
        }
        Ok(Some(*purchase))
    }

    /// `atlas_open_purchase`'s checks: price, then promo. Returns (tariff id, price, promo).
    fn quote(&self, r: &PurchaseRequest, now: DateTime<Utc>) -> Result<Quote, PurchaseError> {
        let (tariff_id, price) = self.price(&r.tariff, r.days).map_err(|_| PurchaseError::UnknownTariff)?;
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
    ) -> (i64, i64) {
        let (tariff_id, price, promo) = quote;
        let amount = promo.map_or(price, |(_, percent)| discounted(price, percent));
        let id = self.id();
        let row = PurchaseRow {
            user: r.user,
            tariff_id,
            period_days: r.days,
            promo_id: promo.map(|p| p.0),
            amount,
            method,
            status,
            expires_at,
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

    pub fn register_user(
        &mut self,
        user: UserId,
        language: Language,
        referrer: Option<UserId>,
        now: DateTime<Utc>,
    ) -> User {
        if !self.users.contains_key(&user) {
            let referrer = referrer.filter(|r| *r != user && self.users.contains_key(r));
            self.users.insert(
                user,
                UserRow { language, referrer, trial_used: false, banned: false, balance: 0, created_at: now },
            );
        }
        self.user(user).expect("just registered")
    }

    pub fn user(&self, user: UserId) -> Option<User> {
        self.users.get(&user).map(|u| User {
            id: user,
            language: u.language,
            referrer: u.referrer,
            trial_used: u.trial_used,
            banned: u.banned,
            balance: u.balance,
            created_at: u.created_at,
        })
    }

    pub fn catalogue(&self) -> Vec<TariffPeriod> {
        let mut out = Vec::new();
        for t in self.tariffs.iter().filter(|t| t.active) {
            for ((tariff_id, days), price) in &self.periods {
                if *tariff_id == t.id {
                    out.push(TariffPeriod {
                        tariff: TariffCode::parse(t.code).expect("valid"),
                        title: t.title.to_owned(),
                        days: *days,
                        price: Money::from_minor(*price).expect("valid"),
                    });
                }
            }
        }
        out
    }

    pub fn subscription(&self, user: UserId) -> Option<Subscription> {
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
            key_fence: s.key_fence,
        })
    }

    pub fn top_up(
        &mut self,
        user: UserId,
        p: &ProviderPayment,
        _now: DateTime<Utc>,
    ) -> Result<TopUpOutcome, PaymentError> {
        // Money received is recorded even for a banned user.
        let balance = self.users.get(&user).ok_or(PaymentError::UnknownUser)?.balance;
        let key = (p.provider.code(), p.payment_id.as_str().to_owned());
        if let Some(existing) = self.payments.get(&key) {
            if existing.user != user || existing.amount != p.amount.minor() || !existing.topup {
                return Err(PaymentError::PaymentIdReused);
            }
            return Ok(TopUpOutcome { applied: Applied::Duplicate, payment_row_id: existing.id, balance });
        }
        let id = self.id();
        self.payments.insert(key, PaymentRow { id, user, amount: p.amount.minor(), topup: true, purchase_id: None });
        self.post(user, p.amount.minor(), "topup", format!("payment:{id}"));
        Ok(TopUpOutcome { applied: Applied::Done, payment_row_id: id, balance: balance + p.amount.minor() })
    }

    pub fn admin_adjust(&mut self, a: &AdminAdjustment, _now: DateTime<Utc>) -> Result<AdjustOutcome, BalanceError> {
        let balance = self.users.get(&a.user).ok_or(BalanceError::UnknownUser)?.balance;
        let signed = match a.direction {
            Direction::Credit => a.amount.minor(),
            Direction::Debit => -a.amount.minor(),
        };
        if signed < 0 && balance < -signed {
            return Err(BalanceError::InsufficientBalance);
        }
        let audit = self.id();
        let (action, kind) = if signed > 0 { ("admin_credit", "admin_credit") } else { ("admin_debit", "admin_debit") };
        self.audit_log.push((a.admin, action));
        self.post(a.user, signed, kind, format!("audit:{audit}"));
        Ok(AdjustOutcome { audit_id: audit, balance: balance + signed })
    }

    pub fn create_promo(&mut self, p: &NewPromo, _now: DateTime<Utc>) -> Result<(), PromoCreateError> {
        p.check()?;
        if self.promos.contains_key(p.code.as_str()) {
            return Err(PromoCreateError::AlreadyExists);
        }
        let id = self.id();
        let row = PromoRow {
            id,
            discount_percent: p.discount_percent,
            max_uses: p.max_uses,
            used_count: 0,
            active: true,
            expires_at: p.expires_at,
        };
        self.promos.insert(p.code.as_str().to_owned(), row);
        Ok(())
    }

    pub fn set_auto_renew(&mut self, user: UserId, enabled: bool) -> bool {
        match self.sub_of_user.get(&user).and_then(|id| self.subscriptions.get_mut(id)) {
            Some(s) => {
                s.auto_renew = enabled;
                true
            }
            None => false,
        }
    }

    pub fn validate_promo(&self, user: UserId, code: &PromoCode, now: DateTime<Utc>) -> Result<PromoQuote, PromoError> {
        // The read-only check orders its refusals as `validate_promo` of the PostgreSQL adapter.
        let p = self.promos.get(code.as_str()).ok_or(PromoRefusal::NotFound)?;
        let refusal = if !p.active {
            Some(PromoRefusal::Disabled)
        } else if p.expires_at.is_some_and(|at| at <= now) {
            Some(PromoRefusal::Expired)
        } else if self.redemptions.contains_key(&(p.id, user)) {
            Some(PromoRefusal::AlreadyUsedByUser)
        } else if p.max_uses.is_some_and(|m| p.used_count >= m) {
            Some(PromoRefusal::Exhausted)
        } else {
            None
        };
        match refusal {
            Some(r) => Err(r.into()),
            None => Ok(PromoQuote { code: code.clone(), discount_percent: p.discount_percent }),
        }
    }

    pub fn purchase_from_balance(
        &mut self,
        r: &PurchaseRequest,
        now: DateTime<Utc>,
    ) -> Result<PurchaseOutcome, PurchaseError> {
        let balance = self.lock_user(r.user).map_err(user_refusal)?.balance;
        if let Some(id) = self
            .idempotent(r.idempotency_key.as_ref(), r.user, true)
            .map_err(|_| PurchaseError::IdempotencyKeyReused)?
        {
            let expires_at = self.subscription(r.user).expect("a paid purchase has a subscription").expires_at;
            return Ok(PurchaseOutcome {
                applied: Applied::Duplicate,
                purchase_id: id,
                amount: self.purchases[&id].amount,
                expires_at,
                balance,
            });
        }
        let quote = self.quote(r, now)?;
        let amount = quote.2.map_or(quote.1, |(_, percent)| discounted(quote.1, percent));
        if balance < amount {
            return Err(PurchaseError::InsufficientBalance);
        }
        let (id, amount) = self.open_purchase(r, quote, None, PurchaseStatus::Paid, now);
        if amount > 0 {
            self.post(r.user, -amount, "purchase", format!("purchase:{id}"));
        }
        let expires_at = self.extend(r.user, quote.0, r.days, now);
        Ok(PurchaseOutcome { applied: Applied::Done, purchase_id: id, amount, expires_at, balance: balance - amount })
    }

    pub fn create_pending_purchase(
        &mut self,
        r: &PurchaseRequest,
        provider: PaymentProviderKind,
        ttl_seconds: i32,
        now: DateTime<Utc>,
    ) -> Result<PendingPurchase, PurchaseError> {
        self.lock_user(r.user).map_err(user_refusal)?;
        if let Some(id) = self
            .idempotent(r.idempotency_key.as_ref(), r.user, false)
            .map_err(|_| PurchaseError::IdempotencyKeyReused)?
        {
            let p = &self.purchases[&id];
            return Ok(PendingPurchase {
                applied: Applied::Duplicate,
                purchase_id: id,
                amount: p.amount,
                expires_at: p.expires_at,
            });
        }
        let quote = self.quote(r, now)?;
        if quote.2.map_or(quote.1, |(_, percent)| discounted(quote.1, percent)) == 0 {
            return Err(PurchaseError::NothingToPay);
        }
        let expires_at = now + Duration::seconds(i64::from(ttl_seconds));
        let (id, amount) = self.open_purchase(r, quote, Some(provider), PurchaseStatus::Pending, expires_at);
        Ok(PendingPurchase { applied: Applied::Done, purchase_id: id, amount, expires_at })
    }

    pub fn finalize_purchase(
        &mut self,
        purchase_id: i64,
        p: &ProviderPayment,
        now: DateTime<Utc>,
    ) -> Result<FinalizeOutcome, PaymentError> {
        let Some(purchase) = self.purchases.get(&purchase_id) else {
            return Err(PaymentError::UnknownPurchase);
        };
        let (user, status, method, amount) = (purchase.user, purchase.status, purchase.method, purchase.amount);
        let key = (p.provider.code(), p.payment_id.as_str().to_owned());
        if let Some(existing) = self.payments.get(&key) {
            if existing.purchase_id != Some(purchase_id) || existing.amount != p.amount.minor() {
                return Err(PaymentError::PaymentIdReused);
            }
            return Ok(FinalizeOutcome::Duplicate);
        }
        if method != Some(p.provider) {
            return Err(PaymentError::MethodMismatch);
        }
        if p.amount.minor() != amount {
            return Err(PaymentError::AmountMismatch);
        }
        let id = self.id();
        if status != PurchaseStatus::Pending {
            self.payments.insert(key, PaymentRow { id, user, amount, topup: true, purchase_id: Some(purchase_id) });
            self.post(user, amount, "topup", format!("payment:{id}"));
            return Ok(FinalizeOutcome::CreditedToBalance);
        }
        self.payments.insert(key, PaymentRow { id, user, amount, topup: false, purchase_id: Some(purchase_id) });
        let row = self.purchases.get_mut(&purchase_id).expect("checked");
        row.status = PurchaseStatus::Paid;
        let (tariff_id, days) = (row.tariff_id, row.period_days);
        let expires_at = self.extend(user, tariff_id, days, now);
        Ok(FinalizeOutcome::Finalized { expires_at })
    }

    pub fn close_pending_purchase(&mut self, purchase_id: i64, closure: Closure) -> Result<(), CloseError> {
        let row = self.purchases.get_mut(&purchase_id).ok_or(CloseError::UnknownPurchase)?;
        if row.status != PurchaseStatus::Pending {
            return Err(CloseError::NotPending(row.status.code().to_owned()));
        }
        row.status = match closure {
            Closure::Cancelled => PurchaseStatus::Cancelled,
            Closure::Expired => PurchaseStatus::Expired,
        };
        if let Some(promo_id) = row.promo_id {
            let user = row.user;
            if self.redemptions.remove(&(promo_id, user)).is_some()
                && let Some(p) = self.promos.values_mut().find(|p| p.id == promo_id)
            {
                p.used_count -= 1;
            }
        }
        Ok(())
    }

    pub fn grant_referral_reward(
        &mut self,
        purchase_id: i64,
        percent: u8,
        _now: DateTime<Utc>,
    ) -> Result<ReferralOutcome, ReferralError> {
        let p = self.purchases.get(&purchase_id).ok_or(ReferralError::UnknownPurchase)?;
        if p.status != PurchaseStatus::Paid {
            return Err(ReferralError::PurchaseNotPaid);
        }
        let Some(referrer) = self.users[&p.user].referrer else {
            return Ok(ReferralOutcome::NoReferrer);
        };
        let amount = p.amount * i64::from(percent.min(100)) / 100;
        if amount <= 0 {
            return Ok(ReferralOutcome::NothingToReward);
        }
        if self.rewards.contains_key(&purchase_id) {
            return Ok(ReferralOutcome::Duplicate);
        }
        self.rewards.insert(purchase_id, (referrer, amount));
        self.post(referrer, amount, "referral_reward", format!("purchase:{purchase_id}"));
        Ok(ReferralOutcome::Granted { referrer, amount })
    }

    pub fn create_withdrawal(
        &mut self,
        user: UserId,
        amount: Money,
        minimum: Money,
    ) -> Result<WithdrawalCreated, WithdrawalError> {
        let balance = match self.lock_user(user) {
            Ok(u) => u.balance,
            Err("USER_BANNED") => return Err(WithdrawalError::UserBanned),
            Err(_) => return Err(WithdrawalError::UnknownUser),
        };
        if amount < minimum {
            return Err(WithdrawalError::BelowMinimum);
        }
        if balance < amount.minor() {
            return Err(WithdrawalError::InsufficientBalance);
        }
        let id = self.id();
        self.withdrawals.insert(id, WithdrawalRow { user, amount: amount.minor(), status: WithdrawalStatus::Pending });
        self.post(user, -amount.minor(), "withdrawal_hold", format!("withdrawal:{id}"));
        Ok(WithdrawalCreated { withdrawal_id: id, balance: balance - amount.minor() })
    }

    pub fn decide_withdrawal(&mut self, d: &WithdrawalDecision) -> Result<WithdrawalDecided, WithdrawalError> {
        let row = self.withdrawals.get_mut(&d.withdrawal_id).ok_or(WithdrawalError::UnknownWithdrawal)?;
        if row.status != WithdrawalStatus::Pending {
            return Err(WithdrawalError::NotPending(row.status));
        }
        row.status = if d.approve { WithdrawalStatus::Approved } else { WithdrawalStatus::Rejected };
        let (user, amount, status) = (row.user, row.amount, row.status);
        if !d.approve {
            self.post(user, amount, "withdrawal_release", format!("withdrawal:{}", d.withdrawal_id));
        }
        self.audit_log.push((d.admin, if d.approve { "withdrawal_approve" } else { "withdrawal_reject" }));
        Ok(WithdrawalDecided { user, amount, status })
    }

    pub fn auto_renew_next(&mut self, now: DateTime<Utc>, horizon_seconds: i32) -> Option<RenewalOutcome> {
        let due = now + Duration::seconds(i64::from(horizon_seconds));
        let s = self
            .subscriptions
            .values()
            .filter(|s| {
                s.auto_renew && !s.is_trial && s.expires_at <= due && !self.renewals.contains(&(s.id, s.expires_at))
            })
            .min_by_key(|s| (s.expires_at, s.id))?;
        let (id, user, tariff_id, days, period_start) = (s.id, s.user, s.tariff_id, s.period_days, s.expires_at);
        let active = self.tariffs.iter().any(|t| t.id == tariff_id && t.active);
        let price = self.periods.get(&(tariff_id, days)).copied().filter(|_| active);
        let balance = self.users[&user].balance;
        self.renewals.insert((id, period_start));
        let claim = self.id();
        let Some(price) = price else {
            return Some(RenewalOutcome::TariffUnavailable { subscription_id: id, user });
        };
        if balance < price {
            return Some(RenewalOutcome::InsufficientFunds { subscription_id: id, user });
        }
        self.post(user, -price, "auto_renewal", format!("renewal:{claim}"));
        let s = self.subscriptions.get_mut(&id).expect("found");
        s.expires_at = s.expires_at.max(now) + Duration::days(i64::from(days));
        s.last_auto_renewal_at = Some(now);
        Some(RenewalOutcome::Renewed { subscription_id: id, user, amount: price, expires_at: s.expires_at })
    }

    pub fn activate_trial(
        &mut self,
        user: UserId,
        tariff: &TariffCode,
        days: i32,
        now: DateTime<Utc>,
    ) -> Result<Subscription, TrialError> {
        let row = match self.lock_user(user) {
            Ok(u) => u,
            Err("USER_BANNED") => return Err(TrialError::UserBanned),
            Err(_) => return Err(TrialError::UnknownUser),
        };
        if row.trial_used {
            return Err(TrialError::AlreadyUsed);
        }
        if self.sub_of_user.contains_key(&user) {
            return Err(TrialError::NotForSubscribers);
        }
        let tariff_id = self.tariffs.iter().find(|t| t.code == tariff.as_str()).ok_or(TrialError::UnknownTariff)?.id;
        self.users.get_mut(&user).expect("checked").trial_used = true;
        self.new_subscription(user, tariff_id, days, now, true);
        Ok(self.subscription(user).expect("just created"))
    }

    pub fn pending_activations(&self, limit: i64) -> Vec<i64> {
        let pending = self.subscriptions.values().filter(|s| s.activation_status == ActivationStatus::Pending);
        pending.map(|s| s.id).take(limit.max(0) as usize).collect()
    }

    pub fn record_activation(&mut self, subscription_id: i64, result: &ActivationResult) -> ActivationOutcome {
        let Some(s) =
            self.subscriptions.get_mut(&subscription_id).filter(|s| s.activation_status == ActivationStatus::Pending)
        else {
            return ActivationOutcome::NotPending;
        };
        match result {
            ActivationResult::Succeeded { panel_key_id, .. } => {
                s.activation_status = ActivationStatus::Active;
                self.keys.push(KeyRow { subscription_id, panel_key_id: panel_key_id.clone(), active: true });
                ActivationOutcome::Activated
            }
            ActivationResult::Failed { .. } => {
                s.activation_attempts += 1;
                if s.activation_attempts >= ACTIVATION_ATTEMPTS_MAX {
                    s.activation_status = ActivationStatus::Failed;
                    ActivationOutcome::GaveUp
                } else {
                    ActivationOutcome::WillRetry { attempts: s.activation_attempts }
                }
            }
        }
    }

    pub fn claim_key_fence(&mut self, subscription_id: i64, token: u64) -> Result<(), KeyError> {
        let token =
            i64::try_from(token).map_err(|_| KeyError::Unexpected(anyhow::anyhow!("fencing token out of range")))?;
        let s = self.subscriptions.get_mut(&subscription_id).ok_or(KeyError::UnknownSubscription)?;
        if token <= s.key_fence {
            return Err(KeyError::StaleFencingToken { current: s.key_fence });
        }
        s.key_fence = token;
        Ok(())
    }

    pub fn install_reissued_key(
        &mut self,
        subscription_id: i64,
        token: u64,
        key: &PanelKey,
    ) -> Result<KeyInstalled, KeyError> {
        let token =
            i64::try_from(token).map_err(|_| KeyError::Unexpected(anyhow::anyhow!("fencing token out of range")))?;
        let s = self.subscriptions.get_mut(&subscription_id).ok_or(KeyError::UnknownSubscription)?;
        if token < s.key_fence {
            return Err(KeyError::StaleFencingToken { current: s.key_fence });
        }
        s.key_fence = token;
        s.activation_status = ActivationStatus::Active;
        let mut replaced = None;
        for k in self.keys.iter_mut().filter(|k| k.subscription_id == subscription_id && k.active) {
            k.active = false;
            replaced = Some(k.panel_key_id.clone());
        }
        self.keys.push(KeyRow { subscription_id, panel_key_id: key.panel_key_id.clone(), active: true });
        let key_id = self.id();
        Ok(KeyInstalled { key_id, replaced_panel_key_id: replaced })
    }

    pub fn claim_notice(&mut self, subscription_id: i64, kind: NoticeKind, threshold: &str) -> bool {
        self.notices.insert((subscription_id, kind.code(), threshold.to_owned()))
    }
}

fn user_refusal(code: &str) -> PurchaseError {
    if code == "USER_BANNED" { PurchaseError::UserBanned } else { PurchaseError::UnknownUser }
}
