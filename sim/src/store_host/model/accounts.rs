//! Accounts in the model: registration and profile, top-ups (direct and pending), an admin's
//! credit or debit, referral earnings.

use std::time::Duration;

use atlas::domain::{
    IdempotencyKey, Language, Money, PaymentProviderKind, PurchaseStatus, TopUpId, User, UserId, Username,
};
use atlas::ports::store::*;
use chrono::{DateTime, Utc};

use super::{Model, PaymentRow, TopUpRow, UserRefusal, UserRow, money};
use crate::store_host::SimStore;

impl Accounts for SimStore {
    async fn register_user(
        &self,
        user: UserId,
        language: Language,
        referrer: Option<UserId>,
        username: Option<Username>,
        now: DateTime<Utc>,
    ) -> Result<User, StoreError> {
        Ok(self
            .exec("register_user", move |m: &mut Model| {
                // A username changes hands: whoever had it before loses it.
                if let Some(name) = &username {
                    let taken = |other: &Option<Username>| {
                        other.as_ref().is_some_and(|o| o.as_str().eq_ignore_ascii_case(name.as_str()))
                    };
                    for (id, row) in m.users.iter_mut() {
                        if *id != user && taken(&row.username) {
                            row.username = None;
                        }
                    }
                }
                match m.users.get_mut(&user) {
                    Some(row) => {
                        row.username = username;
                        row.blocked = false;
                    }
                    None => {
                        let referrer = referrer.filter(|r| *r != user && m.users.contains_key(r));
                        let row = UserRow {
                            username,
                            language,
                            referrer,
                            trial_used: false,
                            banned: false,
                            blocked: false,
                            balance: 0,
                            created_at: now,
                        };
                        m.users.insert(user, row);
                    }
                }
                m.user_row(user).expect("just registered")
            })
            .await?)
    }

    async fn user(&self, user: UserId) -> Result<Option<User>, StoreError> {
        Ok(self.exec("user", move |m: &mut Model| m.user_row(user)).await?)
    }

    async fn set_language(&self, user: UserId, language: Language) -> Result<bool, StoreError> {
        Ok(self
            .exec("set_language", move |m: &mut Model| match m.users.get_mut(&user) {
                Some(row) => {
                    row.language = language;
                    true
                }
                None => false,
            })
            .await?)
    }

    async fn set_reachable(&self, user: UserId, reachable: bool, _now: DateTime<Utc>) -> Result<(), StoreError> {
        Ok(self
            .exec("set_reachable", move |m: &mut Model| {
                if let Some(row) = m.users.get_mut(&user) {
                    row.blocked = !reachable;
                }
            })
            .await?)
    }

    async fn referral_stats(&self, user: UserId) -> Result<ReferralStats, StoreError> {
        Ok(self
            .exec("referral_stats", move |m: &mut Model| {
                let invited = m.users.values().filter(|u| u.referrer == Some(user)).count() as u64;
                let earned = m.rewards.values().filter(|(referrer, _)| *referrer == user).map(|(_, a)| a).sum();
                ReferralStats { invited, earned: money(earned) }
            })
            .await?)
    }

    async fn top_up(
        &self,
        user: UserId,
        payment: ProviderPayment,
        _now: DateTime<Utc>,
    ) -> Result<TopUpOutcome, PaymentError> {
        self.exec("top_up", move |m: &mut Model| {
            // Money received is recorded even for a banned user.
            let balance = m.users.get(&user).ok_or(PaymentError::UnknownUser)?.balance;
            let amount = payment.amount.minor();
            let key = (payment.provider.code(), payment.payment_id.as_str().to_owned());
            if let Some(existing) = m.payments.get(&key) {
                if existing.user != user || existing.amount != amount || !existing.topup {
                    return Err(PaymentError::PaymentIdReused);
                }
                let payment_row_id = existing.id;
                return Ok(TopUpOutcome { applied: Applied::Duplicate, payment_row_id, balance: money(balance) });
            }
            let id = m.next(Some);
            let row = PaymentRow { id, user, amount, topup: true, purchase: None, topup_id: None };
            m.payments.insert(key, row);
            m.post(user, amount, "topup", format!("payment:{id}"));
            Ok(TopUpOutcome { applied: Applied::Done, payment_row_id: id, balance: money(balance + amount) })
        })
        .await?
    }

