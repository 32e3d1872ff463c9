//! The Crypto Pay API (@CryptoBot): invoices in roubles (`currency_type=fiat`, `fiat=RUB`) whose
//! `payload` names what they pay (`Payable::payload`), polled with `getInvoices` and announced by
//! the `invoice_paid` webhook. A paid invoice is one payment, identified by its `invoice_id`
//! (never by the webhook's `update_id`, which Crypto Pay documents as not unique). The amount
//! and the currency of a paid invoice are checked here; the store checks the amount again
//! against the purchase.
//!
//! Crypto Pay has no idempotent create, so `createInvoice` is repeated only when the request
//! surely never left (the connection failed): a second invoice would just expire unpaid, but
//! there is no reason to make one.

use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use url::Url;

use super::resilience::{Failure, Resilience};
use crate::domain::{Money, Payable, PaymentProviderKind, ProviderPaymentId};
use crate::net::Network;
use crate::net::client::{HttpClient, HttpError};
use crate::ports::payments::{Invoice, InvoiceStatus, PaymentProvider, PaymentProviderError};

/// The official API.
pub const CRYPTO_PAY_API: &str = "https://pay.crypt.bot";
/// The fiat currency of every invoice: the shop's prices are in roubles.
pub const FIAT: &str = "RUB";
/// The header the API token goes in.
pub const TOKEN_HEADER: &str = "Crypto-Pay-API-Token";
/// The header of the webhook's signature.
pub const SIGNATURE_HEADER: &str = "crypto-pay-api-signature";
/// The longest one call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// `getInvoices` answers at most this many invoices per call.
pub const INVOICES_PER_CALL: usize = 1000;

/// An invoice as Crypto Pay describes it (the fields we use).
#[derive(Clone, Debug, Deserialize)]
pub struct CryptoInvoice {
    pub invoice_id: i64,
    pub status: String,
    #[serde(default)]
    pub currency_type: Option<String>,
    #[serde(default)]
    pub fiat: Option<String>,
    pub amount: String,
    #[serde(default)]
    pub payload: Option<String>,
    #[serde(default)]
    pub bot_invoice_url: Option<String>,
}

impl CryptoInvoice {
    /// What the invoice says: paid (with the amount, checked to be roubles), pending or expired.
    /// A paid invoice in another currency is never reported paid.
    pub fn status(&self) -> Result<InvoiceStatus, String> {
        match self.status.as_str() {
            "active" => Ok(InvoiceStatus::Pending),
            "expired" => Ok(InvoiceStatus::Expired),
            "paid" => {
                if self.currency_type.as_deref() != Some("fiat") || self.fiat.as_deref() != Some(FIAT) {
                    return Err(format!(
                        "paid in {:?}/{:?}, not {FIAT}",
                        self.currency_type.as_deref(),
                        self.fiat.as_deref()
                    ));
                }
                let amount = roubles(&self.amount).map_err(|e| format!("amount {:?}: {e}", self.amount))?;
                let payment_id = ProviderPaymentId::parse(&self.invoice_id.to_string()).ok_or("invoice id")?;
                Ok(InvoiceStatus::Paid { payment_id, amount })
            }
            other => Err(format!("unknown status {other:?}")),
        }
    }

    /// What it pays for, when the payload is one of ours.
    pub fn payable(&self) -> Option<Payable> {
        Payable::from_payload(self.payload.as_deref()?)
    }
}

/// An amount as Crypto Pay writes it ("199", "199.5", "199.000000"): trailing zeros of the
/// fraction say nothing and are dropped before it is read as roubles and kopecks.
fn roubles(text: &str) -> Result<Money, String> {
    let text = text.trim();
    let text = match text.split_once('.') {
        Some((whole, fraction)) => {
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() { whole.to_owned() } else { format!("{whole}.{fraction}") }
        }
        None => text.to_owned(),
    };
    Money::parse(&text).map_err(|e| e.to_string())
}

/// The `invoice_paid` webhook's body.
#[derive(Debug, Deserialize)]
pub struct WebhookUpdate {
    pub update_type: String,
    pub payload: CryptoInvoice,
}

/// Whether `signature` (hex) is the HMAC-SHA-256 of the raw `body` under the key SHA-256(token),
/// compared in constant time.
pub fn signature_valid(token: &SecretString, body: &[u8], signature: &str) -> bool {
    let Ok(signature) = hex::decode(signature.trim()) else {
        return false;
    };
    let key = ring::digest::digest(&ring::digest::SHA256, token.expose_secret().as_bytes());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_ref());
    ring::hmac::verify(&key, body, &signature).is_ok()
}

