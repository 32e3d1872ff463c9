//! Users paying for a period from their balance: each payment is an update, taken through the
//! real intake function and paid through the store with an idempotency key derived from the
//! update (as the bot's purchase dialogue does), so a redelivered or re-handled update is
//! never charged twice, even when Redis forgot it had seen the update.

use std::rc::Rc;
use std::sync::Arc;

use atlas::coord::memory::MemoryCoordination;
use atlas::coord::policy::Guarded;
use atlas::domain::{IdempotencyKey, TariffCode, UserId};
use atlas::ports::coordination::FsmWrite;
use atlas::ports::store::{Applied, PurchaseRequest};
use atlas::ports::{Clock, Coordination, SeededIds, Store};
use atlas::runtime::intake::handle_update;

use super::chat::Delivery;
use super::{InstanceCtx, sleep_until};
use crate::clock::sim_now;
use crate::history::{Event, lock};
use crate::store_host::SimStore;

pub async fn run<C: Coordination>(ctx: InstanceCtx, coordination: C, deliveries: Rc<Vec<Delivery>>, store: SimStore) {
    let started = sim_now();
    let local = MemoryCoordination::new(Arc::new(ctx.clock), Arc::new(SeededIds::new(ctx.seed ^ 0x10CA1)));
    let guarded = Rc::new(Guarded::new(coordination, local));
    let store = Rc::new(store);
    for d in deliveries.iter().filter(|d| d.instance == ctx.index && d.at >= started) {
        sleep_until(d.at).await;
        let (ctx, guarded, store, d) = (ctx.clone(), guarded.clone(), store.clone(), *d);
        tokio::task::spawn_local(async move {
            let user = UserId::new(d.chat).expect("positive");
            handle_update(&guarded, user, d.update, |_| async {
                let request = PurchaseRequest {
                    user,
                    tariff: TariffCode::parse("basic").expect("valid"),
                    days: 30,
                    promo: None,
                    idempotency_key: IdempotencyKey::parse(&format!("update:{}", d.update)),
                };
                let outcome = match store.purchase_from_balance(request, ctx.clock.now()).await {
                    Ok(o) if o.applied == Applied::Done => "Done".to_owned(),
                    Ok(_) => "Duplicate".to_owned(),
                    Err(atlas::ports::store::PurchaseError::Unexpected(_)) => "unknown".to_owned(),
                    Err(e) => format!("{e:?}"),
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
