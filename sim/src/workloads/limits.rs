//! Users hammering rate-limited actions (promo codes, withdrawals, payments), their attempts
//! spread over the instances; each instance asks the real guarded limiter of its assembly.

use std::rc::Rc;
use std::time::Duration;

use atlas::domain::UserId;
use atlas::ports::Ids as _;
use atlas::ports::SeededIds;
use atlas::ports::coordination::LimitedAction;
use atlas::runtime::wiring::App;

use crate::clock::sim_now;
use crate::history::Event;
use crate::instance::{InstanceCtx, sleep_until};
use crate::world::SimWorld;

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
    actions: &[LimitedAction],
) -> Vec<Attempt> {
    assert!(!actions.is_empty(), "scenario validation requires an action");
    let ids = SeededIds::new(seed ^ 0x11A1);
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

pub async fn run(ctx: InstanceCtx, app: Rc<App<SimWorld>>, attempts: Rc<Vec<Attempt>>) {
    let started = sim_now();
    for (n, a) in attempts.iter().enumerate().filter(|(_, a)| a.instance == ctx.index && a.at >= started) {
        sleep_until(a.at).await;
        // Each attempt of the plan is its own (two may fall in one millisecond).
        let attempt = format!("attempt-{n}");
        let verdict = app.coordination.check_rate(UserId::new(a.user).expect("positive"), a.action, &attempt).await;
        let event = Event::Rate { instance: ctx.index, user: a.user, action: a.action, verdict };
        crate::history::lock(&ctx.history).push(event);
    }
    std::future::pending::<()>().await;
}