    async fn admin_adjust(&self, a: AdminAdjustment, _now: DateTime<Utc>) -> Result<AdjustOutcome, BalanceError> {
        self.exec("admin_adjust", move |m: &mut Model| {
            let balance = m.users.get(&a.user).ok_or(BalanceError::UnknownUser)?.balance;
            let signed = match a.direction {
                Direction::Credit => a.amount.minor(),
                Direction::Debit => -a.amount.minor(),
            };
            let key = a.idempotency_key.as_ref().map(|k| k.as_str().to_owned());
            if let Some(existing) = key.as_ref().and_then(|k| m.audit_log.iter().find(|r| r.key.as_ref() == Some(k))) {
                if existing.target != Some(a.user) || existing.amount != Some(signed) {
                    return Err(BalanceError::IdempotencyKeyReused);
                }
                let audit_id = existing.id;
                return Ok(AdjustOutcome { applied: Applied::Duplicate, audit_id, balance: money(balance) });
            }
            if signed < 0 && balance < -signed {
                return Err(BalanceError::InsufficientBalance);
            }
            let kind = if signed > 0 { "admin_credit" } else { "admin_debit" };
            let audit = m.audit(a.admin, kind, Some(a.user), key, Some(signed));
            m.post(a.user, signed, kind, format!("audit:{audit}"));
            Ok(AdjustOutcome { applied: Applied::Done, audit_id: audit, balance: money(balance + signed) })
        })
        .await?
    }

    async fn create_topup(
        &self,
        user: UserId,
        amount: Money,
        provider: PaymentProviderKind,
        idempotency_key: Option<IdempotencyKey>,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<PendingTopUp, TopUpError> {
        self.exec("create_topup", move |m: &mut Model| {
            match m.lock_user(user) {
                Ok(_) => {}
                Err(UserRefusal::Unknown) => return Err(TopUpError::UnknownUser),
                Err(UserRefusal::Banned) => return Err(TopUpError::UserBanned),
            }
            let key = idempotency_key.map(|k| k.as_str().to_owned());
            let existing = m.topups.iter().find(|(_, t)| key.is_some() && t.idempotency_key == key);
            if let Some((id, t)) = existing {
                if t.user != user || t.amount != amount.minor() || t.method != provider {
                    return Err(TopUpError::IdempotencyKeyReused);
                }
                return Ok(PendingTopUp { applied: Applied::Duplicate, topup: *id, expires_at: t.expires_at });
            }
            let id = m.next(TopUpId::new);
            let expires_at = now + chrono::Duration::seconds(ttl.as_secs() as i64);
            let row = TopUpRow {
                user,
                amount: amount.minor(),
                method: provider,
                status: PurchaseStatus::Pending,
                idempotency_key: key,
                invoice: None,
                expires_at,
                life: super::Life::new(now, expires_at),
            };
            m.topups.insert(id, row);
            Ok(PendingTopUp { applied: Applied::Done, topup: id, expires_at })
        })
        .await?
    }

    async fn topup(&self, topup: TopUpId) -> Result<Option<TopUpInfo>, StoreError> {
        Ok(self
            .exec("topup", move |m: &mut Model| {
                m.topups.get(&topup).map(|t| TopUpInfo {
                    id: topup,
                    user: t.user,
                    amount: money(t.amount),
                    method: t.method,
                    status: t.status,
                    expires_at: t.expires_at,
                    invoice: t.invoice.clone(),
                })
            })
            .await?)
    }

    async fn finalize_topup(
        &self,
        topup: TopUpId,
        p: ProviderPayment,
        _now: DateTime<Utc>,
    ) -> Result<TopUpCredited, PaymentError> {
        self.exec("finalize_topup", move |m: &mut Model| {
            let t = m.topups.get(&topup).ok_or(PaymentError::UnknownTopUp)?;
            let (user, method, amount) = (t.user, t.method, t.amount);
            let balance = m.users[&user].balance;
            let key = (p.provider.code(), p.payment_id.as_str().to_owned());
            if let Some(existing) = m.payments.get(&key) {
                if existing.topup_id != Some(topup) || existing.amount != p.amount.minor() {
                    return Err(PaymentError::PaymentIdReused);
                }
                return Ok(TopUpCredited { applied: Applied::Duplicate, user, balance: money(balance) });
            }
            if method != p.provider {
                return Err(PaymentError::MethodMismatch);
            }
            if amount != p.amount.minor() {
                return Err(PaymentError::AmountMismatch);
            }
            let id = m.next(Some);
            let row = PaymentRow { id, user, amount, topup: true, purchase: None, topup_id: Some(topup) };
            m.payments.insert(key, row);
            m.post(user, amount, "topup", format!("payment:{id}"));
            let t = m.topups.get_mut(&topup).expect("checked");
            if t.status == PurchaseStatus::Pending {
                t.status = PurchaseStatus::Paid;
            }
            Ok(TopUpCredited { applied: Applied::Done, user, balance: money(balance + amount) })
        })
        .await?
    }

    async fn close_topup(&self, topup: TopUpId, closure: Closure) -> Result<(), CloseError> {
        self.exec("close_topup", move |m: &mut Model| {
            let t = m.topups.get_mut(&topup).ok_or(CloseError::UnknownPurchase)?;
            if t.status != PurchaseStatus::Pending {
                return Err(CloseError::NotPending(t.status));
            }
            if closure == Closure::Expired {
                t.life.expire();
            }
            t.status = match closure {
                Closure::Cancelled => PurchaseStatus::Cancelled,
                Closure::Expired => PurchaseStatus::Expired,
            };
            Ok(())
        })
        .await?
    }
}
