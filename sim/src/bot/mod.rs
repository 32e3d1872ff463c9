//! The whole bot in the simulation: instances running `atlas-bot`'s own run function behind a
//! balancer, the fake Bot API, Outline panel and Crypto Pay on their hosts, the sim Redis and the
//! store model, and users who read the bot's replies and press its buttons. A scenario with the
//! `bot` workload runs here; its invariants are judged from what users saw, what the fake hosts
//! recorded and the database at the end (`checks`).

pub mod actors;
pub mod checks;
pub mod floor;
pub mod hosts;
pub mod swarm;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use atlas::domain::{Language, Money, PaymentProviderKind, Percent, PromoCode, ProviderPaymentId, UserId};
use atlas::ports::store::Subscriptions as _;
use atlas::ports::store::{Accounts as _, NewPromo, Promos as _, ProviderPayment, PurchaseRequest, Purchases as _};

use crate::bot_api::Redelivery;
use crate::clock::{sim_now, wall_clock};
use crate::faults::{self, Progress, RunResult, Traffic, apply, instance_name, network_of, schedule, skew_of};
use crate::history::{self, Event, JourneyEnd, Record, SharedHistory};
use crate::scenario::{BotWorkload, Invariant, Mode, Scenario};
use crate::seed::now;
use crate::store_host::{STORE_HOST, SimStore, StoreLink};
use crate::world::{self, Shared};
use actors::Crowd;
use hosts::{BALANCER_HOST, FIRST_SHOPPER, Fakes, InstanceSpec};

/// What each shopper starts with on the balance (minor units: 5,000 ₽).
const SHOPPER_BALANCE_MINOR: i64 = 500_000;
/// The run's promo code: 20% off, for half the shoppers.
pub const PROMO: &str = "SIMSALE";

/// After the last user is done, time for what is still in flight (a duplicate delivery, a worker
/// tick) before the run is judged.
const SETTLE: Duration = Duration::from_secs(3);
/// How long past `duration_secs` users may still be at it before the run is cut (and what they
/// were doing counted as unfinished).
const OVERTIME: Duration = Duration::from_secs(150);
/// How long the fake Bot API waits for an instance to answer a webhook delivery.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The shoppers, their balances and the promo code, arranged through the store's own operations;
/// with `expiring_at_secs`, each shopper also holds a period ending then (auto-renewal on for
/// every other one).
fn seed_store(link: &StoreLink, bot: &BotWorkload) -> anyhow::Result<()> {
    let store = SimStore::direct_on(link.clone());
    let start = wall_clock(Duration::ZERO);
    for i in 0..i64::from(bot.users) {
        let user = UserId::new(FIRST_SHOPPER + i).expect("positive");
        let payment = ProviderPayment {
            provider: PaymentProviderKind::Crypto,
            payment_id: ProviderPaymentId::parse(&format!("seed-{user}")).expect("valid"),
            amount: Money::positive(SHOPPER_BALANCE_MINOR).expect("positive"),
        };
        if let Some(ends) = bot.expiring_at_secs {
            // Bought one period ago, so that it ends `ends` seconds into the run.
            let bought = start - chrono::Duration::days(i64::from(crate::seed::PERIOD_DAYS))
                + chrono::Duration::milliseconds((ends * 1000.0) as i64);
            now(store.register_user(user, Language::En, None, None, bought))?;
            now(store.top_up(user, payment, bought))?;
            let request = PurchaseRequest {
                user,
                tariff: crate::seed::tariff(),
                days: crate::seed::PERIOD_DAYS,
                promo: None,
                idempotency_key: None,
            };
            now(store.purchase_from_balance(request, bought))?;
            // Every other shopper renews automatically; the rest are reminded, then see it end.
            now(store.set_auto_renew(user, i % 2 == 0, bought))?;
        } else {
            now(store.register_user(user, Language::En, None, None, start))?;
            now(store.top_up(user, payment, start))?;
        }
    }
    let promo = NewPromo {
        code: PromoCode::parse(PROMO).expect("a valid code"),
        discount: Percent::new(20).expect("20%"),
        max_uses: std::num::NonZeroU32::new(bot.users.div_ceil(2)),
        expires_at: None,
        created_by: UserId::new(hosts::ADMINS[0]).expect("positive"),
        correlation_id: None,
    };
    now(store.create_promo(promo, start)).map_err(|e| anyhow::anyhow!("the run's promo code: {e:?}"))?;
    Ok(())
}

/// The hosts of a whole-bot run beside its instances; an instance has a link to each.
pub const SHARED_HOSTS: [&str; 4] = [world::REDIS_HOST, STORE_HOST, BALANCER_HOST, hosts::INTERNET_HOST];

