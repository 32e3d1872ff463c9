//! The payment watcher, leader-only: every purchase and top-up waiting for a provider is looked
//! at in pages (a cursor walks them, so none waits behind a long list). A crypto invoice is asked
//! of the provider in one call per page: paid → counted once by its payment id (the same store
//! operation as the user's "Check payment" and the `invoice_paid` webhook), with the referrer
//! rewarded and the user told; expired at the provider → closed (a purchase gives its promo use
//! back). An invoice the provider still offers keeps its order open, past our own expiry too.
//! An order without an invoice the provider lists (Stars, or a crypto order whose invoice was
//! never made) is closed once it expired.
//! Nothing is closed that the provider could not be asked about.

use chrono::{DateTime, Utc};

use super::notify::tell;
use super::{Lease, Tally};
use crate::bot::menu::back;
use crate::bot::purchase::subscription_keys;
use crate::bot::text::Msg;
use crate::domain::{Payable, PaymentProviderKind, UserId};
use crate::ports::PaymentProvider;
use crate::ports::payments::InvoiceStatus;
use crate::ports::store::{
    Accounts, Applied, CloseError, Closure, FinalizeOutcome, OpenPayable, PaymentError, ProviderPayment, Purchases,
};
use crate::runtime::wiring::{Adapters, App};

/// Looks at one page of at most `limit` open orders after `cursor`, and moves the cursor (back
/// to the start after the last page).
pub async fn tick<A: Adapters>(app: &App<A>, lease: Lease<'_>, cursor: &mut Option<Payable>, limit: u32) -> Tally {
    let mut tally = Tally::default();
    if cursor.is_none() {
        rewards(app, lease, limit, &mut tally).await;
    }
    let page = match app.store.open_payables(*cursor, limit).await {
        Ok(page) => page,
        Err(e) => {
            tracing::warn!(error = %e, "open orders not read");
            tally.failed += 1;
            return tally;
        }
    };
    let last_page = page.len() < limit as usize;
    // Moves past what was looked at only: a tick stopped by the lease resumes where it stopped.
    let mut looked_at = *cursor;
    let mut stopped = false;
    let invoice_ids: Vec<String> = page
        .iter()
        .filter(|o| o.method == PaymentProviderKind::Crypto)
        .filter_map(|o| o.invoice.as_ref().map(|i| i.invoice_id.clone()))
        .collect();
    let statuses = if invoice_ids.is_empty() {
        Some(Vec::new())
    } else {
        match app.crypto.invoice_statuses(&invoice_ids).await {
            Ok(statuses) => Some(statuses),
            Err(e) => {
                tracing::warn!(event = "PAYMENT_POLL_FAILED", error = %e, "crypto invoices not checked");
                tally.failed += 1;
                None
            }
        }
    };
    let now = app.clock.now();
    for open in page {
        if !lease.holds() {
            stopped = true;
            break;
        }
        looked_at = Some(open.payable);
        let status = match &open.invoice {
            Some(invoice) if open.method == PaymentProviderKind::Crypto => match &statuses {
                // The provider could not be asked: nothing is decided about this one.
                None => continue,
                Some(list) => list.iter().find(|(id, _)| *id == invoice.invoice_id).map(|(_, s)| s.clone()),
            },
            _ => None,
        };
        match decide(&open, status, now) {
            Decision::Wait => tally.skipped += 1,
            Decision::Close => match close(app, open.payable).await {
                Ok(()) => {
                    tracing::info!(event = "ORDER_EXPIRED", payable = %open.payable.payload(), "closed unpaid");
                    tally.done += 1;
                }
                Err(CloseError::NotPending(_)) => tally.skipped += 1,
                Err(e) => {
                    tracing::warn!(payable = %open.payable.payload(), error = %e, "expired order not closed");
                    tally.failed += 1;
                }
            },
            Decision::Count(payment) => match count(app, open.payable, open.user, payment).await {
                Counted::Now => tally.done += 1,
                Counted::Before => tally.skipped += 1,
                Counted::Refused | Counted::Failed => tally.failed += 1,
            },
        }
    }
    *cursor = if last_page && !stopped { None } else { looked_at };
    tally
}

enum Decision {
    Wait,
    Close,
    Count(ProviderPayment),
}

/// What to do with an open order, given what the provider says of its invoice (`None`: it has
/// no crypto invoice, or the provider does not list it). An invoice the provider still offers is
/// never closed under it, even past our own expiry (it was made after the order, and expires at
/// the provider a little later): a payment can still arrive, and only an open order is polled.
fn decide(open: &OpenPayable, status: Option<InvoiceStatus>, now: DateTime<Utc>) -> Decision {
    match status {
        Some(InvoiceStatus::Paid { payment_id, amount }) => {
            Decision::Count(ProviderPayment { provider: PaymentProviderKind::Crypto, payment_id, amount })
        }
        Some(InvoiceStatus::Expired) => Decision::Close,
        Some(InvoiceStatus::Pending) => Decision::Wait,
        None if open.expires_at <= now => Decision::Close,
        None => Decision::Wait,
    }
}

