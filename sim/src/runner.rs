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
pub use crate::faults::{PROGRESS_MIN_PERCENT, Progress, RunResult, instance_name};
use crate::faults::{apply, network_of, schedule, skew_of};
use crate::history::{Event, History, PurchaseSeen, SharedHistory};
use crate::instance::{InstanceCtx, Pauses};
use crate::scenario::{Mode, Scenario, Workload};
use crate::seed;
use crate::store_host::STORE_HOST;
use crate::workloads::chat::DeliverySpec;
use crate::workloads::{self, leader::EFFECTS_PER_TICK};
use crate::world::{self, Shared};

/// After the workload, time for in-flight handlers to finish before the run ends.
const SETTLE: Duration = Duration::from_secs(3);

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

/// A multiple of the number of lists a current-thread tokio runtime files its tasks in (4 in
/// tokio 1.54), with room should that grow.
const TASK_LISTS: u64 = 64;

/// tokio numbers tasks from one counter for the whole process, and a runtime files each task in
/// one of a few lists by that number. When a host crashes its tasks are dropped list by list, so
/// the order its connections close in (the FINs its peers read) depends on the number the run's
/// first task got: a seed run after others in one process could differ from the same seed in a
/// fresh one (found by `--check-determinism` on the swarm: 5 of 300 seeds). Every run starts its
/// numbering at the same place in that cycle. Runs on several threads at once would still draw
/// from the one counter in turn: `run`, `audit` and `fuzz` give each job a process of its own.
fn align_task_ids() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    for _ in 0..TASK_LISTS {
        // tokio shows a task id as its number (every run stops here should that change).
        let number: u64 = runtime.spawn(async {}).id().to_string().parse().expect("a task id is a number");
        if number % TASK_LISTS == TASK_LISTS - 1 {
            return;
        }
    }
    // Only when other threads spawned tasks meanwhile (runs in parallel): no worse than before.
    tracing::debug!("task numbering not aligned: another thread spawned tasks meanwhile");
}

pub fn run(scenario: &Scenario, seed: u64, mode: Mode) -> anyhow::Result<RunResult> {
    align_task_ids();
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
    shared.break_guard(scenario.broken_guard);
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
    Ok(RunResult {
        seed,
        mode,
        hash: history.hash(),
        history,
        violations,
        simulated,
        progress,
        traffic: Default::default(),
    })
}
