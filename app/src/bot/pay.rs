//! Paying with a provider, for a purchase and for a top-up alike: the invoice (a Crypto Pay
//! link, recorded on what it pays before it is shown and shown again rather than made twice; or
//! a Telegram Stars invoice), the check of a crypto invoice (a button bound to what it pays, not
//! to a conversation step, so it works from any message that shows the invoice), and counting a
//! provider payment once, whichever way it arrives.

use chrono::{DateTime, Utc};

use super::action::{Action, Method, StepInput};
use super::menu::back;
use super::state::Step;
use super::text::Msg;
use super::{Keys, Next, Turn, account, purchase};
use crate::domain::{Money, Payable, PaymentProviderKind, ProviderPaymentId, PurchaseStatus, UserId};
use crate::ports::messenger::StarsInvoice;
use crate::ports::payments::InvoiceStatus;
use crate::ports::store::{
    Accounts, CloseError, Closure, Invoice, InvoiceError, PaymentError, ProviderPayment, Purchases, StoreError,
};
use crate::ports::{Messenger, PaymentProvider};
use crate::runtime::wiring::Adapters;

/// The currency of Telegram Stars.
pub const STARS_CURRENCY: &str = "XTR";

pub fn provider(method: Method) -> Option<PaymentProviderKind> {
    match method {
        Method::Balance => None,
        Method::Crypto => Some(PaymentProviderKind::Crypto),
        Method::Stars => Some(PaymentProviderKind::Stars),
    }
}

/// What a purchase or a top-up waiting for a provider looks like to the payment code.
#[derive(Clone, Debug)]
pub struct Bill {
    pub user: UserId,
    /// How it is paid (`None`: from the balance).
    pub method: Option<PaymentProviderKind>,
    pub amount: Money,
    pub status: PurchaseStatus,
    pub expires_at: DateTime<Utc>,
    pub invoice: Option<Invoice>,
}

impl Bill {
    /// Whether `user` may pay it now with `provider`.
    pub fn payable_by(&self, user: UserId, provider: PaymentProviderKind, now: DateTime<Utc>) -> bool {
        self.user == user
            && self.method == Some(provider)
            && self.status == PurchaseStatus::Pending
            && self.expires_at > now
    }
}

pub async fn bill<A: Adapters>(turn: &Turn<'_, A>, payable: Payable) -> Result<Option<Bill>, StoreError> {
    Ok(match payable {
        Payable::Purchase(id) => turn.app.store.purchase(id).await?.map(|p| Bill {
            user: p.user,
            method: p.method,
            amount: p.amount,
            status: p.status,
            expires_at: p.expires_at,
            invoice: p.invoice,
        }),
        Payable::TopUp(id) => turn.app.store.topup(id).await?.map(|t| Bill {
            user: t.user,
            method: Some(t.method),
            amount: t.amount,
            status: t.status,
            expires_at: t.expires_at,
            invoice: t.invoice,
        }),
    })
}

/// The step that waits for `payable`'s payment.
pub fn processing(payable: Payable, method: Method) -> Step {
    match payable {
        Payable::Purchase(purchase) => Step::Purchase(purchase::Step::Processing { purchase, method }),
        Payable::TopUp(topup) => Step::TopUp(account::TopUpStep::Processing { topup, method }),
    }
}

/// The buttons under a pending invoice: check (crypto only) and, while its step is the
/// conversation's, cancel.
fn processing_keys<A: Adapters>(turn: &Turn<'_, A>, payable: Payable, method: Method, waiting: bool) -> Keys {
    let mut row = Vec::new();
    if method == Method::Crypto {
        row.push((Msg::BtnCheckPayment, Action::Check(payable)));
    }
    if waiting {
        row.push((Msg::BtnCancel, turn.step(StepInput::Cancel)));
    }
    vec![row]
}

