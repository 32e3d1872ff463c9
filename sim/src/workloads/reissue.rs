//! Admins reissuing users' VPN keys from several instances at once, through the real reissue use
//! case (lock with fencing token, panel call, fenced install in the store).

use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atlas::domain::UserId;
use atlas::ports::{Coordination, Ids, SeededIds};
use atlas::services::reissue::{ReissueOutcome, reissue_key};

use super::{InstanceCtx, sleep_until};
use crate::clock::sim_now;
use crate::history::{Event, lock};
use crate::store_host::{SimStore, StoreLink};
use crate::vpn::{Panel, SimVpn};

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

pub struct Shared {
    pub store: StoreLink,
    pub panel: Arc<Mutex<Panel>>,
}

pub async fn run<C: Coordination>(
    ctx: InstanceCtx,
    coordination: C,
    requests: Rc<Vec<Request>>,
    shared: Rc<Shared>,
    panel_ms: [u64; 2],
) {
    let started = sim_now();
    let coordination = Rc::new(coordination);
    let store = Rc::new(SimStore::new(shared.store.clone(), ctx.index, ctx.history.clone()));
    let vpn = Rc::new(SimVpn {
        panel: shared.panel.clone(),
        ctx: ctx.clone(),
        ids: ctx.workload_ids(started),
        latency_ms: panel_ms,
        history: ctx.history.clone(),
    });
    for r in requests.iter().filter(|r| r.instance == ctx.index && r.at >= started) {
        sleep_until(r.at).await;
        let (ctx, coordination, store, vpn, user) =
            (ctx.clone(), coordination.clone(), store.clone(), vpn.clone(), r.user);
        tokio::task::spawn_local(async move {
            let user_id = UserId::new(user).expect("positive");
            let outcome =
                reissue_key(coordination.as_ref(), store.as_ref(), vpn.as_ref(), &ctx.clock, user_id, ctx.lease).await;
            let outcome = match outcome {
                Ok(ReissueOutcome::Reissued { fencing_token, .. }) => format!("reissued under token {fencing_token}"),
                Ok(other) => format!("{other:?}"),
                Err(e) => format!("error: {e}"),
            };
            lock(&ctx.history).push(Event::Reissue { instance: ctx.index, user, outcome });
        });
    }
    std::future::pending::<()>().await;
}
