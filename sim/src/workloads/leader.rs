//! Every instance runs the real leader loop for one role; whoever leads records an effect (a
//! reminder batch, say) on each tick, with its epoch.

use std::time::Duration;

use atlas::ports::Coordination;
use atlas::ports::coordination::Role;

use super::InstanceCtx;
use crate::history::Event;

pub async fn run<C: Coordination>(ctx: InstanceCtx, coordination: C, ttl: Duration, work_interval: Duration) {
    let clock = ctx.clock;
    let history = ctx.history.clone();
    let index = ctx.index;
    atlas::runtime::leader::lead(
        &coordination,
        &clock,
        Role::Reminders,
        ttl,
        work_interval,
        move |held| {
            let history = history.clone();
            let ctx = ctx.clone();
            async move {
                ctx.wait_out_pause().await;
                crate::history::lock(&history).push(Event::Effect { instance: index, epoch: held.epoch });
            }
        },
        std::future::pending::<()>(),
    )
    .await;
}
