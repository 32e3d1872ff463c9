//! One run of a scenario for one seed: build the world, start the instances, step the
//! simulation while injecting the faults on schedule, then check the invariants.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use atlas::domain::{Language, Money, PaymentProviderKind, ProviderPaymentId, TariffCode, UserId};
use atlas::ports::Clock;
use atlas::ports::store::{ProviderPayment, PurchaseRequest};

use crate::checkers::{self, FinalState};
use crate::clock::SimClock;
use crate::history::{Event, History};
use crate::redis_host::RedisState;
use crate::scenario::{Fault, Invariant, Scenario, Workload};
use crate::store_host::model::Model;
use crate::store_host::{STORE_HOST, StoreLink};
use crate::workloads::chat::DeliverySpec;
use crate::workloads::{self, InstanceCtx};
use crate::world::{self, Network, REDIS_HOST};

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

#[derive(Debug)]
pub struct RunResult {
    pub seed: u64,
    pub mode: Mode,
    pub history: History,
    pub violations: Vec<(Invariant, String)>,
    pub hash: u64,
    pub simulated: Duration,
}

/// After the workload, time for in-flight handlers to finish before the run ends.
const SETTLE: Duration = Duration::from_secs(3);

pub fn instance_name(index: usize) -> String {
    format!("atlas-{index}")
}

/// A fault as the stepping loop applies it.
#[derive(Clone, Debug)]
enum Action {
    Crash(usize),
    Bounce(usize),
    CrashLeader { down: Duration },
    Partition(usize),
    Repair(usize),
    Hold(usize),
    Release(usize),
    Pause { instance: usize, length: Duration },
    PauseLeader { length: Duration },
    RedisRestart { lose_data: bool },
}

fn schedule(scenario: &Scenario) -> Vec<(Duration, Action)> {
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
            Fault::Skew { .. } => {}
        }
    }
    actions.sort_by_key(|(at, _)| *at);
    actions
}

fn skew_of(scenario: &Scenario, instance: usize) -> i64 {
    scenario
        .faults
        .iter()
        .filter_map(|f| match f {
            Fault::Skew { instance: i, ms } if *i == instance => Some(*ms),
            _ => None,
        })
        .sum()
}

/// The software of one instance, for its workload and mode.
async fn instance(ctx: InstanceCtx, plan: Rc<Plan>) -> turmoil::Result {
    let ids = world::instance_ids(ctx.seed, ctx.index);
    macro_rules! with_coordination {
        (|$c:ident| $body:expr) => {
            match ctx.mode {
                Mode::Redis => {
                    let $c = world::redis_coordination(&world::keys(), ctx.clock, ids, ctx.lease);
                    $body.await
                }
                Mode::Legacy => {
                    let $c = world::legacy_coordination(ctx.clock, ids, ctx.lease);
                    $body.await
                }
            }
        };
    }
    match (&ctx.scenario.workload, plan.as_ref()) {
        (Workload::Chat { handler_ms, .. }, Plan::Chat(deliveries)) => {
            let handler_ms = *handler_ms;
            with_coordination!(|c| workloads::chat::run(ctx.clone(), c, deliveries.clone(), handler_ms))
        }
        (Workload::RateLimits { .. }, Plan::Limits(attempts)) => {
            with_coordination!(|c| workloads::limits::run(ctx.clone(), c, attempts.clone()))
        }
        (Workload::Reissue { panel_ms, .. }, Plan::Reissue(requests, shared)) => {
            let panel_ms = *panel_ms;
            with_coordination!(|c| workloads::reissue::run(ctx.clone(), c, requests.clone(), shared.clone(), panel_ms))
        }
        (Workload::Purchases { .. }, Plan::Purchases(deliveries, store)) => {
            let store = crate::store_host::SimStore::new(store.clone(), ctx.index, ctx.history.clone());
            with_coordination!(|c| workloads::purchases::run(ctx.clone(), c, deliveries.clone(), store.clone()))
        }
        (Workload::Leader { ttl_ms, work_interval_ms }, Plan::Leader) => {
            let (ttl, interval) = (Duration::from_millis(*ttl_ms), Duration::from_millis(*work_interval_ms));
            with_coordination!(|c| workloads::leader::run(ctx.clone(), c, ttl, interval))
        }
        _ => unreachable!("the plan is made from the workload"),
    }
    Ok(())
}

/// The workload's schedule, fixed by the seed before the run starts.
enum Plan {
    Chat(Rc<Vec<workloads::chat::Delivery>>),
    Limits(Rc<Vec<workloads::limits::Attempt>>),
    Reissue(Rc<Vec<workloads::reissue::Request>>, Rc<workloads::reissue::Shared>),
    Purchases(Rc<Vec<workloads::chat::Delivery>>, StoreLink),
    Leader,
}

