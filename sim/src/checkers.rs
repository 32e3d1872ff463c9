//! The invariants, checked over a run's history. Each returns the first violation it finds, as
//! a sentence a person can act on.

use std::collections::BTreeMap;
use std::time::Duration;

use atlas::coord::limits::limit;
use atlas::runtime::intake::Handled;

use crate::history::{Event, History};
use crate::scenario::{Invariant, Scenario, Workload};
use crate::workloads::limits::action;

pub fn check(invariant: Invariant, history: &History, scenario: &Scenario) -> Option<String> {
    match invariant {
        Invariant::NoUpdateTwice => no_update_twice(history),
        Invariant::HandlersNeverOverlap => handlers_never_overlap(history),
        Invariant::FsmSurvivesRestart => fsm_survives_restart(history),
        Invariant::RateLimitsHold => rate_limits_hold(history, scenario),
        Invariant::SingleLeaderEffects => single_leader_effects(history),
        Invariant::LeaderFailover => leader_failover(history, scenario),
    }
}

/// A committed handler: its update, where it ran, when it started and ended, what it read.
struct Committed {
    instance: usize,
    update: i64,
    started: Duration,
    ended: Duration,
    read: Option<String>,
    wrote: Option<String>,
}

/// Committed handlers per chat, in order of their commit.
fn committed(history: &History) -> BTreeMap<i64, Vec<Committed>> {
    let mut starts = BTreeMap::new();
    let mut out: BTreeMap<i64, Vec<Committed>> = BTreeMap::new();
    for r in &history.records {
        match &r.event {
            Event::HandlerStart { id, .. } => {
                starts.insert(*id, r.at);
            }
            Event::HandlerEnd { id, instance, chat, update, read, wrote, outcome: Handled::Committed } => {
                out.entry(*chat).or_default().push(Committed {
                    instance: *instance,
                    update: *update,
                    started: starts.get(id).copied().unwrap_or(r.at),
                    ended: r.at,
                    read: read.clone(),
                    wrote: wrote.clone(),
                });
            }
            _ => {}
        }
    }
    out
}

fn no_update_twice(history: &History) -> Option<String> {
    for (chat, handlers) in committed(history) {
        let mut seen: BTreeMap<i64, &Committed> = BTreeMap::new();
        for h in &handlers {
            if let Some(first) = seen.insert(h.update, h) {
                return Some(format!(
                    "update {} of chat {chat} was applied twice: by atlas-{} at {:.3}s and by atlas-{} at {:.3}s",
                    h.update, first.instance, first.ended.as_secs_f64(), h.instance, h.ended.as_secs_f64()
                ));
            }
        }
    }
    None
}

fn handlers_never_overlap(history: &History) -> Option<String> {
    for (chat, mut handlers) in committed(history) {
        handlers.sort_by_key(|h| h.started);
        for pair in handlers.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if b.started < a.ended {
                return Some(format!(
                    "handlers of chat {chat} overlapped: update {} on atlas-{} ran {:.3}s..{:.3}s, update {} on atlas-{} started at {:.3}s",
                    a.update, a.instance, a.started.as_secs_f64(), a.ended.as_secs_f64(), b.update, b.instance, b.started.as_secs_f64()
                ));
            }
        }
    }
    None
}

fn fsm_survives_restart(history: &History) -> Option<String> {
    for (chat, handlers) in committed(history) {
        let mut last: Option<&Committed> = None;
        for h in &handlers {
            let expected = last.and_then(|l| l.wrote.clone());
            if h.read != expected {
                return Some(format!(
                    "chat {chat}: update {} on atlas-{} read conversation state {:?}, but the last committed state was {:?}{}",
                    h.update,
                    h.instance,
                    h.read,
                    expected,
                    last.map(|l| format!(" (update {} on atlas-{})", l.update, l.instance)).unwrap_or_default()
                ));
            }
            last = Some(h);
        }
    }
    None
}

fn rate_limits_hold(history: &History, scenario: &Scenario) -> Option<String> {
    let mut granted: BTreeMap<(i64, String), u32> = BTreeMap::new();
    for r in &history.records {
        if let Event::Rate { user, action, verdict, .. } = &r.event {
            if verdict == "allowed" {
                *granted.entry((*user, action.clone())).or_default() += 1;
            }
        }
    }
    let duration = Duration::from_secs_f64(scenario.duration_secs);
    for ((user, name), count) in granted {
        let Some(l) = action(&name).map(limit) else { continue };
        // The whole run fits in one window, so the total is what one window saw.
        let windows = duration.as_secs_f64() / l.window.as_secs_f64();
        let allowed = l.max * windows.ceil().max(1.0) as u32;
        if count > allowed {
            return Some(format!(
                "user {user} was granted {count} '{name}' attempts in {:.0}s; the limit is {} per {}s",
                duration.as_secs_f64(),
                l.max,
                l.window.as_secs()
            ));
        }
    }
    None
}

fn single_leader_effects(history: &History) -> Option<String> {
    let mut holder_of: BTreeMap<u64, usize> = BTreeMap::new();
    let mut newest: Option<(u64, usize, Duration)> = None;
    for r in &history.records {
        let Event::Effect { instance, epoch } = r.event else { continue };
        if let Some(&other) = holder_of.get(&epoch) {
            if other != instance {
                return Some(format!(
                    "two leaders at once: atlas-{other} and atlas-{instance} both acted under epoch {epoch} (at {:.3}s)",
                    r.at.as_secs_f64()
                ));
            }
        }
        holder_of.insert(epoch, instance);
        if let Some((e, i, at)) = newest {
            if epoch < e {
                return Some(format!(
                    "atlas-{instance} acted under epoch {epoch} at {:.3}s, after atlas-{i} had acted under the newer epoch {e} at {:.3}s",
                    r.at.as_secs_f64(),
                    at.as_secs_f64()
                ));
            }
        }
        if newest.is_none_or(|(e, _, _)| epoch >= e) {
            newest = Some((epoch, instance, r.at));
        }
    }
    None
}

fn leader_failover(history: &History, scenario: &Scenario) -> Option<String> {
    let Workload::Leader { ttl_ms, work_interval_ms } = scenario.workload else {
        return Some("leader_failover needs the leader workload".into());
    };
    // A new leader may wait for the old lease to end (ttl), for its own next try (ttl/3) and
    // for its first tick (work interval); 100 ms more for the network.
    let bound = Duration::from_millis(ttl_ms + ttl_ms / 3 + work_interval_ms + 100);
    let effects: Vec<Duration> = history.records.iter().filter(|r| matches!(r.event, Event::Effect { .. })).map(|r| r.at).collect();
    let Some(first) = effects.first() else {
        return Some("no instance ever led".into());
    };
    if *first > bound {
        return Some(format!("the first leader acted only at {:.3}s (bound {:.3}s)", first.as_secs_f64(), bound.as_secs_f64()));
    }
    let end = Duration::from_secs_f64(scenario.duration_secs);
    let ends = effects.iter().copied().chain(std::iter::once(end));
    for (a, b) in effects.iter().zip(ends.skip(1)) {
        if b.saturating_sub(*a) > bound {
            return Some(format!(
                "no leader acted from {:.3}s to {:.3}s ({:.3}s without a leader; bound {:.3}s)",
                a.as_secs_f64(),
                b.as_secs_f64(),
                b.saturating_sub(*a).as_secs_f64(),
                bound.as_secs_f64()
            ));
        }
    }
    None
}
