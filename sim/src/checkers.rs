//! The invariants, checked over a run's history. Each returns the first violation it finds, as
//! a sentence a person can act on.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use atlas::coord::limits::limit;
use atlas::coord::policy::RateVerdict;
use atlas::domain::{Money, SubscriptionId, UserId};
use atlas::runtime::intake::Handled;
use atlas::services::reissue::panel_label;

use crate::history::{Event, History, PurchaseSeen, StoreAnswer};
use crate::scenario::{Invariant, Scenario, Workload};
use crate::seed::SEED_BALANCE_MINOR;

/// What the run left behind, for the invariants about the final state.
#[derive(Debug)]
pub struct FinalState {
    /// Active keys per subscription in the store.
    pub store_keys: BTreeMap<SubscriptionId, Vec<String>>,
    /// Keys alive at the VPN panel per subscription.
    pub panel_keys: BTreeMap<SubscriptionId, Vec<String>>,
    /// Final balance per user.
    pub balances: BTreeMap<UserId, Money>,
    /// The price of the period the purchases workload buys (from the catalogue).
    pub period_price: Money,
}

pub fn check(invariant: Invariant, history: &History, scenario: &Scenario, end: &FinalState) -> Option<String> {
    match invariant {
        Invariant::NoUpdateTwice => no_update_twice(history),
        Invariant::HandlersNeverOverlap => {
            handlers_never_overlap(history).or_else(|| no_commit_inside_anothers_lease(history, scenario))
        }
        Invariant::FsmSurvivesRestart => fsm_survives_restart(history),
        Invariant::RateLimitsHold => rate_limits_hold(history, scenario),
        Invariant::SingleLeaderEffects => single_leader_effects(history),
        Invariant::LeaderFailover => leader_failover(history, scenario),
        Invariant::NoDoubleReissue => no_double_reissue(history, scenario, end),
        Invariant::MoneyOnce => money_once(history, end),
        // Validation keeps these to the whole-bot workload, which `crate::bot::checks` judges.
        Invariant::LedgerConserved
        | Invariant::PromoWithinLimits
        | Invariant::Liveness
        | Invariant::RepliesInOrder
        | Invariant::NoDoubleEffect => Some(format!("{} is checked on whole-bot runs only", invariant.name())),
    }
}

/// A handler that reached its commit: where it ran, its critical section (from the begin's
/// reply to the moment it returned its new state), what it read and wrote, and whether the
/// commit is known to have applied (`false`: the reply never came, so it may or may not have).
struct Finished {
    instance: usize,
    update: i64,
    started: Duration,
    worked_until: Duration,
    read: Option<String>,
    wrote: Option<String>,
    committed: bool,
}

/// One handler of the chat workload as the history tells it: where it ran, whether it held the
/// chat's lease, its start (the begin's answer) and what it read, when it returned its new state
/// and what it wrote (the commit is sent next), and the intake's verdict with its time.
struct Handler {
    id: u64,
    leased: bool,
    instance: usize,
    chat: i64,
    update: i64,
    started: Duration,
    read: Option<String>,
    returned: Option<(Duration, String)>,
    ended: Option<(Duration, Handled)>,
}

/// Every handler of the run, by id.
fn handlers(history: &History) -> BTreeMap<u64, Handler> {
    let mut handlers: BTreeMap<u64, Handler> = BTreeMap::new();
    for r in &history.records {
        match &r.event {
            Event::HandlerStart { id, instance, chat, update, read, leased, .. } => {
                let handler = Handler {
                    id: *id,
                    leased: *leased,
                    instance: *instance,
                    chat: *chat,
                    update: *update,
                    started: r.at,
                    read: read.clone(),
                    returned: None,
                    ended: None,
                };
                handlers.insert(*id, handler);
            }
            Event::HandlerReturned { id, wrote } => {
                if let Some(h) = handlers.get_mut(id) {
                    h.returned = Some((r.at, wrote.clone()));
                }
            }
            Event::HandlerEnd { id, outcome, .. } => {
                if let Some(h) = handlers.get_mut(id) {
                    h.ended = Some((r.at, outcome.clone()));
                }
            }
            _ => {}
        }
    }
    handlers
}

