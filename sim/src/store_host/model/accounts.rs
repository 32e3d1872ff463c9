//! Accounts in the model: registration, top-ups, an admin's credit or debit.

use atlas::domain::{Language, User, UserId};
use atlas::ports::store::*;
use chrono::{DateTime, Utc};

use super::{Model, PaymentRow, UserRow, money};
use crate::store_host::SimStore;

impl Accounts for SimStore {
    async fn register_user(
        &self,
        user: UserId,
        language: Language,
        referrer: Option<UserId>,
        now: DateTime<Utc>,
    ) -> Result<User, StoreError> {
        Ok(self
            .exec(move |m: &mut Model| {
                if !m.users.contains_key(&user) {
                    let referrer = referrer.filter(|r| *r != user && m.users.contains_key(r));
                    let row = UserRow { language, referrer, trial_used: false, banned: false, balance: 0, created_at: now };
                    m.users.insert(user, row);
                }
                m.user_row(user).expect("just registered")
            })
            .await?)
    }

    async fn user(&self, user: UserId) -> Result<Option<User>, StoreError> {
        Ok(self.exec(move |m: &mut Model| m.user_row(user)).await?)
    }

    async fn top_up(
        &self,
        user: UserId,
        payment: ProviderPayment,
        _now: DateTime<Utc>,
    ) -> Result<TopUpOutcome, PaymentError> {
        self.exec(move |m: &mut Model| {
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
            m.payments.insert(key, PaymentRow { id, user, amount, topup: true, purchase: None });
            m.post(user, amount, "topup", format!("payment:{id}"));
            Ok(TopUpOutcome { applied: Applied::Done, payment_row_id: id, balance: money(balance + amount) })
        })
        .await?
    }

    async fn admin_adjust(&self, a: AdminAdjustment, _now: DateTime<Utc>) -> Result<AdjustOutcome, BalanceError> {
        self.exec(move |m: &mut Model| {
            let balance = m.users.get(&a.user).ok_or(BalanceError::UnknownUser)?.balance;
            let signed = match a.direction {
                Direction::Credit => a.amount.minor(),
                Direction::Debit => -a.amount.minor(),
            };
            if signed < 0 && balance < -signed {
                return Err(BalanceError::InsufficientBalance);
            }
            let audit = m.next(Some);
            let kind = if signed > 0 { "admin_credit" } else { "admin_debit" };
            m.audit_log.push((a.admin, kind));
            m.post(a.user, signed, kind, format!("audit:{audit}"));
            Ok(AdjustOutcome { audit_id: audit, balance: money(balance + signed) })
        })
        .await?
    }
}
