//! Store benchmark: the two money operations that contend hardest, from 8 concurrent
//! connections, against pgbench running the same pattern (advisory xact lock + one conditional
//! UPDATE, 8 clients) in the same invocation. The machine is shared and noisy, so only the ratio
//! means anything; pgbench runs before and after, and the ratio uses their mean.
//!
//!   cargo run --release -p atlas-tests --bin store-bench -- [--seconds 15] [--baseline PATH]
//!
//! Workloads (each in a fresh database):
//! - balance purchase: one hot user buys a period from the balance, over and over;
//! - promo consumption: distinct users each redeem one hot code (reserving it on a provider
//!   purchase: the atomic conditional UPDATE, the redemption row and the purchase row).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use atlas::domain::{PaymentProviderKind, PromoCode, TariffCode};
use atlas::ports::store::PurchaseRequest;
use atlas::ports::store::{Accounts, Purchases};
use atlas::store::PgStore;
use atlas_tests::{crypto, drop_database, fresh_database, pgbench_spend, t0, uid};

const CLIENTS: usize = 8;
/// Users created for the promo workload: more than 8 connections can redeem in the run.
const PROMO_USERS: i64 = 400_000;

struct Args {
    seconds: u64,
    baseline: String,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args { seconds: 15, baseline: "../shared/bench/pg-spend-baseline.sh".into() };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--seconds" => args.seconds = it.next().context("--seconds needs a value")?.parse()?,
            "--baseline" => args.baseline = it.next().context("--baseline needs a path")?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(args)
}

/// Runs `op` from CLIENTS tasks for `seconds`; returns completed operations per second.
async fn drive<F, Fut>(seconds: u64, op: F) -> anyhow::Result<f64>
where
    F: Fn(i64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<bool>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicI64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                if !op(next.fetch_add(1, Ordering::Relaxed)).await? {
                    break;
                }
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

async fn balance_purchases(seconds: u64) -> anyhow::Result<f64> {
    let (store, name) = fresh_database("atlas_bench", CLIENTS as u32).await?;
    let hot = uid(1);
    store.register_user(hot, atlas::domain::Language::En, None, None, t0()).await?;
    for i in 0..60 {
        store.top_up(hot, crypto(&format!("bench-{i}"), "1000000"), t0()).await?;
    }
    let store = Arc::new(store);
    let s = store.clone();
    let rate = drive(seconds, move |_| {
        let s = s.clone();
        async move {
            let request = PurchaseRequest {
                user: hot,
                tariff: TariffCode::parse("basic").unwrap(),
                days: 30,
                promo: None,
                idempotency_key: None,
            };
            s.purchase_from_balance(request, t0()).await?;
            Ok(true)
        }
    })
    .await;
    drop(store);
    drop_database(&name).await?;
    rate
}

async fn promo_consumption(seconds: u64) -> anyhow::Result<f64> {
    let (store, name) = fresh_database("atlas_bench", CLIENTS as u32).await?;
    sqlx::query("INSERT INTO users (telegram_id, created_at) SELECT g, $1 FROM generate_series(1, $2) g")
        .bind(t0())
        .bind(PROMO_USERS)
        .execute(store.pool())
        .await?;
    sqlx::query("INSERT INTO promo_codes (code, discount_percent, created_by, created_at) VALUES ('HOT', 10, 1, $1)")
        .bind(t0())
        .execute(store.pool())
        .await?;
    let store: Arc<PgStore> = Arc::new(store);
    let s = store.clone();
    let rate = drive(seconds, move |n| {
        let s = s.clone();
        async move {
            if n >= PROMO_USERS {
                return Ok(false);
            }
            let request = PurchaseRequest {
                user: uid(n + 1),
                tariff: TariffCode::parse("basic").unwrap(),
                days: 30,
                promo: Some(PromoCode::parse("HOT").unwrap()),
                idempotency_key: None,
            };
            s.create_pending_purchase(request, PaymentProviderKind::Crypto, Duration::from_secs(3600), t0()).await?;
            Ok(true)
        }
    })
    .await;
    let used: i32 =
        sqlx::query_scalar("SELECT used_count FROM promo_codes WHERE code = 'HOT'").fetch_one(store.pool()).await?;
    anyhow::ensure!(used > 0, "no promo use was recorded");
    drop(store);
    drop_database(&name).await?;
    rate
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let base_before = pgbench_spend(&args.baseline, args.seconds, 1)?;
    let purchases = balance_purchases(args.seconds).await?;
    let promos = promo_consumption(args.seconds).await?;
    let base_after = pgbench_spend(&args.baseline, args.seconds, 1)?;
    let base = (base_before + base_after) / 2.0;
    println!("pgbench spend c8 hot_ids=1: {base_before:.0} tps before, {base_after:.0} tps after, mean {base:.0} tps");
    println!("| workload (8 connections, {}s each) | ops/s | ratio to pgbench |", args.seconds);
    println!("|---|---|---|");
    println!("| pgbench: advisory lock + conditional UPDATE, one hot id | {base:.0} | 1.00 |");
    println!("| balance purchase, one hot user | {purchases:.0} | {:.2} |", purchases / base);
    println!("| promo consumption, one hot code | {promos:.0} | {:.2} |", promos / base);
    Ok(())
}
