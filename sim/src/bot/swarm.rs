//! Swarm mode: a scenario with `swarm = true` is a template; each seed draws its own topology,
//! intake, user mix, Telegram and Crypto Pay behaviour and fault schedule from the seed (so a
//! failing seed replays), and checks every whole-bot invariant that the drawn faults allow.

use atlas::ports::{Ids, SeededIds};

use crate::scenario::{
    BotIntake, BotWorkload, Fault, Invariant, Journey, Routing, Scenario, Workload, pause_meets_partition,
};

/// The journeys a shopper of a drawn run may make.
pub const JOURNEYS: [Journey; 8] = [
    Journey::BuyBalance,
    Journey::BuyCrypto,
    Journey::BuyStars,
    Journey::Withdraw,
    Journey::Promo,
    Journey::Reissue,
    Journey::SpamPromo,
    Journey::Browse,
];

struct Draw(SeededIds);

impl Draw {
    fn below(&self, n: u64) -> u64 {
        self.0.next_u64() % n.max(1)
    }

    fn between(&self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.0.next_u64() % 10_000) as f64 / 10_000.0
    }

    fn chance(&self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The roles whose leader a swarm's `restart_leader` may kill (the poller's only when polling).
pub const LED_ROLES: [&str; 6] =
    ["payment_watcher", "reminders", "trial_notices", "expiry_cleanup", "broadcasts", "poller"];

/// The scenario seed `seed` of the swarm template `template` runs: everything but its name,
/// hazard and lease drawn from the seed.
pub fn draw(template: &Scenario, seed: u64) -> Scenario {
    let d = Draw(SeededIds::new(seed.wrapping_mul(0xA24B_AED4_963E_E407) ^ 0x5EED));
    let instances = 1 + d.below(4) as usize;
    let duration = d.between(15.0, 25.0).round();
    let intake = if d.chance(20) { BotIntake::Polling } else { BotIntake::Webhook };
    let mut journeys: Vec<Journey> = JOURNEYS.iter().copied().filter(|_| d.chance(50)).collect();
    if journeys.is_empty() {
        journeys.push(JOURNEYS[d.below(JOURNEYS.len() as u64) as usize]);
    }
    let workload = BotWorkload {
        users: 3 + d.below(6) as u32,
        journeys_per_user: 1 + d.below(3) as u32,
        journeys,
        think_ms: [0, 200 + d.below(1_500)],
        intake,
        routing: if d.chance(50) { Routing::Sticky } else { Routing::RoundRobin },
        duplicate_percent: if intake == BotIntake::Webhook { [0, 0, 10, 30][d.below(4) as usize] } else { 0 },
        crypto_webhooks: d.below(3) as u8,
        // Below 4 a single instance spends its slots waiting out per-chat send pacing (1/s) and
        // users give up before their turn: overload is `bot_webhook_overload`'s, with two.
        updates_in_flight_max: if d.chance(20) { 4 + d.below(4) as usize } else { 64 },
        expiring_at_secs: d.chance(50).then(|| d.between(3.0, 12.0).round()),
        broadcast_at_secs: d.chance(30).then(|| d.between(1.0, 10.0).round()),
        reissue_lock_ms: None,
    };
    let mut faults: Vec<Fault> = Vec::new();
    let latest = duration - 5.0;
    // An instance is down (killed or stopped) at most once at a time: a restart inside another
    // would kill it again unrecorded.
    let mut down_until = vec![0.0_f64; instances];
    for _ in 0..d.below(4) {
        let instance = d.below(instances as u64) as usize;
        let at_secs = d.between(1.0, latest).round();
        let fault = match d.below(7) {
            0 | 1 => Fault::Restart { instance, at_secs, down_secs: d.between(0.5, 3.0) },
            2 => Fault::Stop { instance, at_secs, down_secs: d.between(6.0, 8.0) },
            3 => Fault::RedisRestart { at_secs, lose_data: d.chance(30) },
            4 => Fault::Partition { instance, at_secs, for_secs: d.between(0.5, 3.0) },
            5 => Fault::Hold { instance, at_secs, for_secs: d.between(0.5, 2.0) },
            _ => {
                let roles = if intake == BotIntake::Polling { &LED_ROLES[..] } else { &LED_ROLES[..5] };
                let role = roles[d.below(roles.len() as u64) as usize].to_owned();
                Fault::RestartLeader { at_secs, down_secs: d.between(0.5, 3.0), role: Some(role) }
            }
        };
        if admits(&faults, &fault, &mut down_until) {
            faults.push(fault);
        }
    }
    if d.chance(30) {
        let instance = d.below(instances as u64) as usize;
        faults.push(Fault::Skew { instance, ms: d.below(7_200_000) as i64 - 3_600_000 });
    }
    // A freeze, from a moment to longer than the chat lease (15 s), drawn last so that the
    // faults above stay what they were for every seed; never over a partition of its instance.
    if d.chance(25) {
        let instance = d.below(instances as u64) as usize;
        let pause = Fault::Pause { instance, at_secs: d.between(1.0, latest).round(), for_secs: d.between(0.5, 20.0) };
        let meets = |f: &Fault| pause_meets_partition(&pause, f);
        if !faults.iter().any(meets) {
            faults.push(pause);
        }
    }
    let invariants = invariants_for(&workload, &faults);
    Scenario {
        instances,
        duration_secs: duration,
        workload: Workload::Bot(workload),
        faults,
        invariants,
        swarm: false,
        ..template.clone()
    }
}

