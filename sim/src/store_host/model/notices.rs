//! Notices in the model: one claim per (subscription, kind, threshold).

use atlas::domain::{NoticeKind, NoticeThreshold, SubscriptionId};
use atlas::ports::store::{Notices, StoreError};
use chrono::{DateTime, Utc};

use super::Model;
use crate::store_host::SimStore;

impl Notices for SimStore {
    async fn claim_notice(
        &self,
        subscription: SubscriptionId,
        kind: NoticeKind,
        threshold: NoticeThreshold,
        _now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(self.exec(move |m: &mut Model| m.notices.insert((subscription, kind.code(), threshold.code()))).await?)
    }
}
