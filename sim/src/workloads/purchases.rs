//! Users paying for a period from their balance: each payment is an update, taken through the
//! real intake function and paid through the store with an idempotency key derived from the
//! update (as the bot's purchase dialogue does), so a redelivered or re-handled update is
//! never charged twice, even when Redis forgot it had seen the update.

use std::rc::Rc;

use atlas::domain::{IdempotencyKey, UserId};
use atlas::ports::coordination::{Admission, FsmWrite};
use atlas::ports::store::{Applied, PurchaseError, PurchaseRequest, Purchases};
use atlas::runtime::intake::handle_update;
use atlas::runtime::wiring::App;

use super::chat::Delivery;
use crate::clock::sim_now;
use crate::history::{Event, PurchaseSeen, lock};
use crate::instance::{InstanceCtx, sleep_until};
use crate::seed;
use crate::world::SimWorld;

pub async fn run(ctx: InstanceCtx, app: Rc<App<SimWorld>>, deliveries: Rc<Vec<Delivery>>) {
    let started = sim_now();
    for d in deliveries.iter().filter(|d| d.instance == ctx.index && d.at >= started) {
        sleep_until(d.at).await;
        let (ctx, app, d) = (ctx.clone(), app.clone(), *d);
        tokio::task::spawn_local(async move {
            let user = UserId::new(d.chat).expect("positive");
            handle_update(&app.coordination, user, d.update, Admission::Counted, |_| async {
                let request = PurchaseRequest {
                    user,
                    tariff: seed::tariff(),
                    days: seed::PERIOD_DAYS,
                    promo: None,
                    idempotency_key: IdempotencyKey::parse(&format!("update:{}", d.update)),
                };
                let outcome = match app.store.purchase_from_balance(request, app.clock.now()).await {
                    Ok(o) if o.applied == Applied::Done => PurchaseSeen::Charged,
                    Ok(_) => PurchaseSeen::Replayed,
                    Err(PurchaseError::Unexpected(_)) => PurchaseSeen::Unknown,
                    Err(e) => PurchaseSeen::Refused(format!("{e:?}")),
                };
                lock(&ctx.history).push(Event::Purchase {
                    instance: ctx.index,
                    user: d.chat,
                    update: d.update,
                    outcome,
                });
                FsmWrite::Keep
            })
            .await;
        });
    }
    std::future::pending::<()>().await;
}
