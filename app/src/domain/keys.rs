//! The names we give VPN keys at the panel, and what the reconciler decides about a key it found
//! there. We choose every key's id ourselves (Outline's `PUT /access-keys/{id}`), so an id says
//! whose key it is and which attempt made it: a retried create asks for the same id (and gets the
//! same key), and a key nobody recorded can be told apart from one still being made.

use std::fmt;
use std::time::Duration;

use super::SubscriptionId;

/// The id of a key at the panel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyLabel {
    /// The first key of a subscription, or a new one after it ended and was renewed:
    /// `generation` is how many keys the subscription had before this one.
    Activation { subscription: SubscriptionId, generation: u32 },
    /// A reissued key, under the reissue lock's fencing token.
    Reissue { subscription: SubscriptionId, token: u64 },
}

impl KeyLabel {
    pub fn subscription(self) -> SubscriptionId {
        match self {
            KeyLabel::Activation { subscription, .. } | KeyLabel::Reissue { subscription, .. } => subscription,
        }
    }

    /// Reads an id we made; `None` for anything else (keys made by hand at the panel, other
    /// bots' keys): the reconciler never touches those.
    pub fn parse(id: &str) -> Option<KeyLabel> {
        let (kind, rest) = id.split_once('-')?;
        let (subscription, n) = rest.split_once('-')?;
        let canonical = |s: &str| !s.is_empty() && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit());
        if !canonical(subscription) || !(canonical(n) || n == "0") {
            return None;
        }
        let subscription = SubscriptionId::new(subscription.parse().ok()?)?;
        match kind {
            "activate" => Some(KeyLabel::Activation { subscription, generation: n.parse().ok()? }),
            "reissue" => Some(KeyLabel::Reissue { subscription, token: n.parse().ok()? }),
            _ => None,
        }
    }
}

impl fmt::Display for KeyLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyLabel::Activation { subscription, generation } => write!(f, "activate-{subscription}-{generation}"),
            KeyLabel::Reissue { subscription, token } => write!(f, "reissue-{subscription}-{token}"),
        }
    }
}

/// What the store knows of a subscription's keys, for the reconciler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFacts {
    pub subscription: SubscriptionId,
    /// The newest fencing token a reissue claimed.
    pub key_fence: u64,
    /// How many keys were ever recorded for it (the next activation's generation).
    pub keys_recorded: u32,
}

/// Whether a key of ours found at the panel, that the store has no record of, is an orphan to
/// revoke. A key still being made is not: an activation of the next generation (its retry asks
/// for this very id), or a reissue under the newest claimed token (a newer reissue fences it
/// first). A reissue under an older token was fenced off, an activation of an older generation was
/// superseded, and a key of a subscription the store does not know is nobody's.
///
/// Each of these only ever stays true (the store refuses to record an activation of a
/// generation that is not the next one, and a reissue under a token older than the fence), so a
/// key judged an orphan cannot become somebody's key before it is revoked. The facts must come
/// from one snapshot of the store, together with whether the key is recorded.
pub fn is_orphan(label: KeyLabel, facts: Option<&KeyFacts>) -> bool {
    let Some(facts) = facts else {
        return true;
    };
    match label {
        // The next generation stays ours whatever the activation's state: a failed one comes
        // back to pending with a purchase and asks for this very id again.
        KeyLabel::Activation { generation, .. } => generation < facts.keys_recorded,
        KeyLabel::Reissue { token, .. } => token < facts.key_fence,
    }
}

/// How long an activation waits after its `attempts`-th failure: 30 s, doubling, at most an hour.
pub fn activation_backoff(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(7);
    Duration::from_secs(30 * (1u64 << doublings)).min(Duration::from_secs(3600))
}

/// How long a worker holds a subscription it took for activation: longer than one panel call
/// with its retries. A worker that dies gives it back when this passes.
pub const ACTIVATION_CLAIM: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(id: i64) -> SubscriptionId {
        SubscriptionId::new(id).unwrap()
    }

    #[test]
    fn labels_read_back_and_foreign_ids_are_not_ours() {
        for label in [
            KeyLabel::Activation { subscription: sub(7), generation: 0 },
            KeyLabel::Activation { subscription: sub(7), generation: 12 },
            KeyLabel::Reissue { subscription: sub(123), token: 1_767_225_600_000_000 },
        ] {
            assert_eq!(KeyLabel::parse(&label.to_string()), Some(label));
        }
        for foreign in [
            "",
            "1",
            "activate-7",
            "activate-07-0",
            "activate-7-01",
            "reissue--1",
            "other-7-1",
            "activate-0-0",
            "activate-7-0-1",
            "activate-7-x",
            "reissue-7-99999999999999999999999",
        ] {
            assert_eq!(KeyLabel::parse(foreign), None, "{foreign:?}");
        }
    }

    #[test]
    fn only_superseded_fenced_and_ownerless_keys_are_orphans() {
        let facts = KeyFacts { subscription: sub(1), key_fence: 50, keys_recorded: 2 };
        let activation = |generation| KeyLabel::Activation { subscription: sub(1), generation };
        let reissue = |token| KeyLabel::Reissue { subscription: sub(1), token };
        assert!(!is_orphan(activation(2), Some(&facts)), "the attempt in progress");
        assert!(is_orphan(activation(1), Some(&facts)), "an older generation");
        // Whatever the activation's state: a failed activation's id comes back with a purchase.
        assert!(!is_orphan(activation(2), Some(&facts)), "a failed activation's id comes back with a purchase");
        assert!(!is_orphan(reissue(50), Some(&facts)), "the newest reissue, maybe still installing");
        assert!(is_orphan(reissue(49), Some(&facts)), "a fenced reissue");
        assert!(is_orphan(reissue(50), None), "nobody's key");
    }

    #[test]
    fn backoff_doubles_up_to_ten_minutes() {
        let secs: Vec<u64> = (1..=10).map(|a| activation_backoff(a).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(activation_backoff(0).as_secs(), 30);
    }
}
