//! Broadcast sending in the model: progress per job, one claim per recipient.

use atlas::domain::{BroadcastId, UserId};
use atlas::ports::store::{BroadcastJob, Broadcasts, Recipient, StoreError};
use chrono::{DateTime, Utc};

use super::Model;
use crate::store_host::SimStore;

impl Broadcasts for SimStore {
    async fn open_broadcast(&self) -> Result<Option<BroadcastJob>, StoreError> {
        Ok(self
            .exec("open_broadcast", move |m: &mut Model| {
                let (id, b) = m.broadcasts.iter().find(|(_, b)| !b.done)?;
                Some(BroadcastJob { id: *id, text: b.text.clone(), after_user: b.last_user_id })
            })
            .await?)
    }

    async fn recipients(&self, after_user: i64, limit: u32) -> Result<Vec<Recipient>, StoreError> {
        Ok(self
            .exec("recipients", move |m: &mut Model| {
                m.users
                    .iter()
                    .filter(|(id, u)| id.get() > after_user && !u.banned && !u.blocked)
                    .take(limit as usize)
                    .map(|(id, u)| Recipient { user: *id, language: u.language })
                    .collect()
            })
            .await?)
    }

    async fn claim_delivery(
        &self,
        broadcast: BroadcastId,
        user: UserId,
        _now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(self.exec("claim_delivery", move |m: &mut Model| m.deliveries.insert((broadcast, user))).await?)
    }

    async fn release_delivery(&self, broadcast: BroadcastId, user: UserId) -> Result<(), StoreError> {
        Ok(self
            .exec("release_delivery", move |m: &mut Model| {
                m.deliveries.remove(&(broadcast, user));
            })
            .await?)
    }

    async fn advance_broadcast(
        &self,
        broadcast: BroadcastId,
        through_user: i64,
        sent: u32,
        done: bool,
        _now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        Ok(self
            .exec("advance_broadcast", move |m: &mut Model| {
                if let Some(b) = m.broadcasts.get_mut(&broadcast).filter(|b| !b.done) {
                    b.last_user_id = b.last_user_id.max(through_user);
                    b.sent_count += sent;
                    b.done = done;
                }
            })
            .await?)
    }
}
