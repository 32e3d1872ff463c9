//! Notices to users (expiry reminders, trial notices, renewal failures): each claimed once,
//! before it is sent, so two leaders never send the same one.

use std::future::Future;

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::{Language, NoticeKind, NoticeThreshold, SubscriptionId, UserId};

/// How long after its end a period still gets its end notice (a bot that was down for longer
/// does not greet users with stale news).
pub const END_NOTICE_WINDOW_HOURS: u16 = 24;

pub trait Notices: Send + Sync + 'static {
    /// Claims the right to send one notice; `false` if it was claimed before (by any instance).
    fn claim_notice(
        &self,
        subscription: SubscriptionId,
        kind: NoticeKind,
        threshold: NoticeThreshold,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives a claim back: the notice was certainly not sent (Telegram said to slow down), so a
    /// later tick sends it.
    fn release_notice(
        &self,
        subscription: SubscriptionId,
        kind: NoticeKind,
        threshold: NoticeThreshold,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Notices due now that nobody claimed yet, soonest expiry first, at most `limit`: for trials
    /// (`trial`) or paid subscriptions without auto-renewal, the nearest of `before_hours` that
    /// the time left is within, and the end itself for a period that ended within the last day.
    /// Users who blocked the bot or are banned get none.
    fn due_notices(
        &self,
        trial: bool,
        before_hours: Vec<u16>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<DueNotice>, StoreError>> + Send;
}

/// A notice to claim and send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DueNotice {
    pub subscription: SubscriptionId,
    pub user: UserId,
    pub language: Language,
    pub kind: NoticeKind,
    pub threshold: NoticeThreshold,
}
