//! What every run shares, whatever its workload: the result of a run, its progress, the
//! instances' names, the network of the scenario, and the faults as the stepping loop applies
//! them. Below `runner` and `bot`, which both step a world with these.

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
pub(crate) fn network_of(scenario: &Scenario) -> Network {
    Network {
        min_latency: Duration::from_millis(scenario.network.min_latency_ms),
        max_latency: Duration::from_millis(scenario.network.max_latency_ms.max(scenario.network.min_latency_ms)),
        fail_rate: scenario.network.fail_rate,
        repair_rate: scenario.network.repair_rate,
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
            shared.stopping.lock().unwrap_or_else(|p| p.into_inner()).insert(i);
        }
        Action::Crash(i) => {
            note(FaultEvent::Crashed(i));
            sim.crash(instance_name(i));
        }
        Action::Bounce(i) => {
            note(FaultEvent::Restarted(i));
            shared.stopping.lock().unwrap_or_else(|p| p.into_inner()).remove(&i);
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
            // A frozen process sends nothing: its handlers wait out the pause where they are, and
            // what its other tasks (a lease's keep-alive) would send reaches Redis only after it.
            sim.hold(instance_name(instance), REDIS_HOST);
            return Some((length, Action::Thaw(instance)));
        }
        Action::Thaw(i) => sim.release(instance_name(i), REDIS_HOST),
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
                let stopping = shared.stopping.lock().unwrap_or_else(|p| p.into_inner()).contains(instance);
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
