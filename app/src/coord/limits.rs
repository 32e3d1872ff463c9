//! The rate limits (audit part 5) and the bounds of the coordination layer, each with its reason.

use std::time::Duration;

use crate::ports::coordination::LimitedAction;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Exact: a log of the attempts in the window (a sorted set); never grants more than `max`
    /// in any window of that length. For money actions.
    SlidingWindow,
    /// Generic cell rate: one timestamp per key, allows a burst of `max` then one per
    /// `window / max`. Cheaper, and smoother, but looser: up to `2 * max - 1` in a window that
    /// starts with a full burst. For the limits that are about load, not money.
    Gcra,
}

/// What to do when Redis cannot be asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenUnavailable {
    /// Refuse, with "try again later": a money action is never let through unlimited.
    Refuse,
    /// Ask this instance's own in-memory limiter instead (the old design: per instance).
    LocalLimiter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
    pub algorithm: Algorithm,
    pub when_unavailable: WhenUnavailable,
}

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// The audit's targets: withdrawal requests 3/hour, payment attempts 5/minute, promo attempts
/// 10/minute (exact sliding windows: never more in any window); admin commands 100/minute and
/// trial activation 5 per 10 minutes (GCRA: a burst of that many, then the average rate; the
/// trial itself is once per user in PostgreSQL, this only stops hammering). A user's own key
/// reissue: one per 10 minutes, exactly (each costs a panel call and cuts the old key off).
pub fn limit(action: LimitedAction) -> Limit {
    use Algorithm::*;
    use WhenUnavailable::*;
    let (max, window, algorithm, when_unavailable) = match action {
        LimitedAction::WithdrawalRequest => (3, HOUR, SlidingWindow, Refuse),
        LimitedAction::PaymentAttempt => (5, MINUTE, SlidingWindow, Refuse),
        LimitedAction::PromoAttempt => (10, MINUTE, SlidingWindow, Refuse),
        LimitedAction::AdminCommand => (100, MINUTE, Gcra, LocalLimiter),
        LimitedAction::TrialActivation => (5, 10 * MINUTE, Gcra, LocalLimiter),
        LimitedAction::KeyReissue => (1, 10 * MINUTE, SlidingWindow, LocalLimiter),
    };
    Limit { max, window, algorithm, when_unavailable }
}

/// The per-user flood limit checked by every update's begin: a burst of 20, then 2 updates per
/// second (GCRA over 10 seconds). A person tapping fast stays far below; a script hammering the
/// bot is dropped quietly.
pub const FLOOD_MAX: u32 = 20;
pub const FLOOD_WINDOW: Duration = Duration::from_secs(10);

/// The flood limit an instance applies (the constants above, unless a test drives one user
/// faster than a person can).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flood {
    pub max: u32,
    pub window: Duration,
}

impl Default for Flood {
    fn default() -> Flood {
        Flood { max: FLOOD_MAX, window: FLOOD_WINDOW }
    }
}

/// How long one update's handler holds its chat's lease unless it extends it. Handlers make a few
/// store and Telegram calls, each bounded by its own timeout (10 s at most); 30 s covers a slow
/// one while a crashed instance blocks its chats for no longer than that. A live handler extends
/// its lease while it runs, up to `runtime::intake::HOLD_MAX_LEASES` leases.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// How long an update id is remembered as done. Telegram keeps undelivered updates for 24 hours.
pub const UPDATE_DONE_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long an idle conversation is kept. A week: a user may come back to a half-finished
/// purchase days later; after that the main menu is the better start anyway.
pub const FSM_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The largest encoded conversation state accepted. States carry a few ids, amounts and short
/// texts; the largest is an admin's broadcast draft (3,500 characters, up to 4 bytes each in
/// UTF-8). A state over the limit is never stored: the router says so instead of showing
/// buttons that would have no state behind them.
pub const FSM_DATA_MAX_BYTES: usize = 16 * 1024;

/// How long a fencing counter or leader epoch is kept after its last use. Losing it is safe
/// (tokens are floored at Redis TIME in microseconds), so this only bounds memory.
pub const FENCE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The two algorithms in Rust, on a caller's clock in microseconds, for the legacy design.
/// They decide exactly as `lua/rate_limit.lua` and the flood check of `lua/begin_update.lua`.
pub mod algorithms {
    use std::collections::VecDeque;
    use std::time::Duration;

    use crate::ports::coordination::Decision;

    fn retry(us: u64) -> Decision {
        Decision::Denied { retry_after: Duration::from_micros(us) }
    }

    /// Exact sliding log: at most `max` attempts in any window of `window_us` ending now.
    pub fn sliding_window(log: &mut VecDeque<u64>, now_us: u64, max: u32, window_us: u64) -> Decision {
        while log.front().is_some_and(|&t| t + window_us <= now_us) {
            log.pop_front();
        }
        if log.len() < max as usize {
            log.push_back(now_us);
            return Decision::Allowed;
        }
        retry(log.front().map_or(0, |&oldest| oldest + window_us - now_us))
    }

    /// GCRA: a burst of `max`, then one attempt per `window_us / max`.
    pub fn gcra(tat: &mut u64, now_us: u64, max: u32, window_us: u64) -> Decision {
        let emission = window_us / u64::from(max.max(1));
        let new_tat = (*tat).max(now_us) + emission;
        if new_tat - now_us > window_us {
            return retry(new_tat - now_us - window_us);
        }
        *tat = new_tat;
        Decision::Allowed
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn sliding_window_grants_exactly_max_per_window() {
            let mut log = VecDeque::new();
            let granted =
                (0..10).filter(|i| sliding_window(&mut log, i * 1_000, 3, 60_000_000) == Decision::Allowed).count();
            assert_eq!(granted, 3);
            assert_eq!(sliding_window(&mut log, 60_000_000, 3, 60_000_000), Decision::Allowed);
            assert!(matches!(sliding_window(&mut log, 60_000_001, 3, 60_000_000), Decision::Denied { .. }));
        }

        #[test]
        fn gcra_allows_a_burst_then_a_steady_rate() {
            let mut tat = 0;
            let burst = (0..150).filter(|_| gcra(&mut tat, 1_000_000, 100, 60_000_000) == Decision::Allowed).count();
            assert_eq!(burst, 100);
            assert_eq!(gcra(&mut tat, 1_600_000, 100, 60_000_000), Decision::Allowed);
        }
    }
}
