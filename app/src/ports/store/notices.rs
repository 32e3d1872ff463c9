//! Notices to users (expiry reminders, trial notices, renewal failures): each claimed once,
//! before it is sent, so two leaders never send the same one.

use std::future::Future;

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::{NoticeKind, NoticeThreshold, SubscriptionId};

pub trait Notices: Send + Sync + 'static {
    /// Claims the right to send one notice; `false` if it was claimed before (by any instance).
    fn claim_notice(
        &self,
        subscription: SubscriptionId,
        kind: NoticeKind,
        threshold: NoticeThreshold,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
