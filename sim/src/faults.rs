//! What every run shares, whatever its workload: the result of a run, its progress, the
//! instances' names, the network of the scenario, and the faults as the stepping loop applies
//! them. Below `runner` and `bot`, which both step a world with these.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::history::{Event, FaultEvent, History, SharedHistory};
use crate::instance::Pauses;
use crate::scenario::{Fault, Invariant, Mode, Scenario};
use crate::world::{Network, REDIS_HOST, Shared};

#[derive(Debug)]
pub struct RunResult {
    pub seed: u64,
    pub mode: Mode,
    pub history: History,
    pub violations: Vec<(Invariant, String)>,
    pub hash: u64,
    pub simulated: Duration,
    pub progress: Progress,
    pub traffic: Traffic,
}

/// The round trips a whole-bot run made between its hosts (zero for the coordination
/// workloads, which do not count theirs): what `atlas-sim bench` replays with no logic at
/// either end, to measure the floor the transport alone sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Webhook deliveries (the fake Bot API to the balancer, the balancer to an instance),
    /// answered or not.
    pub deliveries: u64,
    /// Commands the sim Redis served (a script is one).
    pub redis: u64,
    /// Store calls the instances made.
    pub store: u64,
    /// Calls to the Bot API, the VPN panel and Crypto Pay.
    pub telegram: u64,
    pub panel: u64,
    pub crypto: u64,
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

pub fn instance_name(index: usize) -> String {
    format!("atlas-{index}")
}

/// The index of the instance named `name` (`instance_name`'s inverse).
fn instance_index(name: &str) -> Option<usize> {
    name.strip_prefix("atlas-")?.parse().ok()
}

/// The instance a fake host's caller is, from the connection's peer (`atlas::net::server::Peer`,
/// which the server puts on every request): `None` outside a simulation, for another host,
/// or for a server that does not say.
pub fn calling_instance(peer: Option<std::net::SocketAddr>) -> Option<usize> {
    let peer = peer.filter(|_| turmoil::in_simulation())?;
    instance_index(&turmoil::reverse_lookup(peer.ip())?)
}