/// Per chat, the handlers whose commit applied or may have applied, in the order they started.
/// Under a working lease that is also the order of their commits: a handler starts only after
/// the previous one's commit released the lease. A commit whose reply never came (a timeout, or
/// the instance crashed first) may have applied: `committed` is false for those.
fn finished(history: &History) -> BTreeMap<i64, Vec<Finished>> {
    let handlers = handlers(history);
    let mut out: BTreeMap<i64, Vec<Finished>> = BTreeMap::new();
    for h in handlers.into_values() {
        let Some((worked_until, wrote)) = h.returned else { continue };
        // A refused state still commits: the update is marked done and the chat released, with
        // the state it read kept.
        let (committed, wrote) = match h.ended.map(|(_, outcome)| outcome) {
            Some(Handled::Committed) => (true, Some(wrote)),
            Some(Handled::StateRefused) => (true, h.read.clone()),
            None | Some(Handled::CommitFailed) => (false, Some(wrote)),
            Some(_) => continue,
        };
        out.entry(h.chat).or_default().push(Finished {
            instance: h.instance,
            update: h.update,
            started: h.started,
            worked_until,
            read: h.read,
            wrote,
            committed,
        });
    }
    for handlers in out.values_mut() {
        handlers.sort_by_key(|h| h.started);
    }
    out
}

fn committed(history: &History) -> BTreeMap<i64, Vec<Finished>> {
    let mut all = finished(history);
    for handlers in all.values_mut() {
        handlers.retain(|h| h.committed);
    }
    all
}

fn no_update_twice(history: &History) -> Option<String> {
    for (chat, handlers) in committed(history) {
        let mut seen: BTreeMap<i64, &Finished> = BTreeMap::new();
        for h in &handlers {
            if let Some(first) = seen.insert(h.update, h) {
                return Some(format!(
                    "update {} of chat {chat} was applied twice: by atlas-{} (from {:.3}s) and by atlas-{} (from {:.3}s)",
                    h.update,
                    first.instance,
                    first.started.as_secs_f64(),
                    h.instance,
                    h.started.as_secs_f64()
                ));
            }
        }
    }
    None
}

fn handlers_never_overlap(history: &History) -> Option<String> {
    for (chat, handlers) in committed(history) {
        for pair in handlers.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if b.started < a.worked_until {
                return Some(format!(
                    "handlers of chat {chat} overlapped: update {} on atlas-{} worked {:.3}s..{:.3}s, update {} on atlas-{} started at {:.3}s",
                    a.update,
                    a.instance,
                    a.started.as_secs_f64(),
                    a.worked_until.as_secs_f64(),
                    b.update,
                    b.instance,
                    b.started.as_secs_f64()
                ));
            }
        }
    }
    None
}

/// The windows in which what `instance` sent did not move: its pauses and its held links.
fn stalls(history: &History) -> Vec<(usize, Duration, Duration)> {
    let mut out = Vec::new();
    let mut held: BTreeMap<usize, Duration> = BTreeMap::new();
    for r in &history.records {
        match &r.event {
            Event::Fault(crate::history::FaultEvent::Frozen { instance, for_ms }) => {
                out.push((*instance, r.at, r.at + Duration::from_millis(*for_ms)));
            }
            Event::Fault(crate::history::FaultEvent::Held(instance)) => {
                held.insert(*instance, r.at);
            }
            Event::Fault(crate::history::FaultEvent::Released(instance)) => {
                if let Some(from) = held.remove(instance) {
                    out.push((*instance, from, r.at));
                }
            }
            _ => {}
        }
    }
    out.extend(held.into_iter().map(|(instance, from)| (instance, from, Duration::MAX)));
    out
}

