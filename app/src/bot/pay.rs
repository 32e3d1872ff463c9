//! Paying with a provider, for a purchase and for a top-up alike: the invoice (a Crypto Pay
//! link, recorded on what it pays before it is shown; or a Telegram Stars invoice), a check of
//! a crypto invoice, and a Stars payment read back into money.

use super::action::{Method, StepInput};
use super::text::Msg;
use super::{Keys, Turn};
use crate::domain::{Money, Payable, PaymentProviderKind, ProviderPaymentId};
use crate::ports::messenger::StarsInvoice;
use crate::ports::payments::InvoiceStatus;
use crate::ports::store::{ProviderPayment, Purchases};
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

/// The buttons under a pending invoice: check (crypto only) and cancel.
pub fn processing_keys<A: Adapters>(turn: &Turn<'_, A>, method: Method) -> Keys {
    let mut row = Vec::new();
    if method == Method::Crypto {
        row.push((Msg::BtnCheckPayment, turn.step(StepInput::CheckPayment)));
    }
    row.push((Msg::BtnCancel, turn.step(StepInput::Cancel)));
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
    let description = turn.text(&description);
    match method {
        Method::Balance => unreachable!("a balance payment has no invoice"),
        Method::Crypto => {
            let invoice = match turn.app.crypto.create_invoice(payable, amount, &description).await {
                Ok(invoice) => invoice,
                Err(e) => {
                    tracing::warn!(error = %e, "crypto invoice not created");
                    turn.say(Msg::PaymentUnavailable);
                    return false;
                }
            };
            // Recorded before it is shown: a payment then always finds what it paid.
            if let Err(e) = turn.app.store.attach_invoice(payable, &invoice.invoice_id).await {
                turn.failed("attach_invoice", &e);
                return false;
            }
            let keys = processing_keys(turn, method);
            turn.say_keys(Msg::InvoiceCrypto { amount, url: invoice.pay_url }, keys);
            true
        }
        Method::Stars => {
            let stars = turn.app.rules.shop.stars(amount);
            let invoice =
                StarsInvoice { title: turn.text(&Msg::InvoiceTitle), description, payload: payable.payload(), stars };
            if let Err(e) = turn.app.messenger.send_invoice(turn.user(), invoice).await {
                tracing::warn!(error = %e, "stars invoice not sent");
                turn.say(Msg::PaymentUnavailable);
                return false;
            }
            let keys = processing_keys(turn, method);
            turn.say_keys(Msg::InvoiceStars { stars }, keys);
            true
        }
    }
}

/// What a crypto invoice's provider says of it.
pub enum Checked {
    Paid(ProviderPayment),
    Pending,
    Expired,
    /// The provider could not be asked (the user was told).
    Unknown,
}

pub async fn check_crypto<A: Adapters>(turn: &mut Turn<'_, A>, invoice_id: Option<&str>) -> Checked {
    let Some(invoice_id) = invoice_id else {
        return Checked::Pending;
    };
    match turn.app.crypto.invoice_status(invoice_id).await {
        Ok(InvoiceStatus::Paid { payment_id, amount }) => {
            Checked::Paid(ProviderPayment { provider: PaymentProviderKind::Crypto, payment_id, amount })
        }
        Ok(InvoiceStatus::Pending) => Checked::Pending,
        Ok(InvoiceStatus::Expired) => Checked::Expired,
        Err(e) => {
            tracing::warn!(error = %e, "crypto invoice not checked");
            turn.say(Msg::TryLater);
            Checked::Unknown
        }
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