/// The signature Crypto Pay puts on `body` (for the fakes and tests).
pub fn sign(token: &str, body: &[u8]) -> String {
    let key = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_ref());
    hex::encode(ring::hmac::sign(&key, body).as_ref())
}

#[derive(Deserialize)]
struct Envelope<T> {
    ok: bool,
    result: Option<T>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Items {
    items: Vec<CryptoInvoice>,
}

enum CallError {
    Http(HttpError),
    Status(StatusCode, String),
    Malformed(String),
}

impl CallError {
    fn failure(&self) -> Failure {
        match self {
            CallError::Http(_) => Failure::Transient,
            CallError::Status(status, _) if status.is_server_error() => Failure::Transient,
            _ => Failure::Refused,
        }
    }

    /// Only a request that surely never reached Crypto Pay may be sent again by a create.
    fn never_sent(&self) -> Failure {
        match self {
            CallError::Http(HttpError::Connect(_)) => Failure::Transient,
            _ => Failure::Refused,
        }
    }
}

fn provider_error(error: Option<CallError>) -> PaymentProviderError {
    match error {
        None => PaymentProviderError::Unexpected(anyhow::anyhow!("Crypto Pay is failing; calls paused for a while")),
        Some(CallError::Http(HttpError::Timeout(_))) => PaymentProviderError::Timeout,
        Some(CallError::Http(e)) => PaymentProviderError::Unexpected(anyhow::anyhow!("Crypto Pay is unreachable: {e}")),
        Some(CallError::Status(status, error)) => {
            PaymentProviderError::Unexpected(anyhow::anyhow!("Crypto Pay answered {status}: {error}"))
        }
        Some(CallError::Malformed(why)) => {
            tracing::warn!(event = "CRYPTO_PAY_ANSWER_MALFORMED", reason = why.as_str(), "answer not understood");
            PaymentProviderError::Unexpected(anyhow::anyhow!("Crypto Pay's answer was not understood: {why}"))
        }
    }
}

pub struct CryptoPayClient<N: Network> {
    http: HttpClient<N>,
    base: Url,
    token: SecretString,
    /// How long an invoice can be paid: the shop's purchase TTL, so it expires with the order.
    invoice_ttl: Duration,
    resilience: Resilience,
    timeout: Duration,
}

impl<N: Network> CryptoPayClient<N> {
    pub fn new(
        http: HttpClient<N>,
        base: Url,
        token: SecretString,
        invoice_ttl: Duration,
        resilience: Resilience,
    ) -> CryptoPayClient<N> {
        CryptoPayClient { http, base, token, invoice_ttl, resilience, timeout: CALL_TIMEOUT }
    }

    /// Each call bounded by `timeout` instead of [`CALL_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> CryptoPayClient<N> {
        self.timeout = timeout;
        self
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        body: serde_json::Value,
    ) -> Result<T, CallError> {
        let url = self.base.join(&format!("api/{method}")).map_err(|e| CallError::Malformed(e.to_string()))?;
        let headers =
            [("content-type", "application/json".to_owned()), (TOKEN_HEADER, self.token.expose_secret().to_owned())];
        let response = self
            .http
            .request(Method::POST, &url, &headers, Bytes::from(body.to_string()), self.timeout)
            .await
            .map_err(CallError::Http)?;
        let envelope: Envelope<T> = match serde_json::from_slice(&response.body) {
            Ok(envelope) => envelope,
            Err(_) if response.status.is_server_error() => {
                return Err(CallError::Status(response.status, String::new()));
            }
            Err(e) => return Err(CallError::Malformed(format!("{method}: {e}"))),
        };
        match (envelope.ok, envelope.result) {
            (true, Some(result)) => Ok(result),
            _ => {
                let error = envelope.error.map(|e| e.to_string()).unwrap_or_default();
                Err(CallError::Status(response.status, error))
            }
        }
    }
}

impl<N: Network> PaymentProvider for CryptoPayClient<N> {
    fn kind(&self) -> PaymentProviderKind {
        PaymentProviderKind::Crypto
    }

