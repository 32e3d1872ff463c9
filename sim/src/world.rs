//! Building a simulated world: the turmoil configuration every run shares, the Redis host, and an
//! instance's ports (clock, seeded randomness, coordination over simulated TCP).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use atlas::coord::connector::RedisConnector;
use atlas::coord::keys::KeySpace;
use atlas::coord::memory::MemoryCoordination;
use atlas::coord::redis::RedisCoordination;
use atlas::ports::{Clock, Ids, SeededIds};

use crate::clock::{SIM_EPOCH_UNIX_SECS, SimClock};
use crate::dialer::SimDialer;
use crate::redis_host::{REDIS_PORT, RedisState, serve};

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

/// The randomness of one instance of one run: fixed by the seed and the instance's index.
pub fn instance_ids(seed: u64, instance: usize) -> Arc<dyn Ids> {
    Arc::new(SeededIds::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (instance as u64 + 1)))
}

pub type SimRedis = RedisCoordination<SimDialer>;

/// An instance's coordination on the sim Redis: the real connector and scripts.
pub fn redis_coordination(keys: &KeySpace, clock: SimClock, ids: Arc<dyn Ids>, lease_ttl: Duration) -> SimRedis {
    let clock: Arc<dyn Clock> = Arc::new(clock);
    let dialer = SimDialer { host: REDIS_HOST.into(), port: REDIS_PORT };
    let connector = RedisConnector::new(dialer, Default::default(), clock.clone(), ids.clone());
    RedisCoordination::new(connector, keys.clone(), clock, ids).with_lease_ttl(lease_ttl)
}

/// An instance's coordination in its own memory: the audit's old design.
pub fn legacy_coordination(clock: SimClock, ids: Arc<dyn Ids>, lease_ttl: Duration) -> MemoryCoordination {
    MemoryCoordination::new(Arc::new(clock), ids).with_lease_ttl(lease_ttl)
}

/// The key space of a run (one bot, one environment).
pub fn keys() -> KeySpace {
    KeySpace::new("atlas", "sim", 1)
}