/// Whether `fault` can join `faults` without two kills of one instance overlapping unrecorded:
/// an instance is down (killed or stopped) at most once at a time, and a leader crash picked by
/// role is the run's only kill (its instance is known only when it happens). `down_until` holds,
/// per instance, when its last admitted kill is over.
pub fn admits(faults: &[Fault], fault: &Fault, down_until: &mut [f64]) -> bool {
    let kills = |f: &Fault| matches!(f, Fault::Restart { .. } | Fault::Stop { .. } | Fault::RestartLeader { .. });
    let by_role = |f: &Fault| matches!(f, Fault::RestartLeader { .. });
    if kills(fault) && faults.iter().any(|f| kills(f) && (by_role(f) || by_role(fault))) {
        return false;
    }
    if let Fault::Restart { instance, at_secs, down_secs } | Fault::Stop { instance, at_secs, down_secs } = *fault {
        // A stop drains for up to 5 s before its instance is gone.
        if at_secs < down_until[instance] {
            return false;
        }
        down_until[instance] = at_secs + down_secs.max(5.0) + 1.0;
    }
    true
}

/// Every whole-bot invariant that a run with these faults can be held to.
pub fn invariants_for(workload: &BotWorkload, faults: &[Fault]) -> Vec<Invariant> {
    // Redis losing its data loses conversations and rate-limit windows with it: by design, so
    // those two are not held against such a run.
    let loses_data = faults.iter().any(|f| matches!(f, Fault::RedisRestart { lose_data: true, .. }));
    // Without Redis (a partition, held links) an instance serves without state and without
    // dedupe, by design: a step in flight may be lost, and a duplicate delivered then is
    // handled again.
    // A pause is modelled as every link of the instance held while its own timers run on: from
    // outside, a total network stall, whose timeouts fire before the late answers arrive (a
    // real SIGSTOP mostly finds the answer first when it wakes), so it counts as one.
    let cut_off =
        faults.iter().any(|f| matches!(f, Fault::Partition { .. } | Fault::Hold { .. } | Fault::Pause { .. }));
    let duplicates = workload.duplicate_percent > 0;
    // With polling, Redis losing its data loses the poller's lease with it: a second poller may
    // take the role while the first, cut off, still handles the batch it fetched, degraded and
    // without dedupe (swarm seed 5606): the same duplicate as Telegram's, from another source.
    let second_poller = workload.intake == BotIntake::Polling && loses_data;
    [
        Invariant::FsmSurvivesRestart,
        Invariant::NoUpdateTwice,
        Invariant::RepliesInOrder,
        Invariant::Liveness,
        Invariant::RateLimitsHold,
        Invariant::SingleLeaderEffects,
        Invariant::LedgerConserved,
        Invariant::PromoWithinLimits,
        Invariant::NoDoubleEffect,
        Invariant::NoDoubleReissue,
    ]
    .into_iter()
    .filter(|i| !(loses_data && matches!(i, Invariant::FsmSurvivesRestart | Invariant::RateLimitsHold)))
    .filter(|i| !(cut_off && *i == Invariant::FsmSurvivesRestart))
    .filter(|i| !(cut_off && (duplicates || second_poller) && *i == Invariant::NoUpdateTwice))
    .collect()
}
