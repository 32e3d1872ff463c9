//! Admins reissuing users' VPN keys from several instances at once, through the real reissue use
//! case (lock with fencing token, panel call, fenced install in the store).

use std::rc::Rc;
use std::time::Duration;

use atlas::domain::UserId;
use atlas::ports::{Ids, SeededIds};
use atlas::runtime::wiring::App;
use atlas::services::reissue::reissue_key;

use crate::clock::sim_now;
use crate::history::{Event, lock};
use crate::instance::{InstanceCtx, sleep_until};
use crate::world::SimWorld;

#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub at: Duration,
    pub instance: usize,
    pub user: i64,
}

pub fn requests(seed: u64, instances: usize, duration: Duration, users: u32, per_user: u32) -> Vec<Request> {
    let ids = SeededIds::new(seed ^ 0x4E15);
    let mut out = Vec::new();
    for user in 1..=i64::from(users) {
        for _ in 0..per_user {
            let at = Duration::from_millis(ids.next_u64() % duration.as_millis().max(1) as u64);
            out.push(Request { at, instance: (ids.next_u64() % instances as u64) as usize, user });
        }
    }
    out.sort_by_key(|r| (r.at, r.instance, r.user));
    out
}

pub async fn run(ctx: InstanceCtx, app: Rc<App<SimWorld>>, requests: Rc<Vec<Request>>) {
    let started = sim_now();
    for r in requests.iter().filter(|r| r.instance == ctx.index && r.at >= started) {
        sleep_until(r.at).await;
        let (ctx, app, user) = (ctx.clone(), app.clone(), r.user);
        tokio::task::spawn_local(async move {
            let user_id = UserId::new(user).expect("positive");
            let outcome =
                reissue_key(&app.coordination, &app.store, &app.vpn, app.clock.as_ref(), user_id, ctx.lease, None)
                    .await;
            let outcome = outcome.map_err(|e| e.to_string());
            lock(&ctx.history).push(Event::Reissue { instance: ctx.index, user, outcome });
        });
    }
    std::future::pending::<()>().await;
}