fn plan(scenario: &Scenario, seed: u64) -> Plan {
    match &scenario.workload {
        Workload::Chat { chats, updates_per_chat, gap_ms, redelivery, redelivery_delay_ms, .. } => {
            let spec = DeliverySpec {
                chats: *chats,
                updates_per_chat: *updates_per_chat,
                gap_ms: *gap_ms,
                redelivery: *redelivery,
                redelivery_delay_ms: *redelivery_delay_ms,
            };
            Plan::Chat(Rc::new(workloads::chat::deliveries(seed, scenario.instances, spec)))
        }
        Workload::Purchases { users, updates_per_user, gap_ms, redelivery, redelivery_delay_ms } => {
            let spec = DeliverySpec {
                chats: *users,
                updates_per_chat: *updates_per_user,
                gap_ms: *gap_ms,
                redelivery: *redelivery,
                redelivery_delay_ms: *redelivery_delay_ms,
            };
            let store = StoreLink::default();
            store.with_model(|m| seed_balances(m, *users, SEED_BALANCE_MINOR));
            Plan::Purchases(Rc::new(workloads::chat::deliveries(seed, scenario.instances, spec)), store)
        }
        Workload::RateLimits { users, attempts_per_user, actions } => {
            Plan::Limits(Rc::new(workloads::limits::attempts(
                seed,
                scenario.instances,
                Duration::from_secs_f64(scenario.duration_secs),
                *users,
                *attempts_per_user,
                actions,
            )))
        }
        Workload::Reissue { users, requests_per_user, .. } => {
            let duration = Duration::from_secs_f64(scenario.duration_secs);
            let requests = workloads::reissue::requests(seed, scenario.instances, duration, *users, *requests_per_user);
            let shared = workloads::reissue::Shared { store: StoreLink::default(), panel: Default::default() };
            shared.store.with_model(|m| seed_subscriptions(m, *users));
            Plan::Reissue(Rc::new(requests), Rc::new(shared))
        }
        Workload::Leader { .. } => Plan::Leader,
    }
}

/// What each user of the purchases workload starts with on the balance.
pub const SEED_BALANCE_MINOR: i64 = 10_000_000;

/// The most users a seeded workload has (for reading their final balances).
const SEED_USERS_MAX: i64 = 1_000;

/// Users 1..=n with `balance` (minor units) each, topped up through the model's own operation.
fn seed_balances(model: &mut Model, users: u32, balance: i64) {
    let now = SimClock::default().now();
    for user in 1..=i64::from(users) {
        let id = UserId::new(user).expect("positive");
        model.register_user(id, Language::Ru, None, now);
        let payment = ProviderPayment {
            provider: PaymentProviderKind::Crypto,
            payment_id: ProviderPaymentId::parse(&format!("seed-{user}")).expect("valid"),
            amount: Money::from_minor(balance).expect("valid"),
        };
        model.top_up(id, &payment, now).expect("seed top-up");
    }
}

/// Users 1..=n, each with a paid 30-day subscription (and nothing left on the balance).
fn seed_subscriptions(model: &mut Model, users: u32) {
    const PRICE: i64 = 19_900;
    seed_balances(model, users, PRICE);
    let now = SimClock::default().now();
    for user in 1..=i64::from(users) {
        let request = PurchaseRequest {
            user: UserId::new(user).expect("positive"),
            tariff: TariffCode::parse("basic").expect("valid"),
            days: 30,
            promo: None,
            idempotency_key: None,
        };
        model.purchase_from_balance(&request, now).expect("seed purchase");
    }
}

