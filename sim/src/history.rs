//! What happened in a run: every handler, rate-limit decision, leader effect and fault, stamped
//! with simulated time and the host. Checkers read it; its hash tells two runs apart.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use atlas::coord::policy::RateVerdict;
use atlas::domain::SubscriptionId;
use atlas::ports::coordination::LimitedAction;
use atlas::runtime::intake::Handled;
use atlas::services::reissue::ReissueOutcome;

use crate::clock::sim_now;

/// The target of the simulated hosts' own events for a run's report (`crate::report`): what the
/// sim Redis, the store and the fake hosts served. Nothing listens to it otherwise, and the words
/// are made only when something does.
pub const REPORT_TARGET: &str = "atlas_sim::report";

thread_local! {
    /// Whether the run on this thread is being captured for a report (`report::capture`): what
    /// the hosts do only then must not depend on a log filter someone set.
    static CAPTURING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub fn capturing() -> bool {
    CAPTURING.with(|c| c.get())
}

/// Marks this thread's runs as captured while `run` runs.
pub fn while_capturing<T>(run: impl FnOnce() -> T) -> T {
    CAPTURING.with(|c| c.set(true));
    let out = run();
    CAPTURING.with(|c| c.set(false));
    out
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A handler got its update and the conversation state (`read`, at `version`); `leased`: under
    /// the chat's lease (not degraded, without Redis).
    HandlerStart {
        id: u64,
        instance: usize,
        chat: i64,
        update: i64,
        version: u64,
        read: Option<String>,
        leased: bool,
    },
    /// The handler finished its work and returned the new state; the commit is sent next.
    HandlerReturned {
        id: u64,
        wrote: String,
    },
    /// What the intake function reported. A handler killed by a crash has no end: whether its
    /// commit applied is unknown.
    HandlerEnd {
        id: u64,
        instance: usize,
        chat: i64,
        update: i64,
        outcome: Handled,
    },
    Rate {
        instance: usize,
        user: i64,
        action: LimitedAction,
        verdict: RateVerdict,
    },
    /// A leader-only effect, done under the lease of `epoch`.
    Effect {
        instance: usize,
        epoch: u64,
    },
    /// A reissue asked the panel for a key, right after taking the lock; the label is
    /// `services::reissue::panel_label` of the subscription and the lock's fencing token.
    KeyCreated {
        instance: usize,
        subscription: SubscriptionId,
        label: String,
    },
    KeyRevoked {
        instance: usize,
        panel_key_id: String,
    },
    /// A reissue, holding the lock with `token`, asks the store to register the token (sent right
    /// after the lock was granted); then what the store said.
    KeyClaim {
        instance: usize,
        subscription: SubscriptionId,
        token: u64,
    },
    KeyClaimed {
        instance: usize,
        subscription: SubscriptionId,
        token: u64,
        answer: StoreAnswer,
    },
    /// What the store said to a reissue's install.
    KeyInstall {
        instance: usize,
        subscription: SubscriptionId,
        token: u64,
        answer: StoreAnswer,
    },
    /// What a purchase update's store call said.
    Purchase {
        instance: usize,
        user: i64,
        update: i64,
        outcome: PurchaseSeen,
    },
    /// What a reissue ended with (the error as text: it carries no behaviour).
    Reissue {
        instance: usize,
        user: i64,
        outcome: Result<ReissueOutcome, String>,
    },
    /// A message an instance sent (the Messenger port).
    Sent {
        instance: usize,
        to: i64,
        text: String,
    },
    Fault(FaultEvent),
    /// A user of a whole-bot run sent an update: what they typed or pressed.
    Said {
        user: i64,
        what: String,
    },
    /// A user of a whole-bot run pressed a button: the callback query's id and the label.
    Pressed {
        user: i64,
        query: String,
        label: String,
    },
    /// A user of a whole-bot run paid at a provider: Crypto Pay's invoice id, or the Stars
    /// charge id.
    Paid {
        user: i64,
        provider: &'static str,
        id: String,
    },
    /// A user's journey through the bot ended.
    Journey {
        user: i64,
        journey: crate::scenario::Journey,
        /// Which try (a user who got stuck starts the journey over from the menu: `actors::Tries`).
        attempt: u32,
        end: JourneyEnd,
    },
    /// A call the bot made to a fake host, as the host recorded it (at the end of a run).
    Call {
        host: &'static str,
        call: String,
    },
}

/// How a user's journey through the bot ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JourneyEnd {
    /// Everything the user set out to do was done.
    Done,
    /// The bot said no, clearly (a rate limit, a used-up code, a busy reissue): a final answer.
    Refused(String),
    /// The user waited in vain at `step` (0 is the first) for a reply containing `waiting_for`.
    Stuck { step: u32, waiting_for: String },
    /// The user waited in vain for what a background worker owed them (their key).
    Waited(String),
    /// The run ended while the journey was still going.
    Unfinished,
}

/// What the store answered a fenced key operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreAnswer {
    /// Claimed, or installed.
    Done,
    /// Refused: a newer token was claimed.
    Fenced,
    /// Any other error, or no answer (the outcome is unknown).
    Failed,
}

/// What a purchase from the balance did, as its caller saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PurchaseSeen {
    /// The balance was charged now.
    Charged,
    /// An earlier purchase with the same idempotency key was replayed: no charge.
    Replayed,
    /// Refused (the refusal, as the store named it).
    Refused(String),
    /// The store did not answer: the charge may or may not have happened.
    Unknown,
}

/// A fault the runner applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultEvent {
    Crashed(usize),
    Restarted(usize),
    LeaderCrashed(usize),
    NoLeaderToCrash,
    /// Whole-bot runs: the instance Redis names as holding `role`'s lease (just before a fault
    /// picked by role hits it).
    Leads {
        role: String,
        instance: usize,
    },
    Frozen {
        instance: usize,
        for_ms: u64,
    },
    NoLeaderToFreeze,
    /// Whole-bot runs: the instance sent the store call a `pause_at_store_call` waited for (and
    /// is frozen now).
    SentStoreCall {
        instance: usize,
        call: String,
    },
    /// Messages between the instance and Redis are held (delivered late, not lost), then released.
    Held(usize),
    Released(usize),
    /// The instance is cut off from Redis, then reconnected.
    Partitioned(usize),
    Reconnected(usize),
    RedisRestarted {
        lose_data: bool,
    },
    /// SIGTERM: the instance drains and exits.
    Stopped(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub at: Duration,
    pub event: Event,
}

#[derive(Debug, Default)]
pub struct History {
    pub records: Vec<Record>,
    next_id: u64,
}

/// Shared by every host of a run (and by store clients, whose futures must be `Send`). A run is
/// one thread, so the lock is never contended.
pub type SharedHistory = Arc<Mutex<History>>;

pub fn lock(history: &SharedHistory) -> MutexGuard<'_, History> {
    history.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl History {
    pub fn push(&mut self, event: Event) {
        self.records.push(Record { at: sim_now(), event });
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// FNV-1a over the whole history: equal for two runs exactly when they did the same things
    /// at the same simulated times.
    pub fn hash(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for record in &self.records {
            for byte in format!("{record:?}").bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        hash
    }

    /// One line per event, for `atlas-sim replay`.
    pub fn trace(&self) -> String {
        let mut out = String::new();
        for r in &self.records {
            let _ = writeln!(out, "{:>10.3}s  {:?}", r.at.as_secs_f64(), r.event);
        }
        out
    }
}
