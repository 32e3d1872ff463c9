//! The Outline server's management API (the VPN panel). Every key is created under an id we
//! choose (`PUT /access-keys/{id}`, the `KeyLabel`), so a create that is retried, or made by two
//! instances at once, yields one key: the second PUT gets 409 and reads the key instead. Revoking
//! is `DELETE` (an unknown key is already revoked). The API's URL carries a secret path prefix
//! (`VPN_PANEL_URL`, never logged), and its self-signed certificate is pinned by its SHA-256
//! (`VPN_PANEL_CERT_SHA256`), as Outline's installer prints both.

use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

use super::resilience::{Failure, Resilience};
use crate::domain::SubscriptionId;
use crate::net::Network;
use crate::net::client::{HttpClient, HttpError, Response};
use crate::ports::vpn::{PanelKey, VpnError, VpnProvider};

/// The longest one call to the panel may take.
pub const PANEL_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// An access key as Outline returns it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccessKey {
    id: String,
    access_url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccessKeys {
    access_keys: Vec<KeyId>,
}

#[derive(Deserialize)]
struct KeyId {
    id: String,
}

pub struct OutlineClient<N: Network> {
    http: HttpClient<N>,
    /// The API's URL with its secret prefix, ending in `/`.
    api: Url,
    resilience: Resilience,
    timeout: Duration,
}

/// A failed exchange, before it becomes a [`VpnError`].
enum CallError {
    Http(HttpError),
    Status(StatusCode),
    Malformed(String),
}

impl CallError {
    fn failure(&self) -> Failure {
        match self {
            CallError::Http(_) => Failure::Transient,
            CallError::Status(status) if status.is_server_error() => Failure::Transient,
            CallError::Status(_) | CallError::Malformed(_) => Failure::Refused,
        }
    }
}

fn vpn_error(name: &str, error: Option<CallError>) -> VpnError {
    match error {
        None => VpnError::Unavailable(format!("{name} is failing; calls paused for a while")),
        Some(CallError::Http(HttpError::Timeout(_))) => VpnError::Timeout,
        Some(CallError::Http(e)) => VpnError::Unexpected(anyhow::anyhow!("the panel is unreachable: {e}")),
        Some(CallError::Status(status)) => VpnError::Refused(format!("the panel answered {status}")),
        Some(CallError::Malformed(why)) => {
            tracing::warn!(
                event = "PANEL_ANSWER_MALFORMED",
                reason = why.as_str(),
                "the panel's answer was not understood"
            );
            VpnError::Unexpected(anyhow::anyhow!("the panel's answer was not understood: {why}"))
        }
    }
}

impl<N: Network> OutlineClient<N> {
    pub fn new(http: HttpClient<N>, mut api: Url, resilience: Resilience) -> OutlineClient<N> {
        if !api.path().ends_with('/') {
            api.set_path(&format!("{}/", api.path()));
        }
        OutlineClient { http, api, resilience, timeout: PANEL_CALL_TIMEOUT }
    }

    /// Each call bounded by `timeout` instead of [`PANEL_CALL_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> OutlineClient<N> {
        self.timeout = timeout;
        self
    }

    fn url(&self, key: Option<&str>) -> Url {
        let mut url = self.api.clone();
        {
            let mut segments = url.path_segments_mut().expect("an http(s) URL has a path");
            segments.pop_if_empty().push("access-keys");
            if let Some(key) = key {
                segments.push(key);
            }
        }
        url
    }

    async fn call(&self, method: Method, url: &Url, body: Option<serde_json::Value>) -> Result<Response, CallError> {
        let (headers, body) = match body {
            Some(json) => (vec![("content-type", "application/json".to_owned())], Bytes::from(json.to_string())),
            None => (Vec::new(), Bytes::new()),
        };
        self.http.request(method, url, &headers, body, self.timeout).await.map_err(CallError::Http)
    }

    async fn create_once(&self, label: &str) -> Result<PanelKey, CallError> {
        let url = self.url(Some(label));
        let response = self.call(Method::PUT, &url, Some(serde_json::json!({ "name": label }))).await?;
        let response = match response.status {
            StatusCode::CREATED | StatusCode::OK => response,
            // Made before (a retry, or another instance at the same moment): the same key.
            StatusCode::CONFLICT => {
                let found = self.call(Method::GET, &url, None).await?;
                if found.status != StatusCode::OK {
                    return Err(CallError::Status(found.status));
                }
                found
            }
            status => return Err(CallError::Status(status)),
        };
        let key: AccessKey =
            serde_json::from_slice(&response.body).map_err(|e| CallError::Malformed(format!("access key: {e}")))?;
        if key.id != label {
            return Err(CallError::Malformed(format!("asked for key {label}, got another id")));
        }
        if key.access_url.is_empty() {
            return Err(CallError::Malformed("an access key without its URL".into()));
        }
        Ok(PanelKey { panel_key_id: key.id, access_uri: key.access_url })
    }
}

impl<N: Network> VpnProvider for OutlineClient<N> {
    async fn create_key(&self, _subscription: SubscriptionId, label: &str) -> Result<PanelKey, VpnError> {
        self.resilience
            .call(true, CallError::failure, || self.create_once(label))
            .await
            .map_err(|e| vpn_error(self.resilience.name, e))
    }

    async fn revoke_key(&self, panel_key_id: &str) -> Result<(), VpnError> {
        let url = self.url(Some(panel_key_id));
        let once = || async {
            let response = self.call(Method::DELETE, &url, None).await?;
            match response.status {
                // Gone already: revoked is revoked.
                StatusCode::NO_CONTENT | StatusCode::OK | StatusCode::NOT_FOUND => Ok(()),
                status => Err(CallError::Status(status)),
            }
        };
        self.resilience.call(true, CallError::failure, once).await.map_err(|e| vpn_error(self.resilience.name, e))
    }

    async fn list_keys(&self) -> Result<Vec<String>, VpnError> {
        let url = self.url(None);
        let once = || async {
            let response = self.call(Method::GET, &url, None).await?;
            if response.status != StatusCode::OK {
                return Err(CallError::Status(response.status));
            }
            let keys: AccessKeys =
                serde_json::from_slice(&response.body).map_err(|e| CallError::Malformed(format!("key list: {e}")))?;
            Ok(keys.access_keys.into_iter().map(|k| k.id).collect())
        };
        self.resilience.call(true, CallError::failure, once).await.map_err(|e| vpn_error(self.resilience.name, e))
    }
}