pub fn run(scenario: &Scenario, seed: u64, mode: Mode) -> anyhow::Result<RunResult> {
    let scenario = std::sync::Arc::new(scenario.clone());
    let duration = Duration::from_secs_f64(scenario.duration_secs);
    let network = Network {
        min_latency: Duration::from_millis(scenario.network.min_latency_ms),
        max_latency: Duration::from_millis(scenario.network.max_latency_ms.max(scenario.network.min_latency_ms)),
        fail_rate: scenario.network.fail_rate,
        repair_rate: scenario.network.repair_rate,
    };
    let pauses: workloads::Pauses = Default::default();
    let history: crate::history::SharedHistory = Default::default();
    let redis: Rc<RefCell<RedisState>> = Rc::default();
    let plan = Rc::new(plan(&scenario, seed));
    let tick = Duration::from_millis(scenario.tick_ms);
    let mut sim = world::builder(seed, duration + SETTLE + Duration::from_secs(1), tick, network).build();
    world::add_redis(&mut sim, redis.clone());
    let store = match plan.as_ref() {
        Plan::Reissue(_, shared) => Some(shared.store.clone()),
        Plan::Purchases(_, store) => Some(store.clone()),
        _ => None,
    };
    if let Some(link) = store {
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
        let plan = plan.clone();
        sim.host(instance_name(index), move || instance(ctx.clone(), plan.clone()));
    }

    let mut pending = schedule(&scenario);
    pending.reverse();
    loop {
        while pending.last().is_some_and(|(at, _)| *at <= sim.elapsed()) {
            let (_, action) = pending.pop().expect("checked");
            if let Some(follow_up) = apply(&mut sim, action, &history, &redis, &pauses) {
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
    let end = match plan.as_ref() {
        Plan::Reissue(_, shared) => FinalState {
            store_keys: shared.store.with_model(|m| m.active_keys()),
            panel_keys: shared.panel.lock().unwrap_or_else(|p| p.into_inner()).alive(),
            ..FinalState::default()
        },
        Plan::Purchases(_, store) => FinalState {
            balances: store.with_model(|m| {
                (1..=SEED_USERS_MAX).filter_map(|u| Some((u, m.balance_of(UserId::new(u)?)?))).collect()
            }),
            ..FinalState::default()
        },
        _ => FinalState::default(),
    };
    let violations = scenario
        .invariants
        .iter()
        .filter_map(|&inv| checkers::check(inv, &history, &scenario, &end).map(|why| (inv, why)))
        .collect();
    Ok(RunResult { seed, mode, hash: history.hash(), history, violations, simulated })
}

/// Applies one fault; may return a follow-up (delay, action), e.g. the restart after a crash.
fn apply(
    sim: &mut turmoil::Sim<'_>,
    action: Action,
    history: &crate::history::SharedHistory,
    redis: &Rc<RefCell<RedisState>>,
    pauses: &workloads::Pauses,
) -> Option<(Duration, Action)> {
    let note = |text: String| {
        crate::history::lock(history)
            .records
            .push(crate::history::Record { at: sim.elapsed(), event: Event::Fault { description: text } })
    };
    match action {
        Action::Crash(i) => {
            note(format!("{} crashed", instance_name(i)));
            sim.crash(instance_name(i));
        }
        Action::Bounce(i) => {
            note(format!("{} restarted", instance_name(i)));
            sim.bounce(instance_name(i));
        }
        Action::Hold(i) => {
            note(format!("messages between {} and Redis held", instance_name(i)));
            sim.hold(instance_name(i), REDIS_HOST);
        }
        Action::Release(i) => {
            note(format!("messages between {} and Redis released", instance_name(i)));
            sim.release(instance_name(i), REDIS_HOST);
        }
        Action::Pause { instance, length } => {
            note(format!("{} frozen for {:.1}s", instance_name(instance), length.as_secs_f64()));
            pauses.lock().unwrap_or_else(|p| p.into_inner()).push((instance, sim.elapsed() + length));
        }
        Action::PauseLeader { length } => match current_leader(history) {
            Some(instance) => return Some((Duration::ZERO, Action::Pause { instance, length })),
            None => note("no leader to freeze".into()),
        },
        Action::CrashLeader { down } => {
            let leader = current_leader(history);
            match leader {
                Some(i) => {
                    note(format!("the leader {} crashed", instance_name(i)));
                    sim.crash(instance_name(i));
                    return Some((down, Action::Bounce(i)));
                }
                None => note("no leader to crash".into()),
            }
        }
        Action::Partition(i) => {
            note(format!("{} cut off from Redis", instance_name(i)));
            sim.partition(instance_name(i), REDIS_HOST);
        }
        Action::Repair(i) => {
            note(format!("{} reconnected to Redis", instance_name(i)));
            sim.repair(instance_name(i), REDIS_HOST);
        }
        Action::RedisRestart { lose_data } => {
            note(format!("Redis restarted ({})", if lose_data { "data lost" } else { "data kept" }));
            sim.crash(REDIS_HOST);
            redis.borrow_mut().restart(lose_data);
            sim.bounce(REDIS_HOST);
        }
    }
    None
}

/// The instance that acted as leader last.
fn current_leader(history: &crate::history::SharedHistory) -> Option<usize> {
    crate::history::lock(history).records.iter().rev().find_map(|r| match r.event {
        Event::Effect { instance, .. } => Some(instance),
        _ => None,
    })
}