/// Sends the invoice for `payable` and says how to pay it; `false` when no invoice could be made
/// (the user was told).
pub async fn invoice<A: Adapters>(
    turn: &mut Turn<'_, A>,
    payable: Payable,
    amount: Money,
    method: Method,
    description: Msg,
) -> bool {
    let bill = match bill(turn, payable).await {
        Ok(Some(bill)) => bill,
        Ok(None) => {
            turn.failed("bill", &"the order just opened is not there");
            return false;
        }
        Err(e) => {
            turn.failed("bill", &e);
            return false;
        }
    };
    if bill.status != PurchaseStatus::Pending || bill.expires_at <= turn.now() {
        // The same button pressed again long after an earlier press opened the order: it has
        // closed meanwhile, and its invoice can no longer be paid.
        turn.say_keys(Msg::InvoiceExpired, back());
        return false;
    }
    let description = turn.text(&description);
    match method {
        Method::Balance => unreachable!("a balance payment has no invoice"),
        Method::Crypto => {
            let Some(invoice) = crypto_invoice(turn, payable, amount, &description, bill.invoice).await else {
                return false;
            };
            let keys = processing_keys(turn, payable, method, true);
            turn.say_keys(Msg::InvoiceCrypto { amount, url: invoice.pay_url }, keys);
            true
        }
        Method::Stars => {
            let stars = turn.app.rules.shop.stars(amount);
            let invoice =
                StarsInvoice { title: turn.text(&Msg::InvoiceTitle), description, payload: payable.payload(), stars };
            match turn.app.messenger.send_invoice(turn.user(), invoice).await {
                Ok(_) => {}
                Err(crate::ports::messenger::MessengerError::ChatUnreachable) => {
                    turn.unreachable(turn.user()).await;
                    return false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "stars invoice not sent");
                    turn.say(Msg::PaymentUnavailable);
                    return false;
                }
            }
            let keys = processing_keys(turn, payable, method, true);
            turn.say_keys(Msg::InvoiceStars { stars }, keys);
            true
        }
    }
}

/// The crypto invoice of `payable`: the one already `recorded` (an earlier press or delivery of
/// this update made it), or a new one, recorded before it is shown so that a payment always
/// finds what it paid. Crypto Pay has no idempotent create: when two runs race, the one
/// recorded second shows the first's invoice and leaves its own to expire unpaid.
async fn crypto_invoice<A: Adapters>(
    turn: &mut Turn<'_, A>,
    payable: Payable,
    amount: Money,
    description: &str,
    recorded: Option<Invoice>,
) -> Option<Invoice> {
    if let Some(invoice) = recorded {
        return Some(invoice);
    }
    let made = match turn.app.crypto.create_invoice(payable, amount, description).await {
        Ok(invoice) => invoice,
        Err(e) => {
            tracing::warn!(error = %e, "crypto invoice not created");
            turn.say(Msg::PaymentUnavailable);
            return None;
        }
    };
    match turn.app.store.attach_invoice(payable, &made).await {
        Ok(()) => Some(made),
        Err(InvoiceError::AlreadyAttached) => {
            tracing::info!(
                event = "INVOICE_ORPHANED",
                payable = %payable.payload(),
                invoice_id = made.invoice_id.as_str(),
                "another run recorded its invoice first; this one expires unpaid"
            );
            match bill(turn, payable).await {
                Ok(Some(Bill { invoice: Some(invoice), .. })) => Some(invoice),
                other => {
                    turn.failed("bill", &format!("{other:?}"));
                    None
                }
            }
        }
        Err(e) => {
            turn.failed("attach_invoice", &e);
            None
        }
    }
}

/// How counting a payment went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Counted (or refused as not ours), and the payer was told.
    Told,
    /// The store could not be asked: nothing was counted and nothing said. The payment must be
    /// counted later (the update retried, the check pressed again).
    StoreFailed,
}

/// Counts a provider payment for `payable` once (by its payment id) and tells the payer.
pub async fn settle<A: Adapters>(turn: &mut Turn<'_, A>, payable: Payable, payment: ProviderPayment) -> Settled {
    let (amount, provider) = (payment.amount, payment.provider);
    let payment_id = payment.payment_id.clone();
    let now = turn.now();
    let refused = match payable {
        Payable::Purchase(purchase) => match turn.app.store.finalize_purchase(purchase, payment, now).await {
            Ok(outcome) => {
                purchase::finalized(turn, purchase, outcome, amount).await;
                return Settled::Told;
            }
            Err(e) => e,
        },
        Payable::TopUp(topup) => match turn.app.store.finalize_topup(topup, payment, now).await {
            Ok(credited) => {
                turn.say_keys(Msg::TopUpCredited { amount, balance: credited.balance }, back());
                return Settled::Told;
            }
            Err(e) => e,
        },
    };
    if let PaymentError::Unexpected(e) = &refused {
        tracing::warn!(payable = %payable.payload(), error = %e, "payment not counted yet: the store failed");
        return Settled::StoreFailed;
    }
    // A charge id the store already holds was counted (maybe at another price, by an instance
    // with another STAR_PRICE): never given back.
    if provider == PaymentProviderKind::Stars && !matches!(refused, PaymentError::PaymentIdReused) {
        refund_stars(turn, &payable.payload(), payment_id.as_str(), &refused).await;
    } else {
        unmatched(turn, &payable.payload(), payment_id.as_str(), &refused);
    }
    Settled::Told
}

