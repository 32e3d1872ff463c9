//! One run of a scenario for one seed: build the world, start the instances, step the
//! simulation while injecting the faults on schedule, then check the invariants.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use atlas::coord::policy::RateVerdict;
use atlas::domain::Money;
use atlas::runtime::intake::Handled;
use atlas::services::reissue::ReissueOutcome;

use crate::checkers::{self, FinalState};
use crate::clock::{SimClock, sim_now};
use crate::history::{Event, FaultEvent, History, PurchaseSeen, SharedHistory};
use crate::instance::{InstanceCtx, Pauses};
use crate::scenario::{Fault, Invariant, Mode, Scenario, Workload};
use crate::seed;
use crate::store_host::STORE_HOST;
use crate::workloads::chat::DeliverySpec;
use crate::workloads::{self, leader::EFFECTS_PER_TICK};
use crate::world::{self, Network, REDIS_HOST, Shared};

#[derive(Debug)]
pub struct RunResult {
    pub seed: u64,
    pub mode: Mode,
    pub history: History,
    pub violations: Vec<(Invariant, String)>,
    pub hash: u64,
    pub simulated: Duration,
    pub progress: Progress,
}

/// How much of its workload a run got through: what the plan asked for, and what completed (a
/// committed update, a decided attempt, a finished reissue, a leader's tick of work).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub planned: usize,
    pub done: usize,
}

/// The share of its plan a run on the Redis design must get through: faults (restarts lose the
/// deliveries due while an instance is down, a frozen leader does no work) cost some, never
/// most. A run below it shows nothing, however its invariants came out.
pub const PROGRESS_MIN_PERCENT: usize = 50;

impl Progress {
    pub fn percent(self) -> usize {
        self.done * 100 / self.planned.max(1)
    }

    pub fn enough(self) -> bool {
        self.planned > 0 && self.percent() >= PROGRESS_MIN_PERCENT
    }
}

/// After the workload, time for in-flight handlers to finish before the run ends.
const SETTLE: Duration = Duration::from_secs(3);

pub fn instance_name(index: usize) -> String {
    format!("atlas-{index}")
}

/// A fault as the stepping loop applies it.
#[derive(Clone, Debug)]
pub(crate) enum Action {
    /// SIGTERM (whole-bot runs apply it themselves).
    Stop(usize),
    Crash(usize),
    Bounce(usize),
    CrashLeader {
        down: Duration,
    },
    Partition(usize),
    Repair(usize),
    Hold(usize),
    Release(usize),
    Pause {
        instance: usize,
        length: Duration,
    },
    PauseLeader {
        length: Duration,
    },
    RedisRestart {
        lose_data: bool,
    },
}

pub(crate) fn schedule(scenario: &Scenario) -> Vec<(Duration, Action)> {
    let secs = Duration::from_secs_f64;
    let mut actions = Vec::new();
    for fault in &scenario.faults {
        match *fault {
            Fault::Restart { instance, at_secs, down_secs } => {
                actions.push((secs(at_secs), Action::Crash(instance)));
                actions.push((secs(at_secs + down_secs), Action::Bounce(instance)));
            }
            Fault::RestartLeader { at_secs, down_secs } => {
                actions.push((secs(at_secs), Action::CrashLeader { down: secs(down_secs) }))
            }
            Fault::Partition { instance, at_secs, for_secs } => {
                actions.push((secs(at_secs), Action::Partition(instance)));
                actions.push((secs(at_secs + for_secs), Action::Repair(instance)));
            }
            Fault::Pause { instance, at_secs, for_secs } => {
                actions.push((secs(at_secs), Action::Pause { instance, length: secs(for_secs) }))
            }
            Fault::PauseLeader { at_secs, for_secs } => {
                actions.push((secs(at_secs), Action::PauseLeader { length: secs(for_secs) }))
            }
            Fault::Hold { instance, at_secs, for_secs } => {
                actions.push((secs(at_secs), Action::Hold(instance)));
                actions.push((secs(at_secs + for_secs), Action::Release(instance)));
            }
            Fault::RedisRestart { at_secs, lose_data } => {
                actions.push((secs(at_secs), Action::RedisRestart { lose_data }))
            }
            Fault::Stop { instance, at_secs, down_secs } => {
                actions.push((secs(at_secs), Action::Stop(instance)));
                actions.push((secs(at_secs + down_secs), Action::Bounce(instance)));
            }
            Fault::Skew { .. } => {}
        }
    }
    actions.sort_by_key(|(at, _)| *at);
    actions
}

