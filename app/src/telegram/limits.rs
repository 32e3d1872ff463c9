//! Telegram's sending limits, kept by each instance for the messages it sends: per chat a short
//! burst and then about one message a second, and about thirty a second in all (the Bot API FAQ;
//! `../shared/spec/providers.md` §4). A message waits for its slot rather than be refused; a wait
//! longer than the caller's budget is refused at once and reserves nothing. Telegram's own 429
//! (with `retry_after`) remains the authority: the messenger honours it on top of these, for the
//! chat it was about (a request is refused, not the bot: other chats go on at the steady rate).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::domain::UserId;

/// One chat: a burst of this many, then one per `CHAT_INTERVAL`.
pub const CHAT_BURST: u32 = 3;
pub const CHAT_INTERVAL: Duration = Duration::from_secs(1);

/// All chats of this instance: a burst of this many, then one per `GLOBAL_INTERVAL`.
pub const GLOBAL_BURST: u32 = 30;
pub const GLOBAL_INTERVAL: Duration = Duration::from_micros(1_000_000 / 30);

/// Chats remembered at most; beyond it, chats whose limit has fully recovered are forgotten.
pub const CHATS_MAX: usize = 10_000;

/// GCRA cells (theoretical arrival times, on the monotonic clock) for every chat and in all.
#[derive(Default)]
pub struct SendLimits {
    chats: BTreeMap<UserId, Duration>,
    global: Duration,
}

/// The earliest time a cell lets one more message go, and the cell after it went then.
fn slot(tat: Duration, now: Duration, interval: Duration, burst: u32) -> Duration {
    let tolerance = interval * burst.saturating_sub(1);
    tat.max(now).saturating_sub(tolerance).max(now)
}

impl SendLimits {
    /// Reserves a slot for one message to `chat` at `now` and says how long to wait for it;
    /// `None` (nothing reserved) when the wait would be longer than `budget`.
    pub fn reserve(&mut self, chat: UserId, now: Duration, budget: Duration) -> Option<Duration> {
        let chat_tat = self.chats.get(&chat).copied().unwrap_or(now);
        let global_at = slot(self.global, now, GLOBAL_INTERVAL, GLOBAL_BURST);
        let at = slot(chat_tat, now, CHAT_INTERVAL, CHAT_BURST).max(global_at);
        let wait = at - now;
        if wait > budget {
            return None;
        }
        self.chats.insert(chat, chat_tat.max(at) + CHAT_INTERVAL);
        // The bot-wide cell is charged at its own earliest slot: a message held back by its chat
        // must not hold back the other chats' messages.
        self.global = self.global.max(global_at) + GLOBAL_INTERVAL;
        if self.chats.len() > CHATS_MAX {
            self.chats.retain(|_, tat| *tat > now);
        }
        Some(wait)
    }

    /// Telegram said to wait: nothing goes to `chat` before `until`, and after the pause the
    /// chat's burst is spent (sending resumes at the steady rate).
    pub fn pause_until(&mut self, chat: UserId, until: Duration) {
        let tat = self.chats.entry(chat).or_default();
        *tat = (*tat).max(until + CHAT_INTERVAL * (CHAT_BURST - 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::from_secs(100);
    const BUDGET: Duration = Duration::from_secs(60);

    fn uid(n: i64) -> UserId {
        UserId::new(n).unwrap()
    }

    #[test]
    fn a_chat_gets_a_burst_then_one_a_second() {
        let mut limits = SendLimits::default();
        let waits: Vec<Duration> = (0..5).map(|_| limits.reserve(uid(1), NOW, BUDGET).unwrap()).collect();
        assert_eq!(&waits[..3], &[Duration::ZERO; 3]);
        assert_eq!(waits[3], CHAT_INTERVAL);
        assert_eq!(waits[4], CHAT_INTERVAL * 2);
        // Another chat is not held back by this one.
        assert_eq!(limits.reserve(uid(2), NOW, BUDGET), Some(Duration::ZERO));
        // A wait over the budget reserves nothing.
        assert_eq!(limits.reserve(uid(1), NOW, Duration::from_millis(500)), None);
        assert_eq!(limits.reserve(uid(1), NOW, BUDGET), Some(CHAT_INTERVAL * 3));
    }

    #[test]
    fn all_chats_together_get_about_thirty_a_second() {
        let mut limits = SendLimits::default();
        let waits: Vec<Duration> = (1..=90).map(|n| limits.reserve(uid(n), NOW, BUDGET).unwrap()).collect();
        assert!(waits[..30].iter().all(|w| w.is_zero()));
        let last = *waits.last().unwrap();
        assert!(last >= Duration::from_millis(1_900) && last <= Duration::from_millis(2_100), "{last:?}");
        // Telegram's 429 holds its chat, not the others.
        let mut limits = SendLimits::default();
        limits.pause_until(uid(1), NOW + Duration::from_secs(5));
        assert_eq!(limits.reserve(uid(1), NOW, BUDGET), Some(Duration::from_secs(5)));
        assert_eq!(limits.reserve(uid(2), NOW, BUDGET), Some(Duration::ZERO));
    }
}