/// A Stars payment that cannot be counted (for nothing we know, a price that does not match)
/// is given back to the payer at once, and they are told; when Telegram refuses the refund,
/// it is left for support as an unmatched payment (logged with its charge id).
pub async fn refund_stars<A: Adapters>(
    turn: &mut Turn<'_, A>,
    payload: &str,
    charge_id: &str,
    why: &(dyn std::fmt::Display + Sync),
) {
    tracing::warn!(event = "PAYMENT_UNMATCHED", payload, payment_id = charge_id, reason = %why, "payment not counted");
    match turn.app.messenger.refund_stars(turn.user(), charge_id).await {
        Ok(()) => {
            tracing::info!(event = "STARS_REFUNDED", payment_id = charge_id, "the payment was given back");
            turn.say_keys(Msg::PaymentRefunded, back());
        }
        Err(e) => {
            tracing::warn!(event = "STARS_REFUND_FAILED", payment_id = charge_id, error = %e, "left for support");
            turn.say_keys(Msg::PaymentUnmatched, back());
        }
    }
}

/// A payment that cannot be counted: nothing was credited; the user is asked to write to
/// support, and the event is logged for an operator with what a refund needs (the provider's
/// payment id, e.g. Telegram's charge id: an id, not a secret).
pub fn unmatched<A: Adapters>(turn: &mut Turn<'_, A>, payload: &str, payment_id: &str, why: &dyn std::fmt::Display) {
    tracing::warn!(event = "PAYMENT_UNMATCHED", payload, payment_id, reason = %why, "payment not counted");
    turn.say_keys(Msg::PaymentUnmatched, back());
}

/// What the provider says of a crypto invoice.
enum Checked {
    Paid(ProviderPayment),
    Pending,
    Expired,
}

async fn ask_provider<A: Adapters>(turn: &Turn<'_, A>, invoice: &Invoice) -> Option<Checked> {
    match turn.app.crypto.invoice_status(&invoice.invoice_id).await {
        Ok(InvoiceStatus::Paid { payment_id, amount }) => {
            Some(Checked::Paid(ProviderPayment { provider: PaymentProviderKind::Crypto, payment_id, amount }))
        }
        Ok(InvoiceStatus::Pending) => Some(Checked::Pending),
        Ok(InvoiceStatus::Expired) => Some(Checked::Expired),
        Err(e) => {
            tracing::warn!(error = %e, "crypto invoice not checked");
            None
        }
    }
}

/// "Check payment" of a crypto invoice, pressed on any message that shows it. `waiting`: the
/// conversation is the step that waits for this payment (it ends when the payment is settled
/// or the invoice expired); otherwise the conversation is left as it is.
pub async fn check<A: Adapters>(turn: &mut Turn<'_, A>, payable: Payable, waiting: bool) -> Next {
    // A settled payment or a closed invoice ends the step that waited for it, and only that.
    let ended = if waiting { Next::Done } else { Next::Keep };
    let bill = match bill(turn, payable).await {
        Ok(Some(bill)) if bill.user == turn.user() => bill,
        Ok(_) => return super::stale(turn),
        Err(e) => {
            tracing::warn!(error = %e, "bill not read");
            turn.say(Msg::TryLater);
            return Next::Keep;
        }
    };
    let Some(invoice) = bill.invoice.clone() else {
        turn.say(Msg::PaymentPending);
        return Next::Keep;
    };
    let Some(checked) = ask_provider(turn, &invoice).await else {
        turn.say(Msg::TryLater);
        return Next::Keep;
    };
    match checked {
        Checked::Paid(payment) => match settle(turn, payable, payment).await {
            Settled::Told => ended,
            Settled::StoreFailed => {
                turn.say(Msg::TryLater);
                Next::Keep
            }
        },
        Checked::Pending if bill.status == PurchaseStatus::Pending => {
            let keys = processing_keys(turn, payable, Method::Crypto, waiting);
            turn.say_keys(Msg::PaymentPending, keys);
            // Fresh buttons need a fresh step: its Cancel button carries this update's nonce.
            if waiting { Next::Go(processing(payable, Method::Crypto)) } else { Next::Keep }
        }
        Checked::Pending => {
            let keys = processing_keys(turn, payable, Method::Crypto, false);
            turn.say_keys(Msg::InvoiceCancelled, keys);
            ended
        }
        Checked::Expired => {
            if bill.status == PurchaseStatus::Pending
                && let Err(e) = close(turn, payable, Closure::Expired).await
            {
                tracing::info!(payable = %payable.payload(), error = %e, "expired invoice's order not closed");
            }
            turn.say_keys(Msg::InvoiceExpired, back());
            ended
        }
    }
}

