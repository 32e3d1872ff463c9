//! Withdrawals in the model: a request holds its amount; an admin decides it once.

use atlas::domain::{Money, Requisites, UserId, WithdrawalId, WithdrawalStatus};
use atlas::ports::store::*;
use chrono::{DateTime, Utc};

use super::{Model, UserRefusal, WithdrawalRow, money};
use crate::store_host::SimStore;

impl Withdrawals for SimStore {
    async fn create_withdrawal(
        &self,
        user: UserId,
        amount: Money,
        _requisites: Requisites,
        minimum: Money,
        _now: DateTime<Utc>,
    ) -> Result<WithdrawalCreated, WithdrawalError> {
        self.exec(move |m: &mut Model| {
            let balance = match m.lock_user(user) {
                Ok(u) => u.balance,
                Err(UserRefusal::Banned) => return Err(WithdrawalError::UserBanned),
                Err(UserRefusal::Unknown) => return Err(WithdrawalError::UnknownUser),
            };
            if amount < minimum {
                return Err(WithdrawalError::BelowMinimum);
            }
            if balance < amount.minor() {
                return Err(WithdrawalError::InsufficientBalance);
            }
            let id = m.next(WithdrawalId::new);
            let row = WithdrawalRow { user, amount: amount.minor(), status: WithdrawalStatus::Pending };
            m.withdrawals.insert(id, row);
            m.post(user, -amount.minor(), "withdrawal_hold", format!("withdrawal:{id}"));
            Ok(WithdrawalCreated { withdrawal: id, balance: money(balance - amount.minor()) })
        })
        .await?
    }

    async fn decide_withdrawal(
        &self,
        d: WithdrawalDecision,
        _now: DateTime<Utc>,
    ) -> Result<WithdrawalDecided, WithdrawalError> {
        self.exec(move |m: &mut Model| {
            let row = m.withdrawals.get_mut(&d.withdrawal).ok_or(WithdrawalError::UnknownWithdrawal)?;
            if row.status != WithdrawalStatus::Pending {
                return Err(WithdrawalError::NotPending(row.status));
            }
            let approve = d.verdict == Verdict::Approve;
            row.status = if approve { WithdrawalStatus::Approved } else { WithdrawalStatus::Rejected };
            let (user, amount, status) = (row.user, row.amount, row.status);
            if !approve {
                m.post(user, amount, "withdrawal_release", format!("withdrawal:{}", d.withdrawal));
            }
            m.audit_log.push((d.admin, if approve { "withdrawal_approve" } else { "withdrawal_reject" }));
            Ok(WithdrawalDecided { user, amount: money(amount), status })
        })
        .await?
    }
}
