//! Purchases in the model: the catalogue, purchases from the balance and by a provider, their
//! finalization and closing, and referral rewards.

use std::time::Duration;

use atlas::domain::*;
use atlas::ports::store::*;
use chrono::{DateTime, Utc};

use super::{Model, PaymentRow, UserRefusal, discounted, money};
use crate::store_host::SimStore;

fn user_refusal(refusal: UserRefusal) -> PurchaseError {
    match refusal {
        UserRefusal::Unknown => PurchaseError::UnknownUser,
        UserRefusal::Banned => PurchaseError::UserBanned,
    }
}

impl Purchases for SimStore {
    async fn catalogue(&self) -> Result<Vec<TariffPeriod>, StoreError> {
        Ok(self
            .exec("catalogue", |m: &mut Model| {
                let mut out = Vec::new();
                for t in m.tariffs.iter().filter(|t| t.active) {
                    for ((tariff_id, days), price) in &m.periods {
                        if *tariff_id == t.id {
                            out.push(TariffPeriod {
                                tariff: TariffCode::parse(t.code).expect("valid"),
                                title: t.title.to_owned(),
                                days: *days,
                                price: money(*price),
                            });
                        }
                    }
                }
                out
            })
            .await?)
    }

    async fn purchase_from_balance(
        &self,
        r: PurchaseRequest,
        now: DateTime<Utc>,
    ) -> Result<PurchaseOutcome, PurchaseError> {
        self.exec("purchase_from_balance", move |m: &mut Model| {
            let balance = m.lock_user(r.user).map_err(user_refusal)?.balance;
            if let Some(id) = m.idempotent(&r, None)? {
                let expires_at = m.subscription_row(r.user).expect("a paid purchase has a subscription").expires_at;
                return Ok(PurchaseOutcome {
                    applied: Applied::Duplicate,
                    purchase_id: id,
                    amount: money(m.purchases[&id].amount),
                    expires_at,
                    balance: money(balance),
                });
            }
            let quote = m.quote(&r, now)?;
            let amount = quote.2.map_or(quote.1, |(_, discount)| discounted(quote.1, discount));
            if balance < amount {
                return Err(PurchaseError::InsufficientBalance);
            }
            let (id, amount) = m.open_purchase(&r, quote, None, PurchaseStatus::Paid, now, now);
            if amount > 0 {
                m.post(r.user, -amount, "purchase", format!("purchase:{id}"));
            }
            let expires_at = m.extend(r.user, quote.0, r.days, now);
            Ok(PurchaseOutcome {
                applied: Applied::Done,
                purchase_id: id,
                amount: money(amount),
                expires_at,
                balance: money(balance - amount),
            })
        })
        .await?
    }

