//! A scenario is data: one TOML file with the topology, the workload, the faults, the duration,
//! the seeds and the invariants to check (see `scenarios/`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use atlas::ports::coordination::{LimitedAction, Role};
use serde::{Deserialize, Serialize};

/// Which coordination design the instances run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Shared state on Redis: the fix.
    Redis,
    /// Each instance's own memory: the audit's old design.
    Legacy,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Redis => "redis",
            Mode::Legacy => "legacy",
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// What the scenario shows, in a sentence.
    pub summary: String,
    /// The audit finding it reproduces (part and title).
    pub hazard: String,
    pub instances: usize,
    pub duration_secs: f64,
    /// How many seeds `run` tries when not told.
    #[serde(default = "default_seeds")]
    pub seeds: u64,
    /// The chat lease of the coordination layer, shortened so faults can outlast it.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// How far one simulation step moves time. Every duration in the scenario is far coarser
    /// (leases of seconds, handlers of tens of ms), so 10 ms loses nothing and runs ~5x faster
    /// than 1 ms.
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    pub workload: Workload,
    #[serde(default)]
    pub network: NetworkSpec,
    #[serde(default)]
    pub faults: Vec<Fault>,
    pub invariants: Vec<Invariant>,
    /// What the legacy design does in this scenario: the A/B.
    pub legacy: Legacy,
    /// A swarm template (whole bot only): each seed draws its own topology, workload and faults
    /// (`crate::bot::swarm`); the workload and faults written here are not used.
    #[serde(default)]
    pub swarm: bool,
    /// A guard of the coordination layer switched off in the sim Redis's copy of its script: the
    /// mutation check that shows a checker (or the fuzzer) catches what the guard prevents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken_guard: Option<BrokenGuard>,
}

/// A guard that a run can switch off (`Scenario::broken_guard`): one of the project's Lua scripts
/// (the sim Redis runs the script the product loads with the guard's lines changed) or the store's
/// (the model's copy of a check of a PostgreSQL function). The product, real Redis and
/// PostgreSQL are untouched.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BrokenGuard {
    /// `begin_update.lua` takes a finished update as new: a redelivery is handled again.
    Dedupe,
    /// `acquire.lua` grants a lease someone holds: two reissues at once, two leaders.
    Lease,
    /// `commit_update.lua` commits without checking the chat lease's token (the fencing check).
    Fencing,
    /// The store installs a reissued key under any fencing token (`atlas_install_reissued_key`'s
    /// check, in the store model): a reissue whose lock ran out installs over a newer one.
    KeyFence,
}

impl BrokenGuard {
    pub const ALL: [BrokenGuard; 4] =
        [BrokenGuard::Dedupe, BrokenGuard::Lease, BrokenGuard::Fencing, BrokenGuard::KeyFence];

    /// The guard's text in its script, and what it becomes when broken (none for the store's).
    pub fn patch(self) -> Option<(&'static str, &'static str)> {
        match self {
            BrokenGuard::Dedupe => Some(("  return {'dup'}\n", "")),
            BrokenGuard::Lease => Some(("if held ~= -2 then", "if false then")),
            BrokenGuard::Fencing => Some(("if holder ~= ARGV[1] then", "if false then")),
            BrokenGuard::KeyFence => None,
        }
    }

    /// `source` with the guard broken (unchanged when the guard is not in it).
    pub fn apply(self, source: &str) -> String {
        match self.patch() {
            Some((guard, broken)) => source.replace(guard, broken),
            None => source.to_owned(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BrokenGuard::Dedupe => "dedupe",
            BrokenGuard::Lease => "lease",
            BrokenGuard::Fencing => "fencing",
            BrokenGuard::KeyFence => "key_fence",
        }
    }
}

/// Whether `pause` (a pause, or a pause of the leader, whoever it is) and `partition` cut one
/// instance at overlapping times: a partition drops what is held on the link, and simulated TCP
/// never sends it again, so what the frozen process sends when it wakes would be lost.
pub fn pause_meets_partition(pause: &Fault, partition: &Fault) -> bool {
    let (paused, from, to) = match *pause {
        Fault::Pause { instance, at_secs, for_secs } => (Some(instance), at_secs, at_secs + for_secs),
        Fault::PauseLeader { at_secs, for_secs } => (None, at_secs, at_secs + for_secs),
        _ => return false,
    };
    let Fault::Partition { instance, at_secs, for_secs } = *partition else { return false };
    paused.is_none_or(|p| p == instance) && from <= at_secs + for_secs && at_secs <= to
}

/// The legacy half of the A/B.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Legacy {
    /// The legacy design breaks this invariant (one of the scenario's) on some seed: the hazard
    /// is real.
    Breaks(Invariant),
    /// The guard is the same in both designs (PostgreSQL), so the legacy design holds too; the
    /// reason.
    Holds(String),
}

