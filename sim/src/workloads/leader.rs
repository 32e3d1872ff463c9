//! Every instance runs the real leader loop for one role; whoever leads records an effect (a
//! reminder batch, say) on each tick, with its epoch.

use std::rc::Rc;
use std::time::Duration;

use atlas::ports::coordination::Role;
use atlas::runtime::wiring::App;

use crate::history::Event;
use crate::instance::InstanceCtx;
use crate::world::SimWorld;

/// Effects per tick of work (a batch of reminders), a little apart.
pub const EFFECTS_PER_TICK: u32 = 3;
const EFFECT_GAP: Duration = Duration::from_millis(40);

pub async fn run(ctx: InstanceCtx, app: Rc<App<SimWorld>>, ttl: Duration, work_interval: Duration) {
    let index = ctx.index;
    atlas::runtime::leader::lead(
        &app.coordination,
        app.clock.as_ref(),
        Role::Reminders,
        ttl,
        work_interval,
        move |held| {
            let ctx = ctx.clone();
            async move {
                for _ in 0..EFFECTS_PER_TICK {
                    ctx.wait_out_pause().await;
                    // The worker's own check before each effect: a leader frozen past its lease
                    // must not act when it wakes.
                    if !held.is_valid(&ctx.clock) {
                        return;
                    }
                    crate::history::lock(&ctx.history).push(Event::Effect { instance: index, epoch: held.epoch });
                    tokio::time::sleep(EFFECT_GAP).await;
                }
            }
        },
        std::future::pending::<()>(),
    )
    .await;
}
