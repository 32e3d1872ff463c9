//! Workers benchmark on real PostgreSQL, each part in a fresh database:
//!
//! 1. Auto-renewal of 100,000 due subscriptions by two instances at once (two connection pools,
//!    4 workers each: 8 clients, as pgbench), every user able to pay. Reported: renewals per
//!    second, and the ratio to pgbench's advisory-lock spend on 10,000 ids
//!    (`../shared/bench/pg-spend-baseline.sh`) run before and after in the same invocation (the
//!    mean is used). Checked after the run: exactly one renewal per subscription.
//! 2. The reminder scan over 1,000,000 subscriptions: its plan (EXPLAIN ANALYZE), which must be
//!    an index scan of the expiry index, and its time.
//!
//!   cargo build --release -p atlas-tests --bin workers-bench
//!   target/release/workers-bench [--subscriptions 100000] [--scan-rows 1000000] [--seconds 15]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use atlas::domain::NoticeKind;
use atlas::ports::store::{RenewalOutcome, Subscriptions};
use atlas::store::PgStore;
use atlas::store::postgres::notices::DUE_NOTICES_SQL;
use atlas::workers::renewal::RENEWAL_BATCH;
use atlas_tests::{drop_database, fresh_database, pgbench_spend, t0};

const WORKERS_PER_INSTANCE: usize = 4;

struct Args {
    subscriptions: i64,
    scan_rows: i64,
    seconds: u64,
    baseline: String,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        subscriptions: 100_000,
        scan_rows: 1_000_000,
        seconds: 15,
        baseline: "../shared/bench/pg-spend-baseline.sh".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--subscriptions" => args.subscriptions = value()?.parse()?,
            "--scan-rows" => args.scan_rows = value()?.parse()?,
            "--seconds" => args.seconds = value()?.parse()?,
            "--baseline" => args.baseline = value()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(args)
}

/// `n` users, each with a subscription on the basic 30-day period; `due` of them expire an
/// hour after `t0` with auto-renewal on and the money for one period on the balance, the rest
/// spread over the year after.
async fn seed(database: &str, n: i64, due: i64) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    // A connection of its own, without the store's statement timeout: seeding a million rows
    // takes longer than any one store statement may.
    let url = format!("{}/{database}", atlas_tests::server_url());
    let mut connection = sqlx::PgConnection::connect(&url).await?;
    let pool = &mut connection;
    sqlx::query("SET statement_timeout = 0").execute(&mut *pool).await?;
    sqlx::query("INSERT INTO users (telegram_id, created_at) SELECT g, $1 FROM generate_series(1, $2) g")
        .bind(t0())
        .bind(n)
        .execute(&mut *pool)
        .await?;
    sqlx::query(
        "INSERT INTO balance_ledger (user_id, amount, kind, reference, created_at)
            SELECT g, 19900, 'admin_credit', 'seed:' || g, $1 FROM generate_series(1, $2) g",
    )
    .bind(t0())
    .bind(due)
    .execute(&mut *pool)
    .await?;
    sqlx::query(
        "INSERT INTO subscriptions (user_id, tariff_id, period_days, expires_at, auto_renew, activation_status,
                created_at, updated_at)
            SELECT g, 1, 30,
                CASE WHEN g <= $2 THEN $1 + interval '1 hour'
                     ELSE $1 + make_interval(secs => (g * 7919) % 31536000) END,
                g <= $2, 'active', $1, $1
            FROM generate_series(1, $3) g",
    )
    .bind(t0())
    .bind(due)
    .bind(n)
    .execute(&mut *pool)
    .await?;
    sqlx::query("ANALYZE").execute(&mut *pool).await?;
    Ok(())
}