/// The fencing half of per-chat serialization: a commit lands under its own lease, or late when
/// nobody holds the chat (`commit_update.lua`), never while another handler holds it. A commit
/// ran at Redis after its handler returned (after the pause or hold that kept it, if one did)
/// and before its answer came; another handler surely held the lease from its begin's answer
/// until its own commit was sent or the lease's time ran out (less a round trip: the lease was
/// taken before its answer came). Handlers whose begin may have been held, and any time Redis
/// restarted, are left out: there the lease's start or life is not known; so are handlers that
/// ran degraded (no lease) or whose end never came.
fn no_commit_inside_anothers_lease(history: &History, scenario: &Scenario) -> Option<String> {
    let lease = Duration::from_millis(scenario.lease_ms);
    let round_trip = Duration::from_millis(2 * (scenario.network.max_latency_ms + scenario.tick_ms));
    let stalls = stalls(history);
    let restarts: Vec<Duration> = history
        .records
        .iter()
        .filter(|r| matches!(r.event, Event::Fault(crate::history::FaultEvent::RedisRestarted { .. })))
        .map(|r| r.at)
        .collect();
    let handlers = handlers(history);
    let stalled_at = |instance: usize, at: Duration| {
        stalls.iter().filter(|(i, from, to)| *i == instance && *from <= at && at < *to).map(|(_, _, to)| *to).max()
    };
    let stalled_within = |instance: usize, from: Duration, to: Duration| {
        stalls.iter().any(|(i, a, b)| *i == instance && *a <= to && from <= *b)
    };
    for a in handlers.values() {
        let (Some((returned, _)), Some((answered, Handled::Committed | Handled::StateRefused))) =
            (&a.returned, &a.ended)
        else {
            continue;
        };
        // A stall covering `returned` ends after it.
        let ran_from = stalled_at(a.instance, *returned).unwrap_or(*returned);
        for b in handlers.values().filter(|b| b.chat == a.chat && b.id != a.id) {
            // A handler that ran degraded held no lease; one whose end never came may have.
            let Some((ended, _)) = &b.ended else { continue };
            if !b.leased {
                continue;
            }
            let sent = b.returned.as_ref().map_or(*ended, |(at, _)| *at);
            let held_until = sent.min((b.started + lease).saturating_sub(round_trip));
            let known = !stalled_within(b.instance, b.started.saturating_sub(lease), b.started)
                && !restarts.iter().any(|at| b.started.saturating_sub(lease) <= *at && *at <= *answered);
            if known && b.started <= ran_from && *answered <= held_until {
                return Some(format!(
                    "chat {}: the commit of update {} on atlas-{} ran between {:.3}s and {:.3}s, while update {} on atlas-{} held the chat's lease (from {:.3}s to at least {:.3}s): a commit landed under another handler's lease",
                    a.chat,
                    a.update,
                    a.instance,
                    ran_from.as_secs_f64(),
                    answered.as_secs_f64(),
                    b.update,
                    b.instance,
                    b.started.as_secs_f64(),
                    held_until.as_secs_f64()
                ));
            }
        }
    }
    None
}

/// Each committed handler read what the previous commit wrote — or what a handler in between
/// whose commit's reply was lost wrote (that commit may have applied).
fn fsm_survives_restart(history: &History) -> Option<String> {
    for (chat, handlers) in finished(history) {
        let mut expected: Vec<Option<String>> = vec![None];
        let mut last_committed: Option<&Finished> = None;
        for h in &handlers {
            if !h.committed {
                expected.push(h.wrote.clone());
                continue;
            }
            if !expected.contains(&h.read) {
                return Some(format!(
                    "chat {chat}: update {} on atlas-{} read conversation state {:?}, but the last committed state was {:?}{}",
                    h.update,
                    h.instance,
                    h.read,
                    expected[0],
                    last_committed
                        .map(|l| format!(" (update {} on atlas-{})", l.update, l.instance))
                        .unwrap_or_default()
                ));
            }
            expected = vec![h.wrote.clone()];
            last_committed = Some(h);
        }
    }
    None
}