fn default_seeds() -> u64 {
    20
}

fn default_lease_ms() -> u64 {
    2_000
}

fn default_tick_ms() -> u64 {
    10
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Workload {
    /// Updates of a few chats, each delivered to one instance and sometimes redelivered to
    /// another; every handler appends its update to the conversation state.
    Chat {
        chats: u32,
        updates_per_chat: u32,
        gap_ms: [u64; 2],
        handler_ms: [u64; 2],
        redelivery: f64,
        /// How long after the first delivery a redelivery comes.
        #[serde(default = "default_redelivery_delay")]
        redelivery_delay_ms: [u64; 2],
    },
    /// Users paying for a period from their balance, one update each time, through the intake
    /// and the store (idempotency key from the update); updates are redelivered, some late.
    Purchases { users: u32, updates_per_user: u32, gap_ms: [u64; 2], redelivery: f64, redelivery_delay_ms: [u64; 2] },
    /// Users hammering rate-limited actions, spread over the instances.
    RateLimits {
        users: u32,
        attempts_per_user: u32,
        #[serde(deserialize_with = "limited_actions", serialize_with = "action_names")]
        actions: Vec<LimitedAction>,
    },
    /// Every instance runs the leader loop for one role; the leader records an effect per tick.
    Leader { ttl_ms: u64, work_interval_ms: u64 },
    /// Admins on several instances reissue users' VPN keys; each reissue holds the user's lock
    /// for `lease_ms` while it calls the panel (which takes `panel_ms`).
    Reissue { users: u32, requests_per_user: u32, panel_ms: [u64; 2] },
    /// The whole bot: every instance runs `atlas-bot`'s run function (webhook route or poller,
    /// conversations, workers) over simulated HTTP, and users read its replies and press the
    /// buttons it sent them (`crate::bot`).
    Bot(BotWorkload),
}

/// The whole-bot workload: who uses the bot, how, and how Telegram and the providers behave.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BotWorkload {
    /// Shoppers (each with a balance to spend); two admins come on top.
    pub users: u32,
    /// How many journeys each shopper makes, each drawn from `journeys` by the seed.
    pub journeys_per_user: u32,
    pub journeys: Vec<Journey>,
    /// A user's pause between two journeys, and before the first.
    #[serde(default = "default_think_ms")]
    pub think_ms: [u64; 2],
    #[serde(default)]
    pub intake: BotIntake,
    /// How the balancer in front of the instances picks one for a webhook request.
    #[serde(default)]
    pub routing: Routing,
    /// The share (percent) of webhook updates Telegram delivers a second time after a 2xx (its
    /// answer lost on the way back).
    #[serde(default)]
    pub duplicate_percent: u8,
    /// Crypto Pay delivers each `invoice_paid` webhook this many times (0: never; the payment
    /// watcher finds the payment).
    #[serde(default = "default_webhook_copies")]
    pub crypto_webhooks: u8,
    /// Updates an instance handles at once before it answers 503 (`UPDATES_IN_FLIGHT_MAX`).
    #[serde(default = "default_in_flight")]
    pub updates_in_flight_max: usize,
    /// Shoppers start with a subscription that ends this many seconds into the run, auto-renewal
    /// on (the renewal, reminder and activation workers all have work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiring_at_secs: Option<f64>,
    /// An admin composes a broadcast in the admin panel this many seconds into the run: the
    /// broadcast worker (leader-only) sends it to every user, once each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast_at_secs: Option<f64>,
    /// The reissue lock's time to live, shortened (the bot's 30 s otherwise) so that a reissue
    /// holder frozen for less than the store call's timeout can outlive it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissue_lock_ms: Option<u64>,
}

