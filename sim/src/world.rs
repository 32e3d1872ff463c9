//! Building a simulated world: the turmoil configuration every run shares, the hosts' shared
//! state (Redis, the store's database, the VPN panel), and each instance's software assembled by
//! the bot's own composition root (`atlas::runtime::wiring::assemble`) from the simulation's
//! adapters: the sim clock and seeded ids, coordination over simulated TCP (or the legacy
//! design), the store model over its RPC, the sim VPN panel.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use atlas::coord::AnyCoordination;
use atlas::coord::connector::RedisConnector;
use atlas::coord::keys::KeySpace;
use atlas::coord::legacy::LegacyCoordination;
use atlas::coord::redis::RedisCoordination;
use atlas::ports::{Clock, Ids, SeededIds};
use atlas::runtime::wiring::{Adapters, App, Parts, assemble};

use crate::clock::SIM_EPOCH_UNIX_SECS;
use crate::crypto::{Invoices, SimCrypto};
use crate::dialer::SimDialer;
use crate::instance::InstanceCtx;
use crate::messenger::SimMessenger;
use crate::redis_host::{REDIS_PORT, RedisState, serve};
use crate::scenario::{BrokenGuard, Mode, Workload};
use crate::store_host::{SimStore, StoreLink};
use crate::vpn::{Panel, SimVpn};

pub const REDIS_HOST: &str = "redis";

#[derive(Clone, Copy, Debug)]
pub struct Network {
    pub min_latency: Duration,
    pub max_latency: Duration,
    /// Probability that a link fails on a step (turmoil's fail rate), and that it repairs.
    pub fail_rate: f64,
    pub repair_rate: f64,
}

impl Default for Network {
    fn default() -> Self {
        Network { min_latency: Duration::ZERO, max_latency: Duration::from_millis(2), fail_rate: 0.0, repair_rate: 1.0 }
    }
}

pub fn builder(seed: u64, duration: Duration, tick: Duration, network: Network) -> turmoil::Builder {
    let mut b = turmoil::Builder::new();
    b.rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(SIM_EPOCH_UNIX_SECS as u64))
        .tick_duration(tick)
        .simulation_duration(duration)
        .min_message_latency(network.min_latency)
        .max_message_latency(network.max_latency)
        .fail_rate(network.fail_rate)
        .repair_rate(network.repair_rate);
    b
}

pub fn add_redis(sim: &mut turmoil::Sim<'_>, state: Rc<RefCell<RedisState>>) {
    sim.host(REDIS_HOST, move || serve(state.clone()))
}

/// The randomness of one start of one instance: fixed by the seed, the instance's index and when
/// it started (a restarted process draws new tokens, as one seeded from the OS would).
pub fn instance_ids(seed: u64, instance: usize, started: Duration) -> Arc<dyn Ids> {
    let start = started.as_millis() as u64;
    Arc::new(SeededIds::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (instance as u64 + 1) ^ (start << 20)))
}

/// The key space of a run (one bot, one environment).
pub fn keys() -> KeySpace {
    KeySpace::new("atlas", "sim", 1)
}

/// The simulation's adapters of the bot's ports.
pub struct SimWorld;

impl Adapters for SimWorld {
    type Store = SimStore;
    type Coordination = AnyCoordination<SimDialer>;
    type Vpn = SimVpn;
    type Messenger = SimMessenger;
    type Crypto = SimCrypto;
}

/// What the hosts of a run share, kept outside their software so it survives their restarts:
/// Redis's keyspace, the store's database, the VPN panel's keys, the crypto provider's invoices.
#[derive(Clone, Default)]
pub struct Shared {
    pub redis: Rc<RefCell<RedisState>>,
    pub store: StoreLink,
    pub panel: Arc<Mutex<Panel>>,
    pub invoices: Arc<Mutex<Invoices>>,
    /// Instances told to stop (SIGTERM), by index; cleared when an instance starts again.
    pub stopping: Stopping,
    /// The faults on each instance's link to Redis at this moment.
    pub links: Rc<RefCell<crate::faults::Links>>,
}