fn rate_limits_hold(history: &History, scenario: &Scenario) -> Option<String> {
    let mut granted: BTreeMap<(i64, atlas::ports::coordination::LimitedAction), u32> = BTreeMap::new();
    for r in &history.records {
        if let Event::Rate { user, action, verdict: RateVerdict::Allowed, .. } = &r.event {
            *granted.entry((*user, *action)).or_default() += 1;
        }
    }
    let duration = Duration::from_secs_f64(scenario.duration_secs);
    for ((user, action), count) in granted {
        let (l, name) = (limit(action), action.name());
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
        if let Some(&other) = holder_of.get(&epoch)
            && other != instance
        {
            return Some(format!(
                "two leaders at once: atlas-{other} and atlas-{instance} both acted under epoch {epoch} (at {:.3}s)",
                r.at.as_secs_f64()
            ));
        }
        holder_of.insert(epoch, instance);
        if let Some((e, i, at)) = newest
            && epoch < e
        {
            return Some(format!(
                "atlas-{instance} acted under epoch {epoch} at {:.3}s, after atlas-{i} had acted under the newer epoch {e} at {:.3}s",
                r.at.as_secs_f64(),
                at.as_secs_f64()
            ));
        }
        if newest.is_none_or(|(e, _, _)| epoch >= e) {
            newest = Some((epoch, instance, r.at));
        }
    }
    None
}