async fn close<A: Adapters>(app: &App<A>, payable: Payable) -> Result<(), CloseError> {
    match payable {
        Payable::Purchase(id) => app.store.close_pending_purchase(id, Closure::Expired).await,
        Payable::TopUp(id) => app.store.close_topup(id, Closure::Expired).await,
    }
}

/// How counting a provider's payment went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// Counted now, and the payer told.
    Now,
    /// Counted before (the user's check, the watcher or the webhook was first): told then.
    Before,
    /// Refused (not ours, a mismatch: logged as `PAYMENT_UNMATCHED`); nothing credited.
    Refused,
    /// The store did not answer: nothing credited; it must be counted later.
    Failed,
}

/// Counts a provider's payment for `payable` (the `invoice_paid` webhook), once by its payment id.
pub async fn settle<A: Adapters>(app: &App<A>, payable: Payable, payment: ProviderPayment) -> Counted {
    let user = match payable {
        Payable::Purchase(id) => app.store.purchase(id).await.map(|p| p.map(|p| p.user)),
        Payable::TopUp(id) => app.store.topup(id).await.map(|t| t.map(|t| t.user)),
    };
    match user {
        Ok(Some(user)) => count(app, payable, user, payment).await,
        Ok(None) => {
            tracing::warn!(
                event = "PAYMENT_UNMATCHED",
                payable = %payable.payload(),
                payment_id = payment.payment_id.as_str(),
                reason = "no such order",
                "payment not counted"
            );
            Counted::Refused
        }
        Err(e) => {
            tracing::warn!(payable = %payable.payload(), error = %e, "payment not counted yet: the store failed");
            Counted::Failed
        }
    }
}

async fn count<A: Adapters>(app: &App<A>, payable: Payable, user: UserId, payment: ProviderPayment) -> Counted {
    let (amount, payment_id) = (payment.amount, payment.payment_id.clone());
    let now = app.clock.now();
    let refused = match payable {
        Payable::Purchase(purchase) => match app.store.finalize_purchase(purchase, payment, now).await {
            Ok(FinalizeOutcome::Finalized { expires_at }) => {
                let percent = app.rules.shop.referral_percent;
                if let Err(e) = app.store.grant_referral_reward(purchase, percent, now).await {
                    tracing::warn!(error = %e, purchase_id = purchase.get(), "referral reward not granted");
                }
                tell(app, user, &Msg::Paid { until: expires_at }, subscription_keys()).await;
                return Counted::Now;
            }
            Ok(FinalizeOutcome::CreditedToBalance) => {
                tell(app, user, &Msg::PaidToBalance { amount }, back()).await;
                return Counted::Now;
            }
            Ok(FinalizeOutcome::Duplicate { to_balance }) => {
                // Counted before; the referrer's reward may not have been granted then (a crash
                // right after the payment): granting is idempotent.
                if !to_balance {
                    let percent = app.rules.shop.referral_percent;
                    if let Err(e) = app.store.grant_referral_reward(purchase, percent, now).await {
                        tracing::warn!(error = %e, purchase_id = purchase.get(), "referral reward not granted");
                    }
                }
                return Counted::Before;
            }
            Err(e) => e,
        },
        Payable::TopUp(topup) => match app.store.finalize_topup(topup, payment, now).await {
            Ok(credited) if credited.applied == Applied::Done => {
                tell(app, user, &Msg::TopUpCredited { amount, balance: credited.balance }, back()).await;
                return Counted::Now;
            }
            Ok(_) => return Counted::Before,
            Err(e) => e,
        },
    };
    match refused {
        PaymentError::Unexpected(e) => {
            tracing::warn!(payable = %payable.payload(), error = %e, "payment not counted yet: the store failed");
            Counted::Failed
        }
        refusal => {
            tracing::warn!(
                event = "PAYMENT_UNMATCHED",
                payable = %payable.payload(),
                payment_id = payment_id.as_str(),
                reason = %refusal,
                "payment not counted"
            );
            Counted::Refused
        }
    }
}

/// How far back the watcher looks for a referral reward a stopped process left out.
pub const REWARD_WINDOW: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Grants the referral rewards of recent payments that have none (the process stopped between
/// counting a payment and rewarding its referrer); granting is idempotent.
async fn rewards<A: Adapters>(app: &App<A>, lease: Lease<'_>, limit: u32, tally: &mut Tally) {
    let percent = app.rules.shop.referral_percent;
    let missing = match app.store.unrewarded_purchases(app.clock.now(), REWARD_WINDOW, percent, limit).await {
        Ok(missing) => missing,
        Err(e) => {
            tracing::warn!(error = %e, "purchases without their referral reward not read");
            tally.failed += 1;
            return;
        }
    };
    for purchase in missing {
        if !lease.holds() {
            break;
        }
        match app.store.grant_referral_reward(purchase, percent, app.clock.now()).await {
            Ok(outcome) => {
                tracing::info!(event = "REFERRAL_REWARD_CAUGHT_UP", purchase_id = purchase.get(), ?outcome);
                tally.done += 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, purchase_id = purchase.get(), "referral reward not granted");
                tally.failed += 1;
            }
        }
    }
}
