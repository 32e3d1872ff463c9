//! Withdrawals in the model: a request holds its amount; an admin decides it once.

use atlas::domain::{IdempotencyKey, Money, Requisites, UserId, WithdrawalId, WithdrawalStatus};
use atlas::ports::store::*;
use chrono::{DateTime, Utc};

use super::{Model, UserRefusal, WithdrawalRow, money};

fn request(id: WithdrawalId, w: &WithdrawalRow) -> WithdrawalRequest {
    WithdrawalRequest {
        id,
        user: w.user,
        amount: money(w.amount),
        requisites: w.requisites.clone(),
        status: w.status,
        created_at: w.created_at,
    }
}
use crate::store_host::SimStore;

impl Withdrawals for SimStore {
    async fn create_withdrawal(
        &self,
        user: UserId,
        amount: Money,
        requisites: Requisites,
        minimum: Money,
        idempotency_key: Option<IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> Result<WithdrawalCreated, WithdrawalError> {
        self.exec("create_withdrawal", move |m: &mut Model| {
            let balance = match m.lock_user(user) {
                Ok(u) => u.balance,
                Err(UserRefusal::Banned) => return Err(WithdrawalError::UserBanned),
                Err(UserRefusal::Unknown) => return Err(WithdrawalError::UnknownUser),
            };
            let key = idempotency_key.map(|k| k.as_str().to_owned());
            let existing = m.withdrawals.iter().find(|(_, w)| key.is_some() && w.idempotency_key == key);
            if let Some((id, w)) = existing {
                if w.user != user || w.amount != amount.minor() {
                    return Err(WithdrawalError::IdempotencyKeyReused);
                }
                return Ok(WithdrawalCreated { applied: Applied::Duplicate, withdrawal: *id, balance: money(balance) });
            }
            if amount < minimum {
                return Err(WithdrawalError::BelowMinimum);
            }
            if balance < amount.minor() {
                return Err(WithdrawalError::InsufficientBalance);
            }
            let id = m.next(WithdrawalId::new);
            let row = WithdrawalRow {
                user,
                amount: amount.minor(),
                requisites,
                status: WithdrawalStatus::Pending,
                created_at: now,
                idempotency_key: key,
                decision_key: None,
            };
            m.withdrawals.insert(id, row);
            m.post(user, -amount.minor(), "withdrawal_hold", format!("withdrawal:{id}"));
            let balance = money(balance - amount.minor());
            Ok(WithdrawalCreated { applied: Applied::Done, withdrawal: id, balance })
        })
        .await?
    }

    async fn withdrawal(&self, id: WithdrawalId) -> Result<Option<WithdrawalRequest>, StoreError> {
        Ok(self.exec("withdrawal", move |m: &mut Model| m.withdrawals.get(&id).map(|w| request(id, w))).await?)
    }

    async fn pending_withdrawals(&self, limit: u32) -> Result<Vec<WithdrawalRequest>, StoreError> {
        Ok(self
            .exec("pending_withdrawals", move |m: &mut Model| {
                let mut pending: Vec<WithdrawalRequest> = m
                    .withdrawals
                    .iter()
                    .filter(|(_, w)| w.status == WithdrawalStatus::Pending)
                    .map(|(id, w)| request(*id, w))
                    .collect();
                pending.sort_by_key(|w| (w.created_at, w.id));
                pending.truncate(limit as usize);
                pending
            })
            .await?)
    }

    async fn decide_withdrawal(
        &self,
        d: WithdrawalDecision,
        _now: DateTime<Utc>,
    ) -> Result<WithdrawalDecided, WithdrawalError> {
        self.exec("decide_withdrawal", move |m: &mut Model| {
            let key = d.idempotency_key.as_ref().map(|k| k.as_str().to_owned());
            let row = m.withdrawals.get_mut(&d.withdrawal).ok_or(WithdrawalError::UnknownWithdrawal)?;
            if row.status != WithdrawalStatus::Pending {
                if key.is_some() && row.decision_key == key {
                    let amount = money(row.amount);
                    return Ok(WithdrawalDecided {
                        applied: Applied::Duplicate,
                        user: row.user,
                        amount,
                        status: row.status,
                    });
                }
                return Err(WithdrawalError::NotPending(row.status));
            }
            if key.is_some() && m.withdrawals.values().any(|w| w.decision_key == key) {
                return Err(WithdrawalError::IdempotencyKeyReused);
            }
            let row = m.withdrawals.get_mut(&d.withdrawal).expect("found");
            let approve = d.verdict == Verdict::Approve;
            row.status = if approve { WithdrawalStatus::Approved } else { WithdrawalStatus::Rejected };
            row.decision_key = key;
            let (user, amount, status) = (row.user, row.amount, row.status);
            if !approve {
                m.post(user, amount, "withdrawal_release", format!("withdrawal:{}", d.withdrawal));
            }
            let action = if approve { "withdrawal_approve" } else { "withdrawal_reject" };
            m.audit(d.admin, action, Some(user), None, None);
            Ok(WithdrawalDecided { applied: Applied::Done, user, amount: money(amount), status })
        })
        .await?
    }
}