/// How cancelling a waiting payment went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// Closed (a purchase's promo use given back), or closed already.
    Closed,
    /// It turned out paid, and was counted (the user was told).
    WasPaid,
    /// Closed, but what was asked at this step may have gone through (the user was told what
    /// to check).
    ClosedUnsure,
    /// Nothing could be decided now (the provider or the store did not answer; the user was
    /// told to try again): the order still waits.
    NotNow,
}

/// Closes a pending purchase or top-up (a purchase's promo use is given back). A crypto invoice
/// is asked first: one that was paid meanwhile is counted instead. When the provider or the
/// store cannot be asked, nothing is closed: a paid order is never cancelled unseen.
pub async fn cancel<A: Adapters>(turn: &mut Turn<'_, A>, payable: Payable, method: Method) -> Cancelled {
    if method == Method::Crypto {
        let invoice = match bill(turn, payable).await {
            Ok(bill) => bill.and_then(|b| b.invoice),
            Err(e) => {
                tracing::warn!(error = %e, "bill not read; not cancelled");
                turn.say(Msg::TryLater);
                return Cancelled::NotNow;
            }
        };
        if let Some(invoice) = invoice {
            match ask_provider(turn, &invoice).await {
                None => {
                    turn.say(Msg::TryLater);
                    return Cancelled::NotNow;
                }
                Some(Checked::Paid(payment)) => {
                    return match settle(turn, payable, payment).await {
                        Settled::Told => Cancelled::WasPaid,
                        Settled::StoreFailed => {
                            turn.say(Msg::TryLater);
                            Cancelled::NotNow
                        }
                    };
                }
                Some(Checked::Pending | Checked::Expired) => {}
            }
        }
    }
    match close(turn, payable, Closure::Cancelled).await {
        Ok(()) => Cancelled::Closed,
        Err(CloseError::NotPending(PurchaseStatus::Paid)) => {
            turn.say_keys(Msg::OrderAlreadyPaid, back());
            Cancelled::WasPaid
        }
        Err(CloseError::NotPending(_)) => Cancelled::Closed,
        Err(e) => {
            tracing::warn!(payable = %payable.payload(), error = %e, "not cancelled");
            turn.say(Msg::TryLater);
            Cancelled::NotNow
        }
    }
}

async fn close<A: Adapters>(turn: &mut Turn<'_, A>, payable: Payable, closure: Closure) -> Result<(), CloseError> {
    match payable {
        Payable::Purchase(id) => turn.app.store.close_pending_purchase(id, closure).await,
        Payable::TopUp(id) => turn.app.store.close_topup(id, closure).await,
    }
}

/// A Telegram Stars payment of `stars`, for something that costs `expected`: the expected amount
/// when the Stars match its price, otherwise what the Stars are worth (which the store refuses as
/// a mismatch). `None` for a payment that cannot be one of ours (another currency, a bad id).
pub fn stars_payment<A: Adapters>(
    turn: &Turn<'_, A>,
    currency: &str,
    stars: u32,
    charge_id: &str,
    expected: Money,
) -> Option<ProviderPayment> {
    if currency != STARS_CURRENCY {
        return None;
    }
    let shop = &turn.app.rules.shop;
    let amount = if stars == shop.stars(expected) {
        expected
    } else {
        Money::positive(i64::from(stars).saturating_mul(shop.star_price.minor())).ok()?
    };
    Some(ProviderPayment {
        provider: PaymentProviderKind::Stars,
        payment_id: ProviderPaymentId::parse(charge_id)?,
        amount,
    })
}
