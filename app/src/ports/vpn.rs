//! The VPN panel: creates and revokes access keys.

use std::future::Future;

use crate::domain::SubscriptionId;

/// A key as the panel issued it. `access_uri` is a credential: never log it.
#[derive(Clone, PartialEq, Eq)]
pub struct PanelKey {
    pub panel_key_id: String,
    pub access_uri: String,
}

impl std::fmt::Debug for PanelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PanelKey").field("panel_key_id", &self.panel_key_id).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VpnError {
    #[error("the VPN panel did not answer in time")]
    Timeout,
    #[error("the VPN panel refused: {0}")]
    Refused(String),
    /// The panel was not called: none is configured, or its calls are paused after a run of
    /// failures. Nothing was attempted.
    #[error("the VPN panel is not available: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

pub trait VpnProvider: Send + Sync + 'static {
    /// Creates a key for a subscription. `label` is an idempotency label (for a reissue it is
    /// derived from the fencing token): the panel MUST return the same key when asked twice with
    /// the same label, so a retried call never creates two keys.
    fn create_key(
        &self,
        subscription: SubscriptionId,
        label: &str,
    ) -> impl Future<Output = Result<PanelKey, VpnError>> + Send;

    /// Revokes a key. Revoking a key that is already revoked or unknown MUST succeed.
    fn revoke_key(&self, panel_key_id: &str) -> impl Future<Output = Result<(), VpnError>> + Send;

    /// The ids of every key the panel holds (the reconciler revokes ours that nobody owns).
    fn list_keys(&self) -> impl Future<Output = Result<Vec<String>, VpnError>> + Send;
}
