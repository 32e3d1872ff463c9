//! What the checkers of a whole-bot run read from the database at the end: each finding is one
//! sentence naming the row that breaks a rule of DESIGN.md §5, so an empty list is a pass.

use chrono::{DateTime, Utc};

use super::Model;
use atlas::domain::{ActivationStatus, PurchaseId, PurchaseStatus, UserId, WithdrawalStatus};

impl Model {
    /// `ledger_conserved`: every balance equals the sum of its ledger entries and is not
    /// negative; every provider payment was counted once, for one order.
    pub fn money_findings(&self) -> Vec<String> {
        let mut found = Vec::new();
        for (user, row) in &self.users {
            let ledger = self.ledger_sum(*user);
            if row.balance != ledger {
                found.push(format!("user {user}: balance {} but the ledger sums to {ledger}", row.balance));
            }
            if row.balance < 0 {
                found.push(format!("user {user}: balance {} below zero", row.balance));
            }
        }
        for (id, purchase) in &self.purchases {
            let paying = self.payments.values().filter(|p| p.purchase == Some(*id) && !p.topup).count();
            let expected = usize::from(purchase.status == PurchaseStatus::Paid && purchase.method.is_some());
            if paying != expected {
                found.push(format!(
                    "purchase {id} ({:?}, {:?}): {paying} payments counted for it, {expected} expected",
                    purchase.status, purchase.method
                ));
            }
        }
        found
    }

    /// `promo_within_limits`, read from the purchases themselves: the orders that hold a code
    /// (pending or paid) are one per user and code, each has its redemption, and their number is
    /// the code's `used_count`, at most its `max_uses`.
    pub fn promo_findings(&self) -> Vec<String> {
        let mut found = Vec::new();
        for (code, promo) in &self.promos {
            let holding: Vec<(&PurchaseId, &UserId)> = self
                .purchases
                .iter()
                .filter(|(_, p)| {
                    p.promo == Some(promo.id) && matches!(p.status, PurchaseStatus::Pending | PurchaseStatus::Paid)
                })
                .map(|(id, p)| (id, &p.user))
                .collect();
            let users: std::collections::BTreeSet<&UserId> = holding.iter().map(|(_, u)| *u).collect();
            if users.len() != holding.len() {
                found.push(format!("code {code}: {} orders hold it for {} users", holding.len(), users.len()));
            }
            for (purchase, user) in &holding {
                if self.redemptions.get(&(promo.id, **user)) != Some(*purchase) {
                    found.push(format!("code {code}: order {purchase} of user {user} holds it without its redemption"));
                }
            }
            let used = holding.len() as u32;
            if promo.used_count != used {
                found.push(format!("code {code}: used_count {} but {used} orders hold it", promo.used_count));
            }
            if promo.max_uses.is_some_and(|max| used > max) {
                found.push(format!("code {code}: held by {used} orders, at most {:?} allowed", promo.max_uses));
            }
        }
        found
    }

    /// The provider payments counted, as (provider, payment id, user, amount in minor units),
    /// for the checkers to hold against what the providers saw paid.
    pub fn provider_payments(&self) -> Vec<(&'static str, String, UserId, i64)> {
        self.payments.iter().map(|((provider, id), row)| (*provider, id.clone(), row.user, row.amount)).collect()
    }

    /// Every promo code checked, by whom and when (simulated time).
    pub fn promo_checks(&self) -> Vec<(UserId, String, std::time::Duration)> {
        self.promo_checks.clone()
    }

    /// Each subscription's owner, for checkers that see subscription ids at the panel.
    pub fn subscription_owners(&self) -> Vec<(String, UserId)> {
        self.subscriptions.values().map(|s| (s.id.to_string(), s.user)).collect()
    }

    /// The texts of the broadcasts admins queued, one per job.
    pub fn broadcast_texts(&self) -> Vec<String> {
        self.broadcasts.values().map(|b| b.text.clone()).collect()
    }

    /// Every withdrawal request's owner, by request id.
    pub fn withdrawal_owners(&self) -> Vec<(i64, UserId)> {
        self.withdrawals.iter().map(|(id, w)| (id.get(), w.user)).collect()
    }

    /// `liveness` of payments: an order waits for its payment as long as its opener said (a
    /// buyer told "pay within an hour" is not refused after a minute because another instance's
    /// clock is ahead). Every closure as expired counts: in whole-bot runs the fake Crypto Pay
    /// never expires an invoice itself (a workload that makes it would have to exempt those).
    pub fn orders_cut_short(&self) -> Vec<String> {
        let purchases = self.purchases.iter().map(|(id, p)| (format!("purchase {id}"), p.user, &p.life));
        let topups = self.topups.iter().map(|(id, t)| (format!("top-up {id}"), t.user, &t.life));
        purchases
            .chain(topups)
            .filter_map(|(order, user, life)| {
                let short = life.cut_short()?;
                Some(format!(
                    "{order} of user {user} was closed as expired {} s early (it was opened to wait {} s)",
                    short.num_seconds(),
                    life.meant.num_seconds()
                ))
            })
            .collect()
    }

    /// `liveness`, in the database: what is still waiting at `now` (a withdrawal nobody decided,
    /// a running subscription without its key).
    pub fn open_work(&self, now: DateTime<Utc>) -> Vec<String> {
        let mut found = Vec::new();
        for (id, w) in &self.withdrawals {
            if w.status == WithdrawalStatus::Pending {
                found.push(format!("withdrawal {id} of user {} is still pending", w.user));
            }
        }
        for s in self.subscriptions.values() {
            if s.expires_at > now && s.activation_status != ActivationStatus::Active {
                found.push(format!(
                    "subscription {} of user {} has no key ({:?}, {} attempts, next at {:?})",
                    s.id, s.user, s.activation_status, s.activation_attempts, s.activation_next_at
                ));
            }
        }
        for (id, b) in &self.broadcasts {
            if !b.done {
                found.push(format!("broadcast {id} is still being sent ({} sent)", b.sent_count));
            }
        }
        found
    }
}
