//! A provider that is not there: every call fails at once with a refusal that says so. The bot
//! turns it into "this payment method is not available right now" (crypto) or a key that is not
//! issued yet (VPN), and logs the cause; nothing is charged.

use crate::domain::{Money, Payable, PaymentProviderKind, SubscriptionId};
use crate::ports::payments::{Invoice, InvoiceStatus, PaymentProvider, PaymentProviderError};
use crate::ports::vpn::{PanelKey, VpnError, VpnProvider};

/// A service this instance runs without, and why.
#[derive(Clone, Debug)]
pub struct Unavailable {
    pub why: &'static str,
}

impl VpnProvider for Unavailable {
    async fn create_key(&self, _subscription: SubscriptionId, _label: &str) -> Result<PanelKey, VpnError> {
        Err(VpnError::Unavailable(self.why.to_owned()))
    }

    async fn revoke_key(&self, _panel_key_id: &str) -> Result<(), VpnError> {
        Err(VpnError::Unavailable(self.why.to_owned()))
    }

    async fn list_keys(&self) -> Result<Vec<String>, VpnError> {
        Err(VpnError::Unavailable(self.why.to_owned()))
    }
}

impl PaymentProvider for Unavailable {
    fn kind(&self) -> PaymentProviderKind {
        PaymentProviderKind::Crypto
    }

    async fn create_invoice(
        &self,
        _payable: Payable,
        _amount: Money,
        _description: &str,
    ) -> Result<Invoice, PaymentProviderError> {
        Err(PaymentProviderError::Unexpected(anyhow::anyhow!("{}", self.why)))
    }

    async fn invoice_status(&self, _invoice_id: &str) -> Result<InvoiceStatus, PaymentProviderError> {
        Err(PaymentProviderError::Unexpected(anyhow::anyhow!("{}", self.why)))
    }
}

/// A provider that is configured (`Live`) or not (`Unavailable`): the live world's adapter type.
pub enum OrUnavailable<P> {
    Live(P),
    Unavailable(Unavailable),
}

impl<P: VpnProvider> VpnProvider for OrUnavailable<P> {
    async fn create_key(&self, subscription: SubscriptionId, label: &str) -> Result<PanelKey, VpnError> {
        match self {
            OrUnavailable::Live(p) => p.create_key(subscription, label).await,
            OrUnavailable::Unavailable(u) => u.create_key(subscription, label).await,
        }
    }

    async fn revoke_key(&self, panel_key_id: &str) -> Result<(), VpnError> {
        match self {
            OrUnavailable::Live(p) => p.revoke_key(panel_key_id).await,
            OrUnavailable::Unavailable(u) => u.revoke_key(panel_key_id).await,
        }
    }

    async fn list_keys(&self) -> Result<Vec<String>, VpnError> {
        match self {
            OrUnavailable::Live(p) => p.list_keys().await,
            OrUnavailable::Unavailable(u) => u.list_keys().await,
        }
    }
}

impl<P: PaymentProvider> PaymentProvider for OrUnavailable<P> {
    fn kind(&self) -> PaymentProviderKind {
        PaymentProviderKind::Crypto
    }

    async fn create_invoice(
        &self,
        payable: Payable,
        amount: Money,
        description: &str,
    ) -> Result<Invoice, PaymentProviderError> {
        match self {
            OrUnavailable::Live(p) => p.create_invoice(payable, amount, description).await,
            OrUnavailable::Unavailable(u) => u.create_invoice(payable, amount, description).await,
        }
    }

    async fn invoice_status(&self, invoice_id: &str) -> Result<InvoiceStatus, PaymentProviderError> {
        match self {
            OrUnavailable::Live(p) => p.invoice_status(invoice_id).await,
            OrUnavailable::Unavailable(u) => u.invoice_status(invoice_id).await,
        }
    }

    async fn invoice_statuses(&self, ids: &[String]) -> Result<Vec<(String, InvoiceStatus)>, PaymentProviderError> {
        match self {
            OrUnavailable::Live(p) => p.invoice_statuses(ids).await,
            OrUnavailable::Unavailable(u) => u.invoice_statuses(ids).await,
        }
    }
}
