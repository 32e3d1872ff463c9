//! Payment providers (crypto, Telegram Stars): invoices out, payment confirmations in.

use std::future::Future;

use crate::domain::{Money, Payable, PaymentProviderKind, ProviderPaymentId};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invoice {
    /// The provider's id for the invoice, used to poll it.
    pub invoice_id: String,
    /// Where the user pays (a link or a Telegram invoice payload).
    pub pay_url: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvoiceStatus {
    Pending,
    /// Paid: the provider's payment id and the amount it says it received.
    Paid {
        payment_id: ProviderPaymentId,
        amount: Money,
    },
    Expired,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentProviderError {
    #[error("the payment provider did not answer in time")]
    Timeout,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

pub trait PaymentProvider: Send + Sync + 'static {
    fn kind(&self) -> PaymentProviderKind;

    /// Creates an invoice for a purchase or top-up; its payload is `payable.payload()`, so a
    /// payment names what it pays for. The caller records the invoice id on the payable (once)
    /// before showing the link.
    fn create_invoice(
        &self,
        payable: Payable,
        amount: Money,
        description: &str,
    ) -> impl Future<Output = Result<Invoice, PaymentProviderError>> + Send;

    fn invoice_status(
        &self,
        invoice_id: &str,
    ) -> impl Future<Output = Result<InvoiceStatus, PaymentProviderError>> + Send;

    /// The status of several invoices at once (the payment watcher's poll; Crypto Pay answers
    /// up to 1,000 ids in one `getInvoices`). An invoice the provider does not list is missing
    /// from the answer. By default, one `invoice_status` after another.
    fn invoice_statuses(
        &self,
        invoice_ids: &[String],
    ) -> impl Future<Output = Result<Vec<(String, InvoiceStatus)>, PaymentProviderError>> + Send {
        async move {
            let mut out = Vec::with_capacity(invoice_ids.len());
            for id in invoice_ids {
                out.push((id.clone(), self.invoice_status(id).await?));
            }
            Ok(out)
        }
    }
}