pub(crate) fn skew_of(scenario: &Scenario, instance: usize) -> i64 {
    scenario
        .faults
        .iter()
        .filter_map(|f| match f {
            Fault::Skew { instance: i, ms } if *i == instance => Some(*ms),
            _ => None,
        })
        .sum()
}

/// The software of one instance: the bot's assembly from the simulation's adapters, driven by
/// the workload.
async fn instance(ctx: InstanceCtx, plan: Rc<Plan>, shared: Shared) -> turmoil::Result {
    let app = Rc::new(world::instance_app(&ctx, &shared, sim_now()));
    match (&ctx.scenario.workload, plan.as_ref()) {
        (Workload::Chat { handler_ms, .. }, Plan::Chat(deliveries)) => {
            let handler_ms = *handler_ms;
            workloads::chat::run(ctx, app, deliveries.clone(), handler_ms).await
        }
        (Workload::RateLimits { .. }, Plan::Limits(attempts)) => {
            workloads::limits::run(ctx, app, attempts.clone()).await
        }
        (Workload::Reissue { .. }, Plan::Reissue(requests)) => {
            workloads::reissue::run(ctx, app, requests.clone()).await
        }
        (Workload::Purchases { .. }, Plan::Purchases(deliveries)) => {
            workloads::purchases::run(ctx, app, deliveries.clone()).await
        }
        (Workload::Leader { ttl_ms, work_interval_ms }, Plan::Leader) => {
            let (ttl, interval) = (Duration::from_millis(*ttl_ms), Duration::from_millis(*work_interval_ms));
            workloads::leader::run(ctx, app, ttl, interval).await
        }
        _ => unreachable!("the plan is made from the workload"),
    }
    Ok(())
}

/// The workload's schedule, fixed by the seed before the run starts.
enum Plan {
    Chat(Rc<Vec<workloads::chat::Delivery>>),
    Limits(Rc<Vec<workloads::limits::Attempt>>),
    Reissue(Rc<Vec<workloads::reissue::Request>>),
    Purchases(Rc<Vec<workloads::chat::Delivery>>),
    Leader,
}

impl Plan {
    fn uses_store(&self) -> bool {
        matches!(self, Plan::Reissue(_) | Plan::Purchases(_))
    }
}

fn delivery_spec(chats: u32, updates: u32, gap_ms: [u64; 2], redelivery: f64, delay_ms: [u64; 2]) -> DeliverySpec {
    DeliverySpec { chats, updates_per_chat: updates, gap_ms, redelivery, redelivery_delay_ms: delay_ms }
}

/// The plan of the run, and the starting state it needs (arranged in `shared`).
fn plan(scenario: &Scenario, seed: u64, shared: &Shared) -> Plan {
    let duration = Duration::from_secs_f64(scenario.duration_secs);
    let instances = scenario.instances;
    match &scenario.workload {
        Workload::Chat { chats, updates_per_chat, gap_ms, redelivery, redelivery_delay_ms, .. } => {
            let spec = delivery_spec(*chats, *updates_per_chat, *gap_ms, *redelivery, *redelivery_delay_ms);
            Plan::Chat(Rc::new(workloads::chat::deliveries(seed, instances, spec)))
        }
        Workload::Purchases { users, updates_per_user, gap_ms, redelivery, redelivery_delay_ms } => {
            let spec = delivery_spec(*users, *updates_per_user, *gap_ms, *redelivery, *redelivery_delay_ms);
            let balance = Money::positive(seed::SEED_BALANCE_MINOR).expect("a valid seed balance");
            seed::balances(&shared.store, *users, balance);
            Plan::Purchases(Rc::new(workloads::chat::deliveries(seed, instances, spec)))
        }
        Workload::RateLimits { users, attempts_per_user, actions } => {
            let attempts = workloads::limits::attempts(seed, instances, duration, *users, *attempts_per_user, actions);
            Plan::Limits(Rc::new(attempts))
        }
        Workload::Reissue { users, requests_per_user, .. } => {
            seed::subscriptions(&shared.store, *users);
            let requests = workloads::reissue::requests(seed, instances, duration, *users, *requests_per_user);
            Plan::Reissue(Rc::new(requests))
        }
        Workload::Leader { .. } => Plan::Leader,
        Workload::Bot(_) => unreachable!("whole-bot runs are planned by `crate::bot`"),
    }
}

