//! Notices in the model: one claim per (subscription, kind, threshold), and the scan for the ones
//! due.

use atlas::domain::{NoticeKind, NoticeThreshold, SubscriptionId};
use atlas::ports::store::{DueNotice, END_NOTICE_WINDOW_HOURS, Notices, StoreError};
use chrono::{DateTime, Duration, Utc};

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
        Ok(self
            .exec("claim_notice", move |m: &mut Model| m.notices.insert((subscription, kind.code(), threshold.code())))
            .await?)
    }

    async fn release_notice(
        &self,
        subscription: SubscriptionId,
        kind: NoticeKind,
        threshold: NoticeThreshold,
    ) -> Result<(), StoreError> {
        Ok(self
            .exec("release_notice", move |m: &mut Model| {
                m.notices.remove(&(subscription, kind.code(), threshold.code()));
            })
            .await?)
    }

    async fn due_notices(
        &self,
        trial: bool,
        before_hours: Vec<u16>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueNotice>, StoreError> {
        Ok(self
            .exec("due_notices", move |m: &mut Model| {
                let kind = if trial { NoticeKind::TrialNotice } else { NoticeKind::ExpiryReminder };
                let widest = before_hours.iter().copied().max().unwrap_or(0);
                let mut due: Vec<(DateTime<Utc>, SubscriptionId, DueNotice)> = Vec::new();
                for s in m.subscriptions.values() {
                    let end = s.expires_at;
                    let in_window = end > now - Duration::hours(i64::from(END_NOTICE_WINDOW_HOURS))
                        && end <= now + Duration::hours(i64::from(widest));
                    if !in_window || s.is_trial != trial || (!s.is_trial && s.auto_renew && end > now) {
                        continue;
                    }
                    let user = &m.users[&s.user];
                    if user.banned || user.blocked {
                        continue;
                    }
                    let threshold = if end <= now {
                        NoticeThreshold::AtEnd { period_end: end }
                    } else {
                        let Some(hours) =
                            before_hours.iter().copied().filter(|h| end <= now + Duration::hours(i64::from(*h))).min()
                        else {
                            continue;
                        };
                        NoticeThreshold::Before { hours, period_end: end }
                    };
                    if m.notices.contains(&(s.id, kind.code(), threshold.code())) {
                        continue;
                    }
                    let notice =
                        DueNotice { subscription: s.id, user: s.user, language: user.language, kind, threshold };
                    due.push((end, s.id, notice));
                }
                due.sort_by_key(|(end, id, _)| (*end, *id));
                due.into_iter().take(limit as usize).map(|(_, _, n)| n).collect()
            })
            .await?)
    }
}