/// One thing a shopper does, through the bot's buttons.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Journey {
    /// Buy a period from the balance.
    BuyBalance,
    /// Buy a period in crypto: the invoice paid at Crypto Pay, then its webhook or the watcher.
    BuyCrypto,
    /// Buy a period in Telegram Stars: pre-checkout, then the payment.
    BuyStars,
    /// Withdraw to a card; an admin approves it.
    Withdraw,
    /// Enter the run's promo code and buy with it.
    Promo,
    /// Two admins on two instances press "reissue" for this shopper's key at the same moment.
    Reissue,
    /// Send wrong promo codes as fast as possible.
    SpamPromo,
    /// Press three menu buttons at once without waiting (balance, referral, support).
    Browse,
    /// An admin goes through the pending withdrawals in the admin panel (at the end of a run).
    Review,
    /// An admin sends a broadcast (`BotWorkload::broadcast_at_secs`).
    Broadcast,
}

impl Journey {
    pub fn name(self) -> &'static str {
        match self {
            Journey::BuyBalance => "buy_balance",
            Journey::BuyCrypto => "buy_crypto",
            Journey::BuyStars => "buy_stars",
            Journey::Withdraw => "withdraw",
            Journey::Promo => "promo",
            Journey::Reissue => "reissue",
            Journey::SpamPromo => "spam_promo",
            Journey::Browse => "browse",
            Journey::Review => "review",
            Journey::Broadcast => "broadcast",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BotIntake {
    /// Telegram pushes updates to the balancer in front of the instances.
    #[default]
    Webhook,
    /// One elected instance fetches them with getUpdates.
    Polling,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// Each request to the next instance in turn.
    #[default]
    RoundRobin,
    /// A user's requests to one instance while it answers (what a deployment keeping
    /// conversations in process memory has to do).
    Sticky,
}

fn default_think_ms() -> [u64; 2] {
    [100, 1_000]
}

fn default_webhook_copies() -> u8 {
    1
}

fn default_in_flight() -> usize {
    64
}

fn action_names<S: serde::Serializer>(actions: &[LimitedAction], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(actions.iter().map(|a| a.name()))
}

/// Actions by their one name (`LimitedAction::name`); an unknown name is an error, never skipped.
fn limited_actions<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<LimitedAction>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    names
        .iter()
        .map(|name| {
            LimitedAction::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = LimitedAction::ALL.iter().map(|a| a.name()).collect();
                serde::de::Error::custom(format!("unknown action {name:?} (one of {known:?})"))
            })
        })
        .collect()
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    #[serde(default)]
    pub min_latency_ms: u64,
    #[serde(default = "default_max_latency")]
    pub max_latency_ms: u64,
    /// Probability that a link fails on a step (messages on it are lost until it repairs).
    #[serde(default)]
    pub fail_rate: f64,
    /// Probability that a failed link repairs on a step.
    #[serde(default = "default_repair_rate")]
    pub repair_rate: f64,
}

fn default_repair_rate() -> f64 {
    1.0
}

fn default_redelivery_delay() -> [u64; 2] {
    [0, 20]
}