/// How far the run got through its plan, read from its history.
fn progress(scenario: &Scenario, plan: &Plan, history: &History) -> Progress {
    let events = || history.records.iter().map(|r| &r.event);
    let count = |pick: fn(&Event) -> Option<i64>| events().filter_map(pick).collect::<BTreeSet<_>>().len();
    let planned_updates =
        |deliveries: &[workloads::chat::Delivery]| deliveries.iter().map(|d| d.update).collect::<BTreeSet<_>>().len();
    match plan {
        Plan::Chat(deliveries) => Progress {
            planned: planned_updates(deliveries),
            done: count(|e| match e {
                Event::HandlerEnd { update, outcome: Handled::Committed, .. } => Some(*update),
                _ => None,
            }),
        },
        Plan::Purchases(deliveries) => Progress {
            planned: planned_updates(deliveries),
            done: count(|e| match e {
                Event::Purchase { update, outcome: PurchaseSeen::Charged | PurchaseSeen::Replayed, .. } => {
                    Some(*update)
                }
                _ => None,
            }),
        },
        // An attempt counts when the limiter decided it (allowed or denied), not when it could
        // not be asked; a reissue when it reissued or was fenced, not when it failed or was busy.
        Plan::Limits(attempts) => Progress {
            planned: attempts.len(),
            done: events()
                .filter(|e| matches!(e, Event::Rate { verdict: RateVerdict::Allowed | RateVerdict::Denied { .. }, .. }))
                .count(),
        },
        Plan::Reissue(requests) => Progress {
            planned: requests.len(),
            done: events()
                .filter(|e| {
                    matches!(
                        e,
                        Event::Reissue { outcome: Ok(ReissueOutcome::Reissued { .. } | ReissueOutcome::Fenced), .. }
                    )
                })
                .count(),
        },
        Plan::Leader => {
            let Workload::Leader { work_interval_ms, .. } = scenario.workload else { unreachable!("a leader plan") };
            let effects = events().filter(|e| matches!(e, Event::Effect { .. })).count();
            Progress {
                planned: (scenario.duration_secs * 1000.0 / work_interval_ms as f64) as usize,
                done: effects / EFFECTS_PER_TICK as usize,
            }
        }
    }
}

/// The links of a run, as the scenario sets them.
pub(crate) fn network_of(scenario: &Scenario) -> Network {
    Network {
        min_latency: Duration::from_millis(scenario.network.min_latency_ms),
        max_latency: Duration::from_millis(scenario.network.max_latency_ms.max(scenario.network.min_latency_ms)),
        fail_rate: scenario.network.fail_rate,
        repair_rate: scenario.network.repair_rate,
    }
}

