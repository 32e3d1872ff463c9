//! The crypto payment provider in the simulation: invoices kept in the run's shared state, one
//! per payable (asking twice returns the same one), pending until a workload pays them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use atlas::domain::{Money, Payable, PaymentProviderKind, ProviderPaymentId};
use atlas::ports::PaymentProvider;
use atlas::ports::payments::{Invoice, InvoiceStatus, PaymentProviderError};

/// Invoice id -> (what it pays, how much, paid).
#[derive(Debug, Default)]
pub struct Invoices {
    pub invoices: BTreeMap<String, (Payable, Money, bool)>,
}

pub struct SimCrypto {
    pub invoices: Arc<Mutex<Invoices>>,
}

impl SimCrypto {
    fn invoices(&self) -> std::sync::MutexGuard<'_, Invoices> {
        self.invoices.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PaymentProvider for SimCrypto {
    fn kind(&self) -> PaymentProviderKind {
        PaymentProviderKind::Crypto
    }

    async fn create_invoice(
        &self,
        payable: Payable,
        amount: Money,
        _description: &str,
    ) -> Result<Invoice, PaymentProviderError> {
        let invoice_id = format!("inv-{}", payable.payload().replace(':', "-"));
        self.invoices().invoices.entry(invoice_id.clone()).or_insert((payable, amount, false));
        Ok(Invoice { pay_url: format!("https://pay.sim/{invoice_id}"), invoice_id })
    }

    async fn invoice_status(&self, invoice_id: &str) -> Result<InvoiceStatus, PaymentProviderError> {
        let invoices = self.invoices();
        Ok(match invoices.invoices.get(invoice_id) {
            Some((_, amount, true)) => InvoiceStatus::Paid {
                payment_id: ProviderPaymentId::parse(&format!("pay-{invoice_id}")).expect("a valid id"),
                amount: *amount,
            },
            Some(_) => InvoiceStatus::Pending,
            None => InvoiceStatus::Expired,
        })
    }
}