fn default_max_latency() -> u64 {
    2
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Kill an instance (its memory is gone) and, after `down_secs`, start it again.
    Restart { instance: usize, at_secs: f64, down_secs: f64 },
    /// Kill whichever instance leads at that moment, and start it again after `down_secs`. In a
    /// whole-bot run, `role` names the worker (`payment_watcher`, `reminders`, `trial_notices`,
    /// `expiry_cleanup`, `broadcasts`, `poller`) whose leader is killed, as Redis holds its lease.
    RestartLeader {
        at_secs: f64,
        down_secs: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
    },
    /// Cut an instance off from Redis, then repair the link.
    Partition { instance: usize, at_secs: f64, for_secs: f64 },
    /// Freeze an instance mid-update (a GC pause, a stalled VM), for longer than a lease. In a
    /// whole-bot run every message from or to the instance is held for that long (its own timers
    /// run on: a frozen process finds them all expired when it wakes).
    Pause { instance: usize, at_secs: f64, for_secs: f64 },
    /// Freeze whichever instance leads at that moment.
    PauseLeader { at_secs: f64, for_secs: f64 },
    /// From `at_secs` on, freeze the first instance that sends the store call named `call` (a
    /// port operation, `install_reissued_key`), as it sends it: the call is on the wire while the
    /// instance is frozen and arrives when it wakes (whole-bot scenarios).
    PauseAtStoreCall { call: String, at_secs: f64, for_secs: f64 },
    /// Hold every message between an instance and Redis (delivered late, not lost), then release.
    Hold { instance: usize, at_secs: f64, for_secs: f64 },
    /// Restart Redis, losing its data or keeping it.
    RedisRestart { at_secs: f64, lose_data: bool },
    /// Shift an instance's wall clock for the whole run.
    Skew { instance: usize, ms: i64 },
    /// SIGTERM to an instance (it stops taking updates and finishes those in flight), and a
    /// start again after `down_secs` (whole-bot scenarios).
    Stop { instance: usize, at_secs: f64, down_secs: f64 },
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Invariant {
    NoUpdateTwice,
    HandlersNeverOverlap,
    FsmSurvivesRestart,
    RateLimitsHold,
    SingleLeaderEffects,
    LeaderFailover,
    NoDoubleReissue,
    MoneyOnce,
    LedgerConserved,
    PromoWithinLimits,
    Liveness,
    RepliesInOrder,
    NoDoubleEffect,
}

impl Invariant {
    pub fn name(self) -> &'static str {
        match self {
            Invariant::NoUpdateTwice => "no_update_twice",
            Invariant::HandlersNeverOverlap => "handlers_never_overlap",
            Invariant::FsmSurvivesRestart => "fsm_survives_restart",
            Invariant::RateLimitsHold => "rate_limits_hold",
            Invariant::SingleLeaderEffects => "single_leader_effects",
            Invariant::LeaderFailover => "leader_failover",
            Invariant::NoDoubleReissue => "no_double_reissue",
            Invariant::MoneyOnce => "money_once",
            Invariant::LedgerConserved => "ledger_conserved",
            Invariant::PromoWithinLimits => "promo_within_limits",
            Invariant::Liveness => "liveness",
            Invariant::RepliesInOrder => "replies_in_order",
            Invariant::NoDoubleEffect => "no_double_effect",
        }
    }
}

impl Invariant {
    /// Whether `workload` records what this invariant reads: on another workload it would hold
    /// vacuously.
    pub fn shown_by(self, workload: &Workload) -> bool {
        if let Workload::Bot(_) = workload {
            // What users saw, the fake hosts recorded and the store holds at the end.
            return !matches!(self, Invariant::HandlersNeverOverlap | Invariant::LeaderFailover | Invariant::MoneyOnce);
        }
        match self {
            Invariant::NoUpdateTwice | Invariant::HandlersNeverOverlap | Invariant::FsmSurvivesRestart => {
                matches!(workload, Workload::Chat { .. })
            }
            Invariant::RateLimitsHold => matches!(workload, Workload::RateLimits { .. }),
            Invariant::SingleLeaderEffects | Invariant::LeaderFailover => matches!(workload, Workload::Leader { .. }),
            Invariant::NoDoubleReissue => matches!(workload, Workload::Reissue { .. }),
            Invariant::MoneyOnce => matches!(workload, Workload::Purchases { .. }),
            Invariant::LedgerConserved
            | Invariant::PromoWithinLimits
            | Invariant::Liveness
            | Invariant::RepliesInOrder
            | Invariant::NoDoubleEffect => false,
        }
    }
}