pub fn run(scenario: &Scenario, bot: &BotWorkload, seed: u64, mode: Mode) -> anyhow::Result<RunResult> {
    let duration = Duration::from_secs_f64(scenario.duration_secs);
    let history: SharedHistory = Default::default();
    let shared = Shared::default();
    shared.break_guard(scenario.broken_guard);
    // A paused instance: nothing it sends or is sent moves, on any of its links.
    shared.links.borrow_mut().frozen_peers = SHARED_HOSTS.to_vec();
    seed_store(&shared.store, bot)?;
    let redelivery = Redelivery {
        first: Duration::from_millis(200),
        max: Duration::from_secs(2),
        answer_timeout: ANSWER_TIMEOUT,
        duplicate_percent: bot.duplicate_percent,
        seed,
    };
    let fakes = Fakes::new(redelivery);
    let tick = Duration::from_millis(scenario.tick_ms);
    let mut sim =
        world::builder(seed, duration + OVERTIME + Duration::from_secs(1), tick, network_of(scenario)).build();
    world::add_redis(&mut sim, shared.redis.clone());
    let link = shared.store.clone();
    sim.host(STORE_HOST, move || crate::store_host::serve(link.clone()));
    let crowd = Rc::new(Crowd::new(fakes.clone(), history.clone(), bot.clone(), PROMO.into()));
    let finished: Rc<Cell<Option<Duration>>> = Rc::default();
    let done = finished.clone();
    hosts::add_internet(&mut sim, &fakes, move || {
        let (crowd, done) = (crowd.clone(), done.clone());
        async move {
            actors::users(crowd, seed).await;
            done.set(Some(sim_now()));
        }
    });
    let names: Vec<String> = (0..scenario.instances).map(instance_name).collect();
    let routing = bot.routing;
    let telegram = fakes.telegram.clone();
    sim.host(BALANCER_HOST, move || hosts::balancer(names.clone(), routing, telegram.clone()));
    for index in 0..scenario.instances {
        let spec = InstanceSpec {
            index,
            seed,
            mode,
            skew_ms: skew_of(scenario, index),
            intake: bot.intake,
            updates_in_flight_max: bot.updates_in_flight_max,
            lease: Duration::from_millis(scenario.lease_ms),
            reissue_lock: bot.reissue_lock_ms.map(Duration::from_millis),
            stopping: shared.stopping.clone(),
        };
        let link = shared.store.clone();
        sim.host(instance_name(index), move || hosts::instance(link.clone(), spec.clone()));
    }

    let mut pending = schedule(scenario);
    pending.reverse();
    // When the last fault action ran (a thaw, a restart, a repair): the run settles after it.
    let mut healed = Duration::ZERO;
    loop {
        while pending.last().is_some_and(|(at, _)| *at <= sim.elapsed()) {
            let (_, action) = pending.pop().expect("checked");
            healed = sim.elapsed();
            // A leader's crash picked by role brings its restart with it.
            if let Some((after, follow_up)) = apply(&mut sim, action, &history, &shared, &Default::default()) {
                pending.push((sim.elapsed() + after, follow_up));
                pending.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
            }
        }
        // The run lasts `duration_secs` at least (the workers' time), until the users are done
        // and settled, until every fault has healed and settled (a frozen instance's late
        // messages arrive and are judged), and until the background work they left (a key to
        // make, a broadcast to send) is done: all within the overtime, the liveness bound.
        let settled = |at: Duration| sim.elapsed() >= (at + SETTLE).max(duration);
        let done = finished.get().is_some_and(settled)
            && pending.is_empty()
            && settled(healed)
            && shared.store.with_model(|m| m.open_work(wall_clock(sim.elapsed())).is_empty());
        if done || sim.elapsed() >= duration + OVERTIME {
            break;
        }
        sim.step().map_err(|e| anyhow::anyhow!("the simulation failed: {e}"))?;
        // A store call that trips a pause: frozen now, as it sent it, before the call can arrive.
        if let Some(pause) = faults::tripped(&shared, &history, sim.elapsed()) {
            pending.push((sim.elapsed(), pause));
            pending.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        }
    }
    let simulated = sim.elapsed();
    drop(sim);
    if let Some((at, action)) = pending.last() {
        anyhow::bail!("the run ended at its overtime with {action:?} still due at {at:?}: a fault past the run's end");
    }
    if let Some(call) = shared.store.still_armed() {
        anyhow::bail!("pause_at_store_call waited for a {call} store call, and no instance sent one");
    }
    let mut history = std::mem::take(&mut *history::lock(&history));
    unfinished(&mut history, bot, seed, simulated);
    let records = checks::BotRecords {
        calls: fakes.telegram.take_calls(),
        created_keys: fakes.outline.made(),
        owners: shared.store.with_model(|m| m.subscription_owners()).into_iter().map(|(s, u)| (s, u.get())).collect(),
        money: shared.store.with_model(|m| m.money_findings()),
        payments: shared.store.with_model(|m| m.provider_payments()),
        paid_invoices: fakes
            .crypto
            .invoices()
            .into_iter()
            .filter(|i| i.status == "paid")
            .map(|i| (i.id, i.amount))
            .collect(),
        refunded: fakes.telegram.refunded(),
        handed_back: fakes.telegram.handed_back(),
        duplicates: fakes.telegram.duplicates(),
        promo_checks: shared
            .store
            .with_model(|m| m.promo_checks())
            .into_iter()
            .map(|(user, code, at)| (user.get(), code, at))
            .collect(),
        promo: shared.store.with_model(|m| m.promo_findings()),
        open_work: shared.store.with_model(|m| m.open_work(wall_clock(simulated))),
        cut_short: shared.store.with_model(|m| m.orders_cut_short()),
        broadcasts: shared.store.with_model(|m| m.broadcast_texts()),
        active_keys: shared
            .store
            .with_model(|m| m.active_keys())
            .into_iter()
            .map(|(subscription, keys)| (subscription.to_string(), keys))
            .collect(),
        key_rows: shared.store.with_model(|m| m.key_rows()),
        withdrawals: shared
            .store
            .with_model(|m| m.withdrawal_owners())
            .into_iter()
            .map(|(id, user)| (id, user.get()))
            .collect(),
    };
    // The checkers excuse a repeat by the instance it came from (a crash of one instance excuses
    // nothing another did twice): every effect must say whose it is.
    if let Some(call) = records.calls.iter().find(|c| c.from.is_none()) {
        anyhow::bail!("the fake Bot API could not tell which instance made {} at {:?}", call.method, call.at);
    }
    if let Some(key) = records.created_keys.iter().find(|k| k.by.is_none()) {
        anyhow::bail!("the fake panel could not tell which instance made key {}", key.id);
    }
    let violations: Vec<(Invariant, String)> = scenario
        .invariants
        .iter()
        .filter_map(|&inv| checks::check(inv, &history, &records).map(|why| (inv, why)))
        .collect();
    let progress = Progress {
        planned: (bot.users * bot.journeys_per_user) as usize,
        done: history
            .records
            .iter()
            .filter(|r| matches!(&r.event, Event::Journey { end: JourneyEnd::Done | JourneyEnd::Refused(_), .. }))
            .count(),
    };
    let traffic = Traffic {
        deliveries: fakes.telegram.deliveries(),
        redis: shared.redis.borrow().calls.values().sum(),
        store: shared.store.calls_made(),
        telegram: records.calls.len() as u64,
        panel: fakes.outline.calls().len() as u64,
        crypto: fakes.crypto.calls().len() as u64,
    };
    record_calls(&mut history, &records, &fakes);
    Ok(RunResult { seed, mode, hash: history.hash(), history, violations, simulated, progress, traffic })
}