impl Shared {
    /// Switches `guard` off where it lives: in the sim Redis's scripts, or in the store model.
    pub fn break_guard(&self, guard: Option<BrokenGuard>) {
        self.redis.borrow_mut().broken_guard = guard;
        self.store.break_guard(guard);
    }
}

/// Instances told to stop, as their software watches for it (whole-bot runs): the runner tells
/// them, and the waiting software wakes at the next step (a timer polling for it woke every
/// instance 20 times a simulated second, for nothing, about a twelfth of an idle world's cost).
#[derive(Clone, Default)]
pub struct Stopping(Arc<(Mutex<std::collections::BTreeSet<usize>>, tokio::sync::Notify)>);

impl Stopping {
    fn set(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<usize>> {
        self.0.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// SIGTERM to instance `index`.
    pub fn stop(&self, index: usize) {
        self.set().insert(index);
        self.0.1.notify_waiters();
    }

    /// Instance `index` starts again.
    pub fn clear(&self, index: usize) {
        self.set().remove(&index);
    }

    pub fn is_stopping(&self, index: usize) -> bool {
        self.set().contains(&index)
    }

    /// Resolves when instance `index` is told to stop.
    pub async fn until_stopped(&self, index: usize) {
        loop {
            let told = self.0.1.notified();
            tokio::pin!(told);
            // Waiting before looking: a stop between the look and the wait is not missed.
            told.as_mut().enable();
            if self.is_stopping(index) {
                return;
            }
            told.await;
        }
    }
}

/// How long a simulated panel call takes: the reissue workload's setting, or a few ms.
fn panel_ms(workload: &Workload) -> [u64; 2] {
    match workload {
        Workload::Reissue { panel_ms, .. } => *panel_ms,
        _ => [1, 5],
    }
}

/// Coordination on the sim Redis: the real connector and scripts over simulated TCP.
pub fn redis_coordination(clock: Arc<dyn Clock>, ids: Arc<dyn Ids>, lease: Duration) -> RedisCoordination<SimDialer> {
    let dialer = SimDialer { host: REDIS_HOST.into(), port: REDIS_PORT };
    let connector = RedisConnector::new(dialer, Default::default(), clock.clone(), ids.clone());
    RedisCoordination::new(connector, keys(), clock, ids).with_lease_ttl(lease)
}

/// One instance's coordination: on the sim Redis, or the legacy design in the instance's memory
/// (lost when it restarts).
fn coordination(ctx: &InstanceCtx, clock: Arc<dyn Clock>, ids: Arc<dyn Ids>) -> AnyCoordination<SimDialer> {
    match ctx.mode {
        Mode::Redis => AnyCoordination::Redis(redis_coordination(clock, ids, ctx.lease)),
        Mode::Legacy => AnyCoordination::Legacy(LegacyCoordination::new(clock, ids).with_lease_ttl(ctx.lease)),
    }
}

/// An instance's software, assembled as `atlas-bot` assembles it, from the simulation's adapters.
pub fn instance_app(ctx: &InstanceCtx, shared: &Shared, started: Duration) -> App<SimWorld> {
    let clock: Arc<dyn Clock> = Arc::new(ctx.clock);
    let ids = instance_ids(ctx.seed, ctx.index, started);
    let vpn = SimVpn {
        panel: shared.panel.clone(),
        ctx: ctx.clone(),
        ids: ctx.workload_ids(started),
        latency_ms: panel_ms(&ctx.scenario.workload),
    };
    let parts = Parts {
        store: SimStore::new(shared.store.clone(), ctx.index, ctx.history.clone()),
        coordination: coordination(ctx, clock.clone(), ids.clone()),
        vpn,
        messenger: SimMessenger { ctx: ctx.clone() },
        crypto: SimCrypto { invoices: shared.invoices.clone() },
        clock,
        ids,
    };
    assemble(parts, crate::seed::rules())
}