/// A fault as the stepping loop applies it.
#[derive(Clone, Debug)]
pub(crate) enum Action {
    /// SIGTERM: the instance's software watches `Shared::stopping` (whole-bot runs).
    Stop(usize),
    Crash(usize),
    Bounce(usize),
    CrashLeader {
        down: Duration,
        /// Whole-bot runs: the role whose lease holder is killed.
        role: Option<String>,
    },
    Partition(usize),
    Repair(usize),
    Hold(usize),
    Release(usize),
    Pause {
        instance: usize,
        length: Duration,
    },
    /// A paused instance resumes: what it sent to Redis while frozen goes out now.
    Thaw(usize),
    PauseLeader {
        length: Duration,
    },
    /// The store host's tripwire set: the next instance to send `call` is frozen for `length`.
    ArmStoreCall {
        call: String,
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
            Fault::RestartLeader { at_secs, down_secs, ref role } => {
                actions.push((secs(at_secs), Action::CrashLeader { down: secs(down_secs), role: role.clone() }))
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
            Fault::PauseAtStoreCall { ref call, at_secs, for_secs } => {
                actions.push((secs(at_secs), Action::ArmStoreCall { call: call.clone(), length: secs(for_secs) }))
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

/// The links of a run, as the scenario sets them.
pub fn network_of(scenario: &Scenario) -> Network {
    Network {
        min_latency: Duration::from_millis(scenario.network.min_latency_ms),
        max_latency: Duration::from_millis(scenario.network.max_latency_ms.max(scenario.network.min_latency_ms)),
        fail_rate: scenario.network.fail_rate,
        repair_rate: scenario.network.repair_rate,
    }
}

/// The faults on each instance's links at this moment. Turmoil keeps one state per link and each
/// call sets it outright, so overlapping faults are counted here and a link takes the strongest
/// one still on: a partition (what was in flight is lost), else a hold (a pause is one: held
/// messages go out when the last hold ends), else healthy. Holds and partitions are of the link
/// to Redis; a pause holds every link of the instance (`frozen_peers`).
#[derive(Debug)]
pub struct Links {
    /// (instance, peer) -> (holds on, partitions on).
    on: BTreeMap<(usize, &'static str), (u32, u32)>,
    /// The hosts a paused instance stops talking to: Redis alone where the workload's handlers
    /// wait out a pause themselves (`Instance::wait_out_pause`); every host an instance talks to
    /// in a whole-bot run, where the bot's own code runs unchanged and a freeze is what the rest
    /// of the world sees of it: nothing from or to the instance moves, then all of it at once.
    pub frozen_peers: Vec<&'static str>,
}

impl Default for Links {
    fn default() -> Links {
        Links { on: BTreeMap::new(), frozen_peers: vec![REDIS_HOST] }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinkState {
    Healthy,
    Held,
    Partitioned,
}

impl Links {
    fn state(&self, instance: usize, peer: &'static str) -> LinkState {
        match self.on.get(&(instance, peer)).copied().unwrap_or_default() {
            (_, partitions) if partitions > 0 => LinkState::Partitioned,
            (holds, _) if holds > 0 => LinkState::Held,
            _ => LinkState::Healthy,
        }
    }

    /// Counts a hold (`hold`) or partition starting (`+1`) or ending (`-1`) on the link between
    /// `instance` and `peer`, and sets the link.
    fn change(&mut self, sim: &mut turmoil::Sim<'_>, instance: usize, peer: &'static str, hold: bool, starts: bool) {
        let before = self.state(instance, peer);
        let (holds, partitions) = self.on.entry((instance, peer)).or_default();
        let count = if hold { holds } else { partitions };
        *count = if starts { *count + 1 } else { count.saturating_sub(1) };
        let (host, after) = (instance_name(instance), self.state(instance, peer));
        match (before, after) {
            (b, a) if b == a => {}
            (_, LinkState::Partitioned) => sim.partition(host, peer),
            (_, LinkState::Held) => sim.hold(host, peer),
            (LinkState::Held, LinkState::Healthy) => sim.release(host, peer),
            (_, LinkState::Healthy) => sim.repair(host, peer),
        }
    }

    /// A pause starting or ending: a hold on each of `frozen_peers`.
    fn freeze(&mut self, sim: &mut turmoil::Sim<'_>, instance: usize, starts: bool) {
        for peer in self.frozen_peers.clone() {
            self.change(sim, instance, peer, true, starts);
        }
    }
}

/// Applies one fault; may return a follow-up (delay, action), e.g. the restart after a crash.
pub(crate) fn apply(
    sim: &mut turmoil::Sim<'_>,
    action: Action,
    history: &SharedHistory,
    shared: &Shared,
    pauses: &Pauses,
) -> Option<(Duration, Action)> {
    let at = sim.elapsed();
    let note = |fault: FaultEvent| {
        crate::history::lock(history).records.push(crate::history::Record { at, event: Event::Fault(fault) })
    };
    match action {
        Action::Stop(i) => {
            note(FaultEvent::Stopped(i));
            shared.stopping.stop(i);
        }
        Action::Crash(i) => {
            note(FaultEvent::Crashed(i));
            sim.crash(instance_name(i));
        }
        Action::Bounce(i) => {
            note(FaultEvent::Restarted(i));
            shared.stopping.clear(i);
            sim.bounce(instance_name(i));
        }
        Action::Hold(i) => {
            note(FaultEvent::Held(i));
            shared.links.borrow_mut().change(sim, i, REDIS_HOST, true, true);
        }
        Action::Release(i) => {
            note(FaultEvent::Released(i));
            shared.links.borrow_mut().change(sim, i, REDIS_HOST, true, false);
        }
        Action::Pause { instance, length } => {
            note(FaultEvent::Frozen { instance, for_ms: length.as_millis() as u64 });
            pauses.lock().unwrap_or_else(|p| p.into_inner()).push((instance, sim.elapsed() + length));
            // A frozen process sends nothing: its handlers wait out the pause where they are, and
            // what its other tasks (a lease's keep-alive) would send reaches Redis only after it.
            shared.links.borrow_mut().freeze(sim, instance, true);
            return Some((length, Action::Thaw(instance)));
        }
        Action::Thaw(i) => shared.links.borrow_mut().freeze(sim, i, false),
        Action::ArmStoreCall { call, length } => shared.store.arm(call, length),
        Action::PauseLeader { length } => match current_leader(history) {
            Some(instance) => return Some((Duration::ZERO, Action::Pause { instance, length })),
            None => note(FaultEvent::NoLeaderToFreeze),
        },
        Action::CrashLeader { down, role: None } => match current_leader(history) {
            Some(i) => {
                note(FaultEvent::LeaderCrashed(i));
                sim.crash(instance_name(i));
                return Some((down, Action::Bounce(i)));
            }
            None => note(FaultEvent::NoLeaderToCrash),
        },
        Action::CrashLeader { down, role: Some(role) } => {
            let holder = shared.redis.borrow_mut().leader_of(&role, at);
            let leader = holder.and_then(|(host, since)| Some((instance_index(&host)?, since)));
            // The lease of a process that died outlives it until its TTL: only a live process
            // that took the lease and has not been lost since leads.
            let live = leader.filter(|(instance, since)| {
                let stopping = shared.stopping.is_stopping(*instance);
                !stopping && sim.is_host_running(instance_name(*instance)) && !lost_since(history, *instance, *since)
            });
            match live {
                Some((instance, _)) => {
                    note(FaultEvent::Leads { role, instance });
                    // As any crash, for the checkers: an instance lost.
                    note(FaultEvent::Crashed(instance));
                    sim.crash(instance_name(instance));
                    return Some((down, Action::Bounce(instance)));
                }
                None => note(FaultEvent::NoLeaderToCrash),
            }
        }
        Action::Partition(i) => {
            note(FaultEvent::Partitioned(i));
            shared.links.borrow_mut().change(sim, i, REDIS_HOST, false, true);
        }
        Action::Repair(i) => {
            note(FaultEvent::Reconnected(i));
            shared.links.borrow_mut().change(sim, i, REDIS_HOST, false, false);
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

/// The pause a store call just tripped (`Fault::PauseAtStoreCall`), noted, to apply before the
/// next step.
pub(crate) fn tripped(shared: &Shared, history: &SharedHistory, at: Duration) -> Option<Action> {
    let (instance, length, call) = shared.store.take_tripped()?;
    let event = Event::Fault(FaultEvent::SentStoreCall { instance, call });
    crate::history::lock(history).records.push(crate::history::Record { at, event });
    Some(Action::Pause { instance, length })
}

/// Whether `instance` was crashed or stopped at or after `since`.
fn lost_since(history: &SharedHistory, instance: usize, since: Duration) -> bool {
    crate::history::lock(history).records.iter().any(|r| {
        r.at >= since
            && matches!(r.event, Event::Fault(FaultEvent::Crashed(i) | FaultEvent::Stopped(i)) if i == instance)
    })
}

/// The instance that acted as leader last.
fn current_leader(history: &SharedHistory) -> Option<usize> {
    crate::history::lock(history).records.iter().rev().find_map(|r| match r.event {
        Event::Effect { instance, .. } => Some(instance),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arrival times (ms) at Redis of datagrams atlas-0 sends every 100 ms for 6 s, with `faults`
    /// on its link.
    fn arrivals(faults: Vec<(Duration, Action)>) -> Vec<u64> {
        let mut sim =
            crate::world::builder(1, Duration::from_secs(10), Duration::from_millis(10), Network::default()).build();
        let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let seen = got.clone();
        sim.host(REDIS_HOST, move || {
            let seen = seen.clone();
            async move {
                let socket = turmoil::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 9)).await?;
                let mut buffer = [0u8; 8];
                loop {
                    socket.recv_from(&mut buffer).await?;
                    seen.borrow_mut().push(turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64);
                }
            }
        });
        sim.client(instance_name(0), async move {
            let socket = turmoil::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 9)).await?;
            for _ in 0..60 {
                socket.send_to(b"x", (REDIS_HOST, 9)).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(())
        });
        let (history, shared, pauses) = (SharedHistory::default(), Shared::default(), Pauses::default());
        let mut pending = faults;
        pending.reverse();
        while sim.elapsed() < Duration::from_secs(7) {
            while pending.last().is_some_and(|(at, _)| *at <= sim.elapsed()) {
                let (_, action) = pending.pop().expect("checked");
                if let Some((after, next)) = apply(&mut sim, action, &history, &shared, &pauses) {
                    pending.push((sim.elapsed() + after, next));
                    pending.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
                }
            }
            sim.step().unwrap();
        }
        got.take()
    }

    /// A partition inside a hold ends before the hold does: the link stays held until the hold
    /// ends (each fault set the link outright, and the repair healed it early). (A pause and a
    /// partition may not overlap: `Scenario::validate`.)
    #[test]
    fn overlapping_link_faults_end_when_the_last_one_ends() {
        let s = Duration::from_secs;
        let got = arrivals(vec![
            (s(1), Action::Hold(0)),
            (s(2), Action::Partition(0)),
            (s(3), Action::Repair(0)),
            (s(5), Action::Release(0)),
        ]);
        assert!(got.iter().all(|&ms| ms <= 1_000 || ms >= 5_000), "arrived while held: {got:?}");
        // What was sent in the hold after the partition went out at its end; what was sent
        // before or during the partition was lost, as a partition loses what is in flight.
        assert_eq!(got.iter().filter(|&&ms| ms == 5_000).count(), 20, "{got:?}");
        assert_eq!(got.len(), 10 + 20 + 10, "{got:?}");

        // A pause overlapping a hold: the link is released only when both are over, and all that
        // was held goes out then.
        let got = arrivals(vec![
            (s(1), Action::Hold(0)),
            (s(2), Action::Pause { instance: 0, length: s(3) }),
            (s(3), Action::Release(0)),
        ]);
        assert!(got.iter().all(|&ms| ms <= 1_000 || ms >= 5_000), "arrived while paused: {got:?}");
        assert_eq!(got.iter().filter(|&&ms| ms == 5_000).count(), 40, "{got:?}");
        assert_eq!(got.len(), 10 + 40 + 10, "{got:?}");
    }
}
