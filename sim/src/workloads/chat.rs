//! Chats receiving updates through several instances: each update reaches one instance and,
//! sometimes, a second one (a redelivery racing the first). Every handler goes through the real
//! intake function and appends its update id to the conversation state.

use std::rc::Rc;
use std::time::Duration;

use atlas::domain::UserId;
use atlas::ports::coordination::{Admission, FsmWrite};
use atlas::ports::{Ids, SeededIds};
use atlas::runtime::intake::handle_update;
use atlas::runtime::wiring::App;

use crate::clock::sim_now;
use crate::history::Event;
use crate::instance::{InstanceCtx, between, sleep_until};
use crate::world::SimWorld;

#[derive(Clone, Copy, Debug)]
pub struct Delivery {
    pub at: Duration,
    pub instance: usize,
    pub chat: i64,
    pub update: i64,
}

/// Who sends what, when: the shape of a chat-like workload.
#[derive(Clone, Copy, Debug)]
pub struct DeliverySpec {
    pub chats: u32,
    pub updates_per_chat: u32,
    pub gap_ms: [u64; 2],
    pub redelivery: f64,
    pub redelivery_delay_ms: [u64; 2],
}

/// The deliveries of a run, fixed by the seed, in time order.
pub fn deliveries(seed: u64, instances: usize, spec: DeliverySpec) -> Vec<Delivery> {
    let ids = SeededIds::new(seed ^ 0xC4A7);
    let mut out = Vec::new();
    let mut update_id = 0;
    for chat in 1..=i64::from(spec.chats) {
        let mut at = between(&ids, spec.gap_ms);
        for _ in 0..spec.updates_per_chat {
            update_id += 1;
            let first = (ids.next_u64() % instances as u64) as usize;
            out.push(Delivery { at, instance: first, chat, update: update_id });
            let roll = (ids.next_u64() % 1_000) as f64 / 1_000.0;
            if instances > 1 && roll < spec.redelivery {
                let second = (first + 1 + (ids.next_u64() % (instances as u64 - 1)) as usize) % instances;
                out.push(Delivery {
                    at: at + between(&ids, spec.redelivery_delay_ms),
                    instance: second,
                    chat,
                    update: update_id,
                });
            }
            at += between(&ids, spec.gap_ms);
        }
    }
    out.sort_by_key(|d| (d.at, d.instance, d.update));
    out
}

pub async fn run(ctx: InstanceCtx, app: Rc<App<SimWorld>>, deliveries: Rc<Vec<Delivery>>, handler_ms: [u64; 2]) {
    let started = sim_now();
    let ids = Rc::new(ctx.workload_ids(started));
    // Deliveries due while this instance was down are gone (another instance would get them).
    for d in deliveries.iter().filter(|d| d.instance == ctx.index && d.at >= started) {
        sleep_until(d.at).await;
        ctx.wait_out_pause().await;
        tokio::task::spawn_local(handle(ctx.clone(), app.clone(), ids.clone(), *d, handler_ms));
    }
    std::future::pending::<()>().await;
}

async fn handle(ctx: InstanceCtx, app: Rc<App<SimWorld>>, ids: Rc<SeededIds>, d: Delivery, handler_ms: [u64; 2]) {
    let id = crate::history::lock(&ctx.history).next_id();
    let (history, index) = (ctx.history.clone(), ctx.index);
    let work = between(ids.as_ref(), handler_ms);
    let user = UserId::new(d.chat).expect("chat ids are positive");
    let outcome = handle_update(&app.coordination, user, d.update, Admission::Counted, |update| {
        let ctx = ctx.clone();
        async move {
            let leased = update.fsm.is_some();
            let fsm = update.fsm.unwrap_or_default();
            let read = fsm.data.map(|b| String::from_utf8_lossy(&b).into_owned());
            let start = Event::HandlerStart {
                id,
                instance: index,
                chat: d.chat,
                update: d.update,
                version: fsm.version,
                read: read.clone(),
                leased,
            };
            crate::history::lock(&history).push(start);
            tokio::time::sleep(work).await;
            ctx.wait_out_pause().await;
            let wrote = match &read {
                Some(text) => format!("{text},{}", d.update),
                None => d.update.to_string(),
            };
            crate::history::lock(&history).push(Event::HandlerReturned { id, wrote: wrote.clone() });
            FsmWrite::Set(wrote.into_bytes())
        }
    })
    .await;
    crate::history::lock(&ctx.history).push(Event::HandlerEnd {
        id,
        instance: ctx.index,
        chat: d.chat,
        update: d.update,
        outcome,
    });
}