pub fn run(scenario: &Scenario, seed: u64, mode: Mode) -> anyhow::Result<RunResult> {
    if scenario.swarm {
        return run(&crate::bot::swarm::draw(scenario, seed), seed, mode);
    }
    if let Workload::Bot(bot) = &scenario.workload {
        return crate::bot::run(scenario, bot, seed, mode);
    }
    let scenario = std::sync::Arc::new(scenario.clone());
    let duration = Duration::from_secs_f64(scenario.duration_secs);
    let network = network_of(&scenario);
    let pauses: Pauses = Default::default();
    let history: SharedHistory = Default::default();
    let shared = Shared::default();
    let plan = Rc::new(plan(&scenario, seed, &shared));
    let tick = Duration::from_millis(scenario.tick_ms);
    let mut sim = world::builder(seed, duration + SETTLE + Duration::from_secs(1), tick, network).build();
    world::add_redis(&mut sim, shared.redis.clone());
    if plan.uses_store() {
        let link = shared.store.clone();
        sim.host(STORE_HOST, move || crate::store_host::serve(link.clone()));
    }
    for index in 0..scenario.instances {
        let ctx = InstanceCtx {
            index,
            seed,
            mode,
            scenario: scenario.clone(),
            history: history.clone(),
            clock: SimClock { skew_ms: skew_of(&scenario, index) },
            lease: Duration::from_millis(scenario.lease_ms),
            pauses: pauses.clone(),
        };
        let (plan, shared) = (plan.clone(), shared.clone());
        sim.host(instance_name(index), move || instance(ctx.clone(), plan.clone(), shared.clone()));
    }

    let mut pending = schedule(&scenario);
    pending.reverse();
    loop {
        while pending.last().is_some_and(|(at, _)| *at <= sim.elapsed()) {
            let (_, action) = pending.pop().expect("checked");
            if let Some(follow_up) = apply(&mut sim, action, &history, &shared, &pauses) {
                let at = sim.elapsed() + follow_up.0;
                pending.push((at, follow_up.1));
                pending.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
            }
        }
        // No client host ends the run: it ends when the workload and the settling time are over.
        if sim.elapsed() >= duration + SETTLE {
            break;
        }
        sim.step().map_err(|e| anyhow::anyhow!("the simulation failed: {e}"))?;
    }
    let simulated = sim.elapsed();
    drop(sim);
    let history = std::mem::take(&mut *crate::history::lock(&history));
    let end = FinalState {
        store_keys: shared.store.with_model(|m| m.active_keys()),
        panel_keys: shared.panel.lock().unwrap_or_else(|p| p.into_inner()).alive(),
        balances: shared.store.with_model(|m| m.balances()),
        period_price: seed::period_price(&shared.store),
    };
    let violations = scenario
        .invariants
        .iter()
        .filter_map(|&inv| checkers::check(inv, &history, &scenario, &end).map(|why| (inv, why)))
        .collect();
    let progress = progress(&scenario, &plan, &history);
    Ok(RunResult { seed, mode, hash: history.hash(), history, violations, simulated, progress })
}

/// Applies one fault; may return a follow-up (delay, action), e.g. the restart after a crash.
pub(crate) fn apply(
    sim: &mut turmoil::Sim<'_>,
    action: Action,
    history: &SharedHistory,
    shared: &Shared,
    pauses: &Pauses,
) -> Option<(Duration, Action)> {
    let note = |fault: FaultEvent| {
        crate::history::lock(history)
            .records
            .push(crate::history::Record { at: sim.elapsed(), event: Event::Fault(fault) })
    };
    match action {
        Action::Stop(_) => unreachable!("validated: the stop fault is for whole-bot runs, which apply it"),
        Action::Crash(i) => {
            note(FaultEvent::Crashed(i));
            sim.crash(instance_name(i));
        }
        Action::Bounce(i) => {
            note(FaultEvent::Restarted(i));
            sim.bounce(instance_name(i));
        }
        Action::Hold(i) => {
            note(FaultEvent::Held(i));
            sim.hold(instance_name(i), REDIS_HOST);
        }
        Action::Release(i) => {
            note(FaultEvent::Released(i));
            sim.release(instance_name(i), REDIS_HOST);
        }
        Action::Pause { instance, length } => {
            note(FaultEvent::Frozen { instance, for_ms: length.as_millis() as u64 });
            pauses.lock().unwrap_or_else(|p| p.into_inner()).push((instance, sim.elapsed() + length));
        }
        Action::PauseLeader { length } => match current_leader(history) {
            Some(instance) => return Some((Duration::ZERO, Action::Pause { instance, length })),
            None => note(FaultEvent::NoLeaderToFreeze),
        },
        Action::CrashLeader { down } => match current_leader(history) {
            Some(i) => {
                note(FaultEvent::LeaderCrashed(i));
                sim.crash(instance_name(i));
                return Some((down, Action::Bounce(i)));
            }
            None => note(FaultEvent::NoLeaderToCrash),
        },
        Action::Partition(i) => {
            note(FaultEvent::Partitioned(i));
            sim.partition(instance_name(i), REDIS_HOST);
        }
        Action::Repair(i) => {
            note(FaultEvent::Reconnected(i));
            sim.repair(instance_name(i), REDIS_HOST);
        }
        Action::RedisRestart { lose_data } => {
            note(FaultEvent::RedisRestarted { lose_data });
            sim.crash(REDIS_HOST);
            shared.redis.borrow_mut().restart(lose_data);
            sim.bounce(REDIS_HOST);
        }
    }
    None
}

/// The instance that acted as leader last.
fn current_leader(history: &SharedHistory) -> Option<usize> {
    crate::history::lock(history).records.iter().rev().find_map(|r| match r.event {
        Event::Effect { instance, .. } => Some(instance),
        _ => None,
    })
}