fn leader_failover(history: &History, scenario: &Scenario) -> Option<String> {
    let Workload::Leader { ttl_ms, work_interval_ms } = scenario.workload else {
        unreachable!("scenario validation allows leader_failover only with the leader workload")
    };
    // A new leader may wait for the old lease to end (ttl), for its own next try (ttl/3) and
    // for its first tick (work interval); 100 ms more for the network.
    let bound = Duration::from_millis(ttl_ms + ttl_ms / 3 + work_interval_ms + 100);
    let effects: Vec<Duration> =
        history.records.iter().filter(|r| matches!(r.event, Event::Effect { .. })).map(|r| r.at).collect();
    let Some(first) = effects.first() else {
        return Some("no instance ever led".into());
    };
    if *first > bound {
        return Some(format!(
            "the first leader acted only at {:.3}s (bound {:.3}s)",
            first.as_secs_f64(),
            bound.as_secs_f64()
        ));
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

/// Two reissues of one key never hold the lock at once, and a stale lock holder never commits.
///
/// Holding: a holder's lock is surely still valid from its claim (sent right after the grant)
/// until it finished, or until its lease could have ended (`lease - slack`, the slack covering the
/// grant's reply latency). No other holder of the same subscription may claim in that window.
/// Committing: a key installed under token t was created with no other reissue of the same
/// subscription creating a key in between. After settling, the store has one active key per
/// reissued subscription and the panel has exactly that key alive.
fn no_double_reissue(history: &History, scenario: &Scenario, end: &FinalState) -> Option<String> {
    if let Some(why) = reissue_locks_exclusive(history, scenario) {
        return Some(why);
    }
    let mut created: Vec<(Duration, usize, SubscriptionId, String)> = Vec::new();
    for r in &history.records {
        match &r.event {
            Event::KeyCreated { instance, subscription, label } => {
                created.push((r.at, *instance, *subscription, label.clone()))
            }
            Event::KeyInstall { instance, subscription, token, answer: StoreAnswer::Done } => {
                let label = panel_label(*subscription, *token);
                let Some(own) = created.iter().rev().find(|c| c.2 == *subscription && c.3 == label) else {
                    return Some(format!("a key was installed under token {token} that no reissue created"));
                };
                if let Some(other) = created.iter().find(|c| c.2 == *subscription && c.3 != label && c.0 > own.0) {
                    return Some(format!(
                        "two reissues of subscription {subscription} overlapped: atlas-{} took the lock at {:.3}s and installed at {:.3}s, but atlas-{} had taken the lock at {:.3}s",
                        instance,
                        own.0.as_secs_f64(),
                        r.at.as_secs_f64(),
                        other.1,
                        other.0.as_secs_f64()
                    ));
                }
            }
            _ => {}
        }
    }
    for (subscription, keys) in &end.store_keys {
        if keys.len() != 1 {
            return Some(format!("subscription {subscription} has {} active keys in the store: {keys:?}", keys.len()));
        }
        let alive = end.panel_keys.get(subscription).cloned().unwrap_or_default();
        if &alive != keys {
            return Some(format!(
                "subscription {subscription}: the store's active key is {keys:?}, the panel has {alive:?} alive"
            ));
        }
    }
    for (subscription, alive) in &end.panel_keys {
        if !end.store_keys.contains_key(subscription) {
            return Some(format!(
                "subscription {subscription}: keys {alive:?} alive at the panel, none active in the store"
            ));
        }
    }
    None
}

fn reissue_locks_exclusive(history: &History, scenario: &Scenario) -> Option<String> {
    let lease = Duration::from_millis(scenario.lease_ms);
    let slack = Duration::from_millis(scenario.network.max_latency_ms + scenario.tick_ms);
    // (instance, subscription, token) -> (claimed at, finished at)
    let mut holders: BTreeMap<(usize, SubscriptionId, u64), (Duration, Option<Duration>)> = BTreeMap::new();
    for r in &history.records {
        match &r.event {
            Event::KeyClaim { instance, subscription, token } => {
                holders.insert((*instance, *subscription, *token), (r.at, None));
            }
            Event::KeyClaimed { instance, subscription, token, answer } if *answer != StoreAnswer::Done => {
                if let Some(h) = holders.get_mut(&(*instance, *subscription, *token)) {
                    h.1 = Some(r.at);
                }
            }
            Event::KeyInstall { instance, subscription, token, .. } => {
                if let Some(h) = holders.get_mut(&(*instance, *subscription, *token)) {
                    h.1 = Some(r.at);
                }
            }
            _ => {}
        }
    }
    for (&(instance, subscription, token), &(claimed, finished)) in &holders {
        let surely_valid_until = (claimed + lease).saturating_sub(slack).min(finished.unwrap_or(Duration::MAX));
        let intruder = holders.iter().find(|(key, window)| {
            let ((i, s, t), c) = (**key, window.0);
            s == subscription && (i, t) != (instance, token) && c > claimed && c < surely_valid_until
        });
        if let Some((&(other, _, other_token), &(at, _))) = intruder {
            return Some(format!(
                "two reissues of subscription {subscription} held the lock at once: atlas-{instance} (token {token}) from {:.3}s, atlas-{other} (token {other_token}) from {:.3}s",
                claimed.as_secs_f64(),
                at.as_secs_f64()
            ));
        }
    }
    None
}

/// Each update pays once, however often it was delivered or handled: per user, the balance went
/// down by the price of one period for each distinct update whose purchase went through (or may
/// have: a store call that never answered), and by nothing else.
fn money_once(history: &History, end: &FinalState) -> Option<String> {
    let mut paid: BTreeMap<UserId, (BTreeSet<i64>, BTreeSet<i64>)> = BTreeMap::new();
    for r in &history.records {
        if let Event::Purchase { user, update, outcome, .. } = &r.event {
            let user = UserId::new(*user).expect("workload users are positive");
            let (sure, maybe) = paid.entry(user).or_default();
            match outcome {
                PurchaseSeen::Charged if !sure.insert(*update) => {
                    return Some(format!("update {update} of user {user} was charged twice"));
                }
                PurchaseSeen::Unknown => {
                    maybe.insert(*update);
                }
                _ => {}
            }
        }
    }
    let price = end.period_price.minor();
    for (user, balance) in &end.balances {
        let (sure, maybe) = paid.get(user).cloned().unwrap_or_default();
        let spent = SEED_BALANCE_MINOR - balance.minor();
        let low = sure.len() as i64 * price;
        let high = sure.union(&maybe).count() as i64 * price;
        if spent < low || spent > high {
            return Some(format!(
                "user {user} spent {spent} but paid for {} updates ({} more unknown): {}..{} expected",
                sure.len(),
                maybe.len(),
                low,
                high
            ));
        }
    }
    None
}