async fn renewals(args: &Args) -> anyhow::Result<()> {
    let (a, name) = fresh_database("atlas_workers_bench", WORKERS_PER_INSTANCE as u32).await?;
    seed(&name, args.subscriptions, args.subscriptions).await?;
    let url = format!("{}/{name}", atlas_tests::server_url());
    let b = PgStore::connect(&url, WORKERS_PER_INSTANCE as u32).await?;
    let before = pgbench_spend(&args.baseline, args.seconds, 10000)?;
    let renewed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for store in [a.clone(), b.clone()] {
        for _ in 0..WORKERS_PER_INSTANCE {
            let (store, renewed) = (store.clone(), renewed.clone());
            tasks.push(tokio::spawn(async move {
                let horizon = Duration::from_secs(24 * 3600);
                loop {
                    let outcomes = store.auto_renew_batch(t0(), horizon, RENEWAL_BATCH).await?;
                    if outcomes.is_empty() {
                        break;
                    }
                    let n = outcomes.iter().filter(|o| matches!(o, RenewalOutcome::Renewed { .. })).count();
                    renewed.fetch_add(n as u64, Ordering::Relaxed);
                }
                anyhow::Ok(())
            }));
        }
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let after = pgbench_spend(&args.baseline, args.seconds, 10000)?;
    let renewed = renewed.load(Ordering::Relaxed);
    let charged: i64 = sqlx::query_scalar("SELECT count(*) FROM balance_ledger WHERE kind = 'auto_renewal'")
        .fetch_one(a.pool())
        .await?;
    let claims: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT subscription_id) FROM auto_renewals").fetch_one(a.pool()).await?;
    anyhow::ensure!(
        renewed as i64 == args.subscriptions && charged == args.subscriptions && claims == args.subscriptions,
        "renewed {renewed}, charged {charged}, claimed {claims} of {}",
        args.subscriptions
    );
    let rate = renewed as f64 / elapsed.as_secs_f64();
    let baseline = (before + after) / 2.0;
    println!(
        "auto-renewal: {renewed} subscriptions by 2 instances x {WORKERS_PER_INSTANCE} workers in {:.1} s",
        elapsed.as_secs_f64()
    );
    println!("  renewals per second:            {rate:.0}");
    println!("  pgbench spend c8 hot_ids=10000: {before:.0} before, {after:.0} after (mean {baseline:.0} tps)");
    println!("  ratio:                          {:.2}  (target >= 0.50)", rate / baseline);
    println!("  each subscription charged once: {charged} ledger entries, {claims} claims");
    drop(b);
    drop(a);
    drop_database(&name).await
}

async fn scan(args: &Args) -> anyhow::Result<()> {
    let (store, name) = fresh_database("atlas_workers_bench", 2).await?;
    let started = Instant::now();
    seed(&name, args.scan_rows, 0).await?;
    println!("reminder scan: {} subscriptions seeded in {:.0} s", args.scan_rows, started.elapsed().as_secs_f64());
    let now = t0() + chrono::Duration::days(100);
    // Half the reminders due in the window were sent already (claimed): the scan must skip them
    // through the claims' unique index, not by reading the claims.
    let claimed = sqlx::query(
        "INSERT INTO notice_deliveries (subscription_id, kind, threshold, claimed_at)
            SELECT id, 'expiry_reminder', '72h@' || floor(extract(epoch FROM expires_at))::BIGINT, $1
            FROM subscriptions WHERE expires_at > $1 AND expires_at <= $1 + interval '72 hours' AND id % 2 = 0",
    )
    .bind(now)
    .execute(store.pool())
    .await?
    .rows_affected();
    sqlx::query("ANALYZE notice_deliveries").execute(store.pool()).await?;
    println!("  {claimed} of the reminders in the window claimed before the scan");
    let explain = format!("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {DUE_NOTICES_SQL}");
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(explain))
        .bind(now)
        .bind(false)
        .bind(NoticeKind::ExpiryReminder.code())
        .bind(vec![72i32, 24, 3])
        .bind(72i32)
        .bind(24i32)
        .bind(100i64)
        .fetch_all(store.pool())
        .await?;
    for line in &plan {
        println!("  {line}");
    }
    anyhow::ensure!(
        plan.iter().any(|l| l.contains("Index Scan using subscriptions_expiry_idx")),
        "the scan does not use the expiry index"
    );
    anyhow::ensure!(!plan.iter().any(|l| l.contains("Seq Scan on subscriptions")), "a sequential scan");
    drop(store);
    drop_database(&name).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    if args.subscriptions > 0 {
        renewals(&args).await?;
    }
    scan(&args).await
}