/// Journeys the run ended in the middle of (or before), recorded as unfinished.
fn unfinished(history: &mut history::History, bot: &BotWorkload, seed: u64, end: Duration) {
    for i in 0..i64::from(bot.users) {
        let user = FIRST_SHOPPER + i;
        // A journey ended with the try after which the user did not start over.
        let (mut ended, mut tries) = (0, actors::Tries::default());
        for record in &history.records {
            if let Event::Journey { user: u, attempt, end, .. } = &record.event
                && *u == user
                && !tries.again(*attempt, end)
            {
                ended += 1;
            }
        }
        let plan = actors::plan(bot, seed, user);
        if let Some(journey) = plan.get(ended) {
            let event = Event::Journey { user, journey: *journey, attempt: 1, end: JourneyEnd::Unfinished };
            history.records.push(Record { at: end, event });
        }
    }
}

/// Every call the fake hosts saw goes into the history (so its hash tells runs apart, and a
/// replay shows them).
fn record_calls(history: &mut history::History, records: &checks::BotRecords, fakes: &Fakes) {
    for call in &records.calls {
        let event = Event::Call { host: hosts::TELEGRAM, call: format!("{} {}", call.method, call.body) };
        history.records.push(Record { at: call.at, event });
    }
    history.records.sort_by_key(|r| r.at);
    let end = history.records.last().map_or(Duration::ZERO, |r| r.at);
    let refused = format!("webhook deliveries refused or unanswered: {}", fakes.telegram.failed_deliveries());
    history.records.push(Record { at: end, event: Event::Call { host: hosts::TELEGRAM, call: refused } });
    for (method, id) in fakes.outline.calls() {
        history
            .records
            .push(Record { at: end, event: Event::Call { host: hosts::OUTLINE, call: format!("{method} {id}") } });
    }
    for (method, body) in fakes.crypto.calls() {
        history
            .records
            .push(Record { at: end, event: Event::Call { host: hosts::CRYPTO, call: format!("{method} {body}") } });
    }
}
