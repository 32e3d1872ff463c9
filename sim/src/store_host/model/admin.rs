//! Admin tools in the model: finding users, the audit log, the shop's figures, broadcasts.

use atlas::domain::{BroadcastId, PurchaseStatus, User, WithdrawalStatus};
use atlas::ports::store::*;
use chrono::{DateTime, Utc};

use super::{BroadcastRow, Model, money};
use crate::store_host::SimStore;

impl AdminTools for SimStore {
    async fn find_user(&self, query: UserQuery) -> Result<Option<User>, StoreError> {
        Ok(self
            .exec("find_user", move |m: &mut Model| match &query {
                UserQuery::Id(id) => m.user_row(*id),
                UserQuery::Username(name) => {
                    let wanted = name.as_str().to_lowercase();
                    let found = m
                        .users
                        .iter()
                        .find(|(_, u)| u.username.as_ref().is_some_and(|n| n.as_str().to_lowercase() == wanted));
                    found.and_then(|(id, _)| m.user_row(*id))
                }
            })
            .await?)
    }

    async fn record_admin_action(&self, action: AdminAction, _now: DateTime<Utc>) -> Result<(), StoreError> {
        Ok(self
            .exec("record_admin_action", move |m: &mut Model| {
                m.audit(action.admin, action.action, action.target, None, None);
            })
            .await?)
    }

    async fn stats(&self, now: DateTime<Utc>) -> Result<ShopStats, StoreError> {
        Ok(self
            .exec("stats", move |m: &mut Model| {
                let running = m.subscriptions.values().filter(|s| s.expires_at > now);
                let (mut active, mut trials) = (0, 0);
                for s in running {
                    active += 1;
                    trials += u64::from(s.is_trial);
                }
                let day_ago = now - chrono::Duration::days(1);
                let paid_day = m.purchases.values().filter(|p| {
                    p.status == PurchaseStatus::Paid && p.paid_at.is_some_and(|at| at > day_ago && at <= now)
                });
                let (mut purchases_day, mut revenue) = (0, 0);
                for p in paid_day {
                    purchases_day += 1;
                    revenue += p.amount;
                }
                ShopStats {
                    users: m.users.len() as u64,
                    active_subscriptions: active,
                    trials,
                    pending_withdrawals: m
                        .withdrawals
                        .values()
                        .filter(|w| w.status == WithdrawalStatus::Pending)
                        .count() as u64,
                    purchases_day,
                    revenue_day: money(revenue),
                }
            })
            .await?)
    }

    async fn create_broadcast(
        &self,
        broadcast: NewBroadcast,
        _now: DateTime<Utc>,
    ) -> Result<BroadcastQueued, BroadcastError> {
        let NewBroadcast { admin, text, idempotency_key, .. } = broadcast;
        self.exec("create_broadcast", move |m: &mut Model| {
            let key = idempotency_key.map(|k| k.as_str().to_owned());
            if let Some((id, b)) = m.broadcasts.iter().find(|(_, b)| key.is_some() && b.idempotency_key == key) {
                if b.admin != admin || b.text != text {
                    return Err(BroadcastError::IdempotencyKeyReused);
                }
                return Ok(BroadcastQueued { applied: Applied::Duplicate, broadcast: *id });
            }
            let id = m.next(BroadcastId::new);
            m.broadcasts.insert(
                id,
                BroadcastRow { admin, text, idempotency_key: key, done: false, last_user_id: 0, sent_count: 0 },
            );
            m.audit(admin, "broadcast", None, None, None);
            Ok(BroadcastQueued { applied: Applied::Done, broadcast: id })
        })
        .await?
    }
}

impl Health for SimStore {
    /// Ready when the store host answers (its model has every table a migration would make).
    async fn ready(&self) -> Result<(), StoreError> {
        Ok(self.exec("ready", |_: &mut Model| ()).await?)
    }
}