    async fn create_pending_purchase(
        &self,
        r: PurchaseRequest,
        provider: PaymentProviderKind,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<PendingPurchase, PurchaseError> {
        self.exec("create_pending_purchase", move |m: &mut Model| {
            m.lock_user(r.user).map_err(user_refusal)?;
            if let Some(id) = m.idempotent(&r, Some(provider))? {
                let p = &m.purchases[&id];
                return Ok(PendingPurchase {
                    applied: Applied::Duplicate,
                    purchase_id: id,
                    amount: money(p.amount),
                    expires_at: p.expires_at,
                });
            }
            let quote = m.quote(&r, now)?;
            if quote.2.map_or(quote.1, |(_, discount)| discounted(quote.1, discount)) == 0 {
                return Err(PurchaseError::NothingToPay);
            }
            let expires_at = now + chrono::Duration::seconds(ttl.as_secs() as i64);
            let (id, amount) = m.open_purchase(&r, quote, Some(provider), PurchaseStatus::Pending, expires_at, now);
            Ok(PendingPurchase { applied: Applied::Done, purchase_id: id, amount: money(amount), expires_at })
        })
        .await?
    }

    async fn finalize_purchase(
        &self,
        purchase: PurchaseId,
        p: ProviderPayment,
        now: DateTime<Utc>,
    ) -> Result<FinalizeOutcome, PaymentError> {
        self.exec("finalize_purchase", move |m: &mut Model| {
            let Some(row) = m.purchases.get(&purchase) else {
                return Err(PaymentError::UnknownPurchase);
            };
            let (user, status, method, amount) = (row.user, row.status, row.method, row.amount);
            let key = (p.provider.code(), p.payment_id.as_str().to_owned());
            if let Some(existing) = m.payments.get(&key) {
                if existing.purchase != Some(purchase) || existing.amount != p.amount.minor() {
                    return Err(PaymentError::PaymentIdReused);
                }
                return Ok(FinalizeOutcome::Duplicate { to_balance: existing.topup });
            }
            if method != Some(p.provider) {
                return Err(PaymentError::MethodMismatch);
            }
            if p.amount.minor() != amount {
                return Err(PaymentError::AmountMismatch);
            }
            let id = m.next(Some);
            if status != PurchaseStatus::Pending {
                let row = PaymentRow { id, user, amount, topup: true, purchase: Some(purchase), topup_id: None };
                m.payments.insert(key, row);
                m.post(user, amount, "topup", format!("payment:{id}"));
                return Ok(FinalizeOutcome::CreditedToBalance);
            }
            m.payments
                .insert(key, PaymentRow { id, user, amount, topup: false, purchase: Some(purchase), topup_id: None });
            let row = m.purchases.get_mut(&purchase).expect("checked");
            row.status = PurchaseStatus::Paid;
            row.paid_at = Some(now);
            let (tariff_id, days) = (row.tariff_id, row.period_days);
            let expires_at = m.extend(user, tariff_id, days, now);
            Ok(FinalizeOutcome::Finalized { expires_at })
        })
        .await?
    }

    async fn close_pending_purchase(&self, purchase: PurchaseId, closure: Closure) -> Result<(), CloseError> {
        self.exec("close_pending_purchase", move |m: &mut Model| {
            let row = m.purchases.get_mut(&purchase).ok_or(CloseError::UnknownPurchase)?;
            if row.status != PurchaseStatus::Pending {
                return Err(CloseError::NotPending(row.status));
            }
            if closure == Closure::Expired {
                row.life.expire();
            }
            row.status = match closure {
                Closure::Cancelled => PurchaseStatus::Cancelled,
                Closure::Expired => PurchaseStatus::Expired,
            };
            if let Some(promo) = row.promo {
                let user = row.user;
                if m.redemptions.remove(&(promo, user)).is_some()
                    && let Some(p) = m.promos.values_mut().find(|p| p.id == promo)
                {
                    p.used_count -= 1;
                }
            }
            Ok(())
        })
        .await?
    }

    async fn purchase(&self, purchase: PurchaseId) -> Result<Option<PurchaseInfo>, StoreError> {
        Ok(self
            .exec("purchase", move |m: &mut Model| {
                let p = m.purchases.get(&purchase)?;
                let tariff = m.tariffs.iter().find(|t| t.id == p.tariff_id).expect("purchases name known tariffs");
                Some(PurchaseInfo {
                    id: purchase,
                    user: p.user,
                    tariff: TariffCode::parse(tariff.code).expect("valid"),
                    days: p.period_days,
                    amount: money(p.amount),
                    method: p.method,
                    status: p.status,
                    expires_at: p.expires_at,
                    invoice: p.invoice.clone(),
                })
            })
            .await?)
    }

    async fn attach_invoice(&self, payable: Payable, invoice: &Invoice) -> Result<(), InvoiceError> {
        let invoice = invoice.clone();
        self.exec("attach_invoice", move |m: &mut Model| {
            let slot = match payable {
                Payable::Purchase(id) => m.purchases.get_mut(&id).map(|p| &mut p.invoice),
                Payable::TopUp(id) => m.topups.get_mut(&id).map(|t| &mut t.invoice),
            };
            let slot = slot.ok_or(InvoiceError::Unknown)?;
            match slot {
                Some(existing) if *existing != invoice => Err(InvoiceError::AlreadyAttached),
                _ => {
                    *slot = Some(invoice);
                    Ok(())
                }
            }
        })
        .await?
    }

    async fn grant_referral_reward(
        &self,
        purchase: PurchaseId,
        percent: Percent,
        _now: DateTime<Utc>,
    ) -> Result<ReferralOutcome, ReferralError> {
        self.exec("grant_referral_reward", move |m: &mut Model| {
            let p = m.purchases.get(&purchase).ok_or(ReferralError::UnknownPurchase)?;
            if p.status != PurchaseStatus::Paid {
                return Err(ReferralError::PurchaseNotPaid);
            }
            let Some(referrer) = m.users[&p.user].referrer else {
                return Ok(ReferralOutcome::NoReferrer);
            };
            let amount = percent.of(money(p.amount)).minor();
            if amount <= 0 {
                return Ok(ReferralOutcome::NothingToReward);
            }
            if m.rewards.contains_key(&purchase) {
                return Ok(ReferralOutcome::Duplicate);
            }
            m.rewards.insert(purchase, (referrer, amount));
            m.post(referrer, amount, "referral_reward", format!("purchase:{purchase}"));
            Ok(ReferralOutcome::Granted { referrer, amount: money(amount) })
        })
        .await?
    }

    async fn unrewarded_purchases(
        &self,
        now: DateTime<Utc>,
        window: std::time::Duration,
        percent: Percent,
        limit: u32,
    ) -> Result<Vec<PurchaseId>, StoreError> {
        Ok(self
            .exec("unrewarded_purchases", move |m: &mut Model| {
                let since = now - chrono::Duration::from_std(window).expect("a window of days");
                m.purchases
                    .iter()
                    .filter(|(id, p)| {
                        p.status == PurchaseStatus::Paid
                            && p.paid_at.is_some_and(|at| at > since && at <= now)
                            && m.users[&p.user].referrer.is_some()
                            && p.amount * i64::from(percent.get()) / 100 > 0
                            && !m.rewards.contains_key(id)
                    })
                    .map(|(id, _)| *id)
                    .take(limit as usize)
                    .collect()
            })
            .await?)
    }

    async fn open_payables(&self, after: Option<Payable>, limit: u32) -> Result<Vec<OpenPayable>, StoreError> {
        Ok(self
            .exec("open_payables", move |m: &mut Model| {
                let purchases = m.purchases.iter().filter_map(|(id, p)| {
                    let method = p.method.filter(|_| p.status == PurchaseStatus::Pending)?;
                    Some(OpenPayable {
                        payable: Payable::Purchase(*id),
                        user: p.user,
                        method,
                        amount: money(p.amount),
                        expires_at: p.expires_at,
                        invoice: p.invoice.clone(),
                    })
                });
                let topups =
                    m.topups.iter().filter(|(_, t)| t.status == PurchaseStatus::Pending).map(|(id, t)| OpenPayable {
                        payable: Payable::TopUp(*id),
                        user: t.user,
                        method: t.method,
                        amount: money(t.amount),
                        expires_at: t.expires_at,
                        invoice: t.invoice.clone(),
                    });
                purchases.chain(topups).filter(|o| after.is_none_or(|a| o.payable > a)).take(limit as usize).collect()
            })
            .await?)
    }
}
