//! What the checkers of a whole-bot run read from the database at the end: each finding is one
//! sentence naming the row that breaks a rule of DESIGN.md §5, so an empty list is a pass.

use chrono::{DateTime, Utc};

use super::Model;
use atlas::domain::{ActivationStatus, PurchaseStatus, WithdrawalStatus};

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

    /// `promo_within_limits`: no code used more than allowed, its count equal to its
    /// redemptions (one per user, by the table's key).
    pub fn promo_findings(&self) -> Vec<String> {
        let mut found = Vec::new();
        for (code, promo) in &self.promos {
            let redeemed = self.redemptions.keys().filter(|(p, _)| *p == promo.id).count() as u32;
            if promo.max_uses.is_some_and(|max| promo.used_count > max) {
                found.push(format!(
                    "code {code}: used {} times, at most {:?} allowed",
                    promo.used_count, promo.max_uses
                ));
            }
            if promo.used_count != redeemed {
                found.push(format!("code {code}: used_count {} but {redeemed} redemptions", promo.used_count));
            }
        }
        found
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
        found
    }
}
