//! The VPN panel in the simulation: keys by label (a retried create returns the same key), each
//! call taking simulated time and hanging while its instance is paused. Its state is shared, so a
//! checker can compare the keys alive at the panel with the one the store says is active.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use atlas::domain::SubscriptionId;
use atlas::ports::SeededIds;
use atlas::ports::vpn::{PanelKey, VpnError, VpnProvider};

use crate::history::{Event, lock};
use crate::instance::{InstanceCtx, between};

/// Panel key id -> (subscription, alive).
#[derive(Debug, Default)]
pub struct Panel {
    pub keys: BTreeMap<String, (SubscriptionId, bool)>,
}

impl Panel {
    pub fn alive(&self) -> BTreeMap<SubscriptionId, Vec<String>> {
        let mut out: BTreeMap<SubscriptionId, Vec<String>> = BTreeMap::new();
        for (id, (sub, alive)) in &self.keys {
            if *alive {
                out.entry(*sub).or_default().push(id.clone());
            }
        }
        out
    }
}

pub struct SimVpn {
    pub panel: Arc<Mutex<Panel>>,
    pub ctx: InstanceCtx,
    pub ids: SeededIds,
    pub latency_ms: [u64; 2],
}

impl SimVpn {
    fn panel(&self) -> std::sync::MutexGuard<'_, Panel> {
        self.panel.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn call_time(&self) {
        tokio::time::sleep(between(&self.ids, self.latency_ms)).await;
        self.ctx.wait_out_pause().await;
    }
}

impl VpnProvider for SimVpn {
    async fn create_key(&self, subscription: SubscriptionId, label: &str) -> Result<PanelKey, VpnError> {
        let instance = self.ctx.index;
        lock(&self.ctx.history).push(Event::KeyCreated { instance, subscription, label: label.to_owned() });
        self.call_time().await;
        // As Outline: an id that exists gives that key; a deleted id can be created again.
        self.panel().keys.entry(label.to_owned()).or_insert((subscription, true)).1 = true;
        Ok(PanelKey { panel_key_id: label.to_owned(), access_uri: format!("vless://{label}@vpn.example") })
    }

    async fn revoke_key(&self, panel_key_id: &str) -> Result<(), VpnError> {
        self.call_time().await;
        if let Some(key) = self.panel().keys.get_mut(panel_key_id) {
            key.1 = false;
        }
        let revoked = Event::KeyRevoked { instance: self.ctx.index, panel_key_id: panel_key_id.to_owned() };
        lock(&self.ctx.history).push(revoked);
        Ok(())
    }

    async fn list_keys(&self) -> Result<Vec<String>, VpnError> {
        self.call_time().await;
        Ok(self.panel().keys.iter().filter(|(_, (_, alive))| *alive).map(|(id, _)| id.clone()).collect())
    }
}