impl Workload {
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Chat { .. } => "chat",
            Workload::Purchases { .. } => "purchases",
            Workload::RateLimits { .. } => "rate_limits",
            Workload::Leader { .. } => "leader",
            Workload::Reissue { .. } => "reissue",
            Workload::Bot(_) => "bot",
        }
    }
}

impl Scenario {
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let scenario: Scenario =
            toml::from_str(&text).with_context(|| format!("{} is not a valid scenario", path.display()))?;
        scenario.validate().with_context(|| format!("{}", path.display()))?;
        Ok(scenario)
    }

    /// The scenario as a file `load` reads back (the fuzzer writes what it found this way).
    pub fn to_toml(&self) -> anyhow::Result<String> {
        Ok(toml::to_string(self)?)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!((1..=16).contains(&self.instances), "instances must be 1 to 16");
        anyhow::ensure!(self.duration_secs > 0.0 && self.duration_secs <= 3600.0, "duration_secs must be in (0, 3600]");
        anyhow::ensure!(!self.invariants.is_empty(), "a scenario checks at least one invariant");
        match &self.legacy {
            Legacy::Breaks(invariant) => anyhow::ensure!(
                self.invariants.contains(invariant),
                "legacy.breaks = {:?} is not one of the scenario's invariants",
                invariant.name()
            ),
            Legacy::Holds(why) => anyhow::ensure!(!why.trim().is_empty(), "legacy.holds needs the reason"),
        }
        for invariant in &self.invariants {
            anyhow::ensure!(
                invariant.shown_by(&self.workload),
                "{} cannot be checked with the {} workload (it records nothing it reads)",
                invariant.name(),
                self.workload.name()
            );
        }
        anyhow::ensure!((1..=100).contains(&self.tick_ms), "tick_ms must be 1 to 100");
        let rates = [self.network.fail_rate, self.network.repair_rate];
        anyhow::ensure!(rates.iter().all(|r| (0.0..=1.0).contains(r)), "fail_rate and repair_rate are probabilities");
        for fault in &self.faults {
            let instance = match fault {
                Fault::Restart { instance, .. } | Fault::Partition { instance, .. } => Some(*instance),
                Fault::Pause { instance, .. } | Fault::Skew { instance, .. } | Fault::Hold { instance, .. } => {
                    Some(*instance)
                }
                Fault::Stop { instance, .. } => Some(*instance),
                _ => None,
            };
            anyhow::ensure!(
                instance.is_none_or(|i| i < self.instances),
                "fault {fault:?} names an instance that does not exist"
            );
        }
        anyhow::ensure!(
            !self.swarm || matches!(self.workload, Workload::Bot(_)),
            "swarm = true is for the whole-bot workload (kind = \"bot\")"
        );
        for fault in &self.faults {
            let times: Vec<f64> = match *fault {
                Fault::Restart { at_secs, down_secs, .. } | Fault::Stop { at_secs, down_secs, .. } => {
                    vec![at_secs, down_secs]
                }
                Fault::RestartLeader { at_secs, down_secs, .. } => vec![at_secs, down_secs],
                Fault::Partition { at_secs, for_secs, .. }
                | Fault::Pause { at_secs, for_secs, .. }
                | Fault::PauseLeader { at_secs, for_secs }
                | Fault::Hold { at_secs, for_secs, .. }
                | Fault::PauseAtStoreCall { at_secs, for_secs, .. } => vec![at_secs, for_secs],
                Fault::RedisRestart { at_secs, .. } => vec![at_secs],
                Fault::Skew { .. } => vec![],
            };
            anyhow::ensure!(
                times.iter().all(|t| t.is_finite() && *t >= 0.0),
                "fault {fault:?}: times must be non-negative numbers"
            );
        }
        // Overlapping faults on one link are counted (`faults::Links`), but a partition during a
        // pause would lose what the frozen process is to send when it wakes: refused.
        for a in &self.faults {
            for b in &self.faults {
                anyhow::ensure!(
                    !pause_meets_partition(a, b),
                    "{a:?} and {b:?} overlap on one instance's link to Redis: the partition would lose what \
                     the paused instance sends when it wakes"
                );
            }
        }
        let at_store_call = self.faults.iter().filter(|f| matches!(f, Fault::PauseAtStoreCall { .. })).count();
        if at_store_call > 0 {
            anyhow::ensure!(
                matches!(self.workload, Workload::Bot(_)),
                "pause_at_store_call is for the whole-bot workload (kind = \"bot\")"
            );
            anyhow::ensure!(at_store_call == 1, "one pause_at_store_call per scenario");
            // Turmoil hands a message with no delay to its link at once, past any hold: the call
            // would arrive before the freeze it is to be caught in.
            anyhow::ensure!(
                self.network.min_latency_ms >= 1,
                "pause_at_store_call needs [network] min_latency_ms of 1 or more (a call sent with no delay \
                 escapes the freeze)"
            );
            // Whom it freezes, and when, is known only in the run: a partition might drop the call.
            anyhow::ensure!(
                !self.faults.iter().any(|f| matches!(f, Fault::Partition { .. })),
                "pause_at_store_call cannot be combined with a partition (it would lose the call on the wire)"
            );
        }
        if let Workload::Bot(bot) = &self.workload {
            anyhow::ensure!(!bot.journeys.is_empty(), "the bot workload needs at least one journey");
            anyhow::ensure!(
                !bot.journeys.iter().any(|j| matches!(j, Journey::Review | Journey::Broadcast)),
                "\"review\" and \"broadcast\" are an admin's (see broadcast_at_secs), not a shopper's journeys"
            );
            anyhow::ensure!(bot.users >= 1, "the bot workload needs at least one user");
            anyhow::ensure!(bot.journeys_per_user >= 1, "the bot workload needs at least one journey per user");
            anyhow::ensure!(bot.updates_in_flight_max >= 1, "updates_in_flight_max must be at least 1");
            anyhow::ensure!(bot.think_ms[0] <= bot.think_ms[1], "think_ms is [low, high]");
            anyhow::ensure!(
                bot.intake == BotIntake::Webhook || bot.duplicate_percent == 0,
                "duplicate_percent is Telegram's webhook behaviour: with polling it would be ignored"
            );
            anyhow::ensure!(
                bot.expiring_at_secs.is_none_or(|s| s.is_finite() && s >= 0.0),
                "expiring_at_secs must be a non-negative number"
            );
            anyhow::ensure!(
                bot.broadcast_at_secs.is_none_or(|s| s.is_finite() && s >= 0.0),
                "broadcast_at_secs must be a non-negative number"
            );
            anyhow::ensure!(bot.duplicate_percent <= 100, "duplicate_percent is a percentage");
            for fault in &self.faults {
                anyhow::ensure!(
                    !matches!(fault, Fault::PauseLeader { .. }),
                    "{fault:?}: the whole-bot world pauses an instance by its index (pause), not the leader"
                );
                if let Fault::RestartLeader { role, .. } = fault {
                    let known = Role::ALL.map(Role::name);
                    anyhow::ensure!(
                        role.as_deref().is_some_and(|r| known.contains(&r)),
                        "{fault:?}: a whole-bot restart_leader names the role whose leader it kills, one of {known:?}"
                    );
                }
            }
        } else {
            anyhow::ensure!(
                !self.faults.iter().any(|f| matches!(f, Fault::Stop { .. })),
                "the stop fault is for whole-bot scenarios"
            );
            anyhow::ensure!(
                !self.faults.iter().any(|f| matches!(f, Fault::RestartLeader { role: Some(_), .. })),
                "restart_leader picks a leader by role only in whole-bot scenarios"
            );
        }
        if let Workload::RateLimits { actions, .. } = &self.workload {
            anyhow::ensure!(!actions.is_empty(), "the rate_limits workload needs at least one action");
        }
        Ok(())
    }

    /// The scenario files under `path` (a file, or every `*.toml` of a directory, by name).
    pub fn files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
        if path.is_file() {
            return Ok(vec![path.to_owned()]);
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        anyhow::ensure!(!files.is_empty(), "no scenario (*.toml) in {}", path.display());
        Ok(files)
    }
}