    async fn create_invoice(
        &self,
        payable: Payable,
        amount: Money,
        description: &str,
    ) -> Result<Invoice, PaymentProviderError> {
        let description: String = description.chars().take(1024).collect();
        let body = serde_json::json!({
            "currency_type": "fiat",
            "fiat": FIAT,
            "amount": amount.to_string(),
            "description": description,
            "payload": payable.payload(),
            "expires_in": self.invoice_ttl.as_secs().clamp(1, 2_678_400),
            "allow_comments": false,
        });
        let invoice: CryptoInvoice = self
            .resilience
            .call(true, CallError::never_sent, || self.call("createInvoice", body.clone()))
            .await
            .map_err(provider_error)?;
        let url = invoice.bot_invoice_url.clone().filter(|u| u.starts_with("https://") || u.starts_with("http://"));
        let Some(pay_url) = url else {
            return Err(provider_error(Some(CallError::Malformed("an invoice without its link".into()))));
        };
        if invoice.payload.as_deref() != Some(payable.payload().as_str()) {
            return Err(provider_error(Some(CallError::Malformed("an invoice for another payload".into()))));
        }
        Ok(Invoice { invoice_id: invoice.invoice_id.to_string(), pay_url })
    }

    async fn invoice_status(&self, invoice_id: &str) -> Result<InvoiceStatus, PaymentProviderError> {
        let statuses = self.invoice_statuses(&[invoice_id.to_owned()]).await?;
        // Not listed: Crypto Pay no longer has it (deleted), so it cannot be paid.
        Ok(statuses.into_iter().find(|(id, _)| id == invoice_id).map_or(InvoiceStatus::Expired, |(_, s)| s))
    }

    async fn invoice_statuses(
        &self,
        invoice_ids: &[String],
    ) -> Result<Vec<(String, InvoiceStatus)>, PaymentProviderError> {
        let mut out = Vec::with_capacity(invoice_ids.len());
        for chunk in invoice_ids.chunks(INVOICES_PER_CALL) {
            let body = serde_json::json!({ "invoice_ids": chunk.join(","), "count": chunk.len() });
            let items: Items = self
                .resilience
                .call(true, CallError::failure, || self.call("getInvoices", body.clone()))
                .await
                .map_err(provider_error)?;
            for invoice in items.items {
                let id = invoice.invoice_id.to_string();
                if !chunk.contains(&id) {
                    tracing::warn!(event = "CRYPTO_PAY_UNASKED_INVOICE", invoice_id = id.as_str(), "ignored");
                    continue;
                }
                match invoice.status() {
                    Ok(status) => out.push((id, status)),
                    // Listed, but not something we can count (another currency, a status we do
                    // not know): reported pending, so its order is never closed under it; an
                    // operator sees the event.
                    Err(why) => {
                        tracing::warn!(
                            event = "PAYMENT_NOT_ACCEPTED",
                            invoice_id = id.as_str(),
                            reason = why.as_str(),
                            "an invoice that is not ours to count"
                        );
                        out.push((id, InvoiceStatus::Pending));
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_checked_over_the_raw_body() {
        let token = SecretString::from("1234:AAAbbbCCC");
        let body = br#"{"update_id":1,"update_type":"invoice_paid"}"#;
        let signature = sign("1234:AAAbbbCCC", body);
        assert!(signature_valid(&token, body, &signature));
        assert!(!signature_valid(&token, b"{\"update_id\":1, \"update_type\":\"invoice_paid\"}", &signature));
        assert!(!signature_valid(&SecretString::from("1234:other"), body, &signature));
        assert!(!signature_valid(&token, body, "zz"));
        assert!(!signature_valid(&token, body, ""));
    }

    #[test]
    fn only_a_rouble_invoice_is_counted_as_paid() {
        let invoice = |status: &str, fiat: &str, amount: &str| CryptoInvoice {
            invoice_id: 7,
            status: status.into(),
            currency_type: Some("fiat".into()),
            fiat: Some(fiat.into()),
            amount: amount.into(),
            payload: Some("p:5".into()),
            bot_invoice_url: None,
        };
        assert_eq!(
            invoice("paid", "RUB", "199.00").status().unwrap(),
            InvoiceStatus::Paid {
                payment_id: ProviderPaymentId::parse("7").unwrap(),
                amount: Money::parse("199").unwrap()
            }
        );
        assert!(invoice("paid", "USD", "199.00").status().is_err());
        assert!(invoice("paid", "RUB", "-1").status().is_err());
        let long = invoice("paid", "RUB", "199.500000").status().unwrap();
        assert!(matches!(long, InvoiceStatus::Paid { amount, .. } if amount == Money::parse("199.50").unwrap()));
        assert!(invoice("paid", "RUB", "199.505").status().is_err(), "not a whole number of kopecks");
        assert!(invoice("refunded", "RUB", "1").status().is_err());
        assert_eq!(invoice("active", "RUB", "1").status().unwrap(), InvoiceStatus::Pending);
        assert_eq!(invoice("expired", "RUB", "1").status().unwrap(), InvoiceStatus::Expired);
        assert_eq!(invoice("paid", "RUB", "1").payable(), Payable::from_payload("p:5"));
    }
}
