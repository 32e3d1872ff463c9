//! Users hammering rate-limited actions (promo codes, withdrawals, payments), their attempts
//! spread over the instances; each instance asks the real guarded limiter.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use atlas::coord::keys::action_name;
use atlas::coord::memory::MemoryCoordination;
use atlas::coord::policy::{Guarded, RateVerdict};
use atlas::domain::UserId;
use atlas::ports::coordination::LimitedAction;
use atlas::ports::{Coordination, Ids, SeededIds};

use super::{InstanceCtx, sleep_until};
use crate::clock::sim_now;
use crate::history::Event;

pub fn action(name: &str) -> Option<LimitedAction> {
    Some(match name {
        "promo" => LimitedAction::PromoAttempt,
        "withdrawal" => LimitedAction::WithdrawalRequest,
        "payment" => LimitedAction::PaymentAttempt,
        "admin" => LimitedAction::AdminCommand,
        "trial" => LimitedAction::TrialActivation,
        _ => return None,
    })
}

#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    pub at: Duration,
    pub instance: usize,
    pub user: i64,
    pub action: LimitedAction,
}

/// The attempts of a run, fixed by the seed, in time order.
pub fn attempts(
    seed: u64,
    instances: usize,
    duration: Duration,
    users: u32,
    per_user: u32,
    actions: &[String],
) -> Vec<Attempt> {
    let ids = SeededIds::new(seed ^ 0x11A1);
    let actions: Vec<LimitedAction> = actions.iter().filter_map(|a| action(a)).collect();
    let mut out = Vec::new();
    for user in 1..=i64::from(users) {
        for n in 0..per_user {
            let at = Duration::from_millis(ids.next_u64() % duration.as_millis().max(1) as u64);
            let instance = (ids.next_u64() % instances as u64) as usize;
            out.push(Attempt { at, instance, user, action: actions[n as usize % actions.len()] });
        }
    }
    out.sort_by_key(|a| (a.at, a.instance, a.user));
    out
}

pub async fn run<C: Coordination>(ctx: InstanceCtx, coordination: C, attempts: Rc<Vec<Attempt>>) {
    let started = sim_now();
    let local = MemoryCoordination::new(Arc::new(ctx.clock), Arc::new(SeededIds::new(ctx.seed ^ 0x10CA1)));
    let guarded = Guarded::new(coordination, local);
    for a in attempts.iter().filter(|a| a.instance == ctx.index && a.at >= started) {
        sleep_until(a.at).await;
        let verdict = match guarded.check_rate(UserId::new(a.user).expect("positive"), a.action).await {
            RateVerdict::Allowed => "allowed",
            RateVerdict::Denied { .. } => "denied",
            RateVerdict::TryLater => "try_later",
        };
        crate::history::lock(&ctx.history).push(Event::Rate {
            instance: ctx.index,
            user: a.user,
            action: action_name(a.action).into(),
            verdict: verdict.into(),
        });
    }
    std::future::pending::<()>().await;
}
