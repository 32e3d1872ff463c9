//! Coordination benchmark: what an ordinary update costs on Redis.
//!
//!   coord-bench updates N
//!       N ordinary updates (begin + commit with a state change), one after another; run it under
//!       `../shared/bench/redis-commands-per-op.sh N -- coord-bench updates N` to count the
//!       commands (and EVALSHA round trips) per update from INFO commandstats.
//!   coord-bench throughput [--seconds 10] [--baseline PATH]
//!       begin+commit pairs from 50 concurrent tasks on one instance's connection, against
//!       redis-benchmark's EVALSHA figure at -c 50 (halved: a pair is two scripts), measured in
//!       the same invocation.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use atlas::ports::Coordination;
use atlas::ports::coordination::{Admission, BeginOutcome, FsmWrite};
use atlas_tests::redis_support::{clock, fresh_keys, instance};
use atlas_tests::uid;

const TASKS: usize = 50;
/// Users the updates are spread over: enough that chats rarely collide on a lease, as on a
/// busy bot.
const USERS: i64 = 100_000;

/// One ordinary update: begin, a state change, commit. Returns whether it ran (not busy).
async fn update(c: &impl Coordination, n: i64) -> anyhow::Result<bool> {
    let user = uid(n % USERS + 1);
    match c.begin_update(user, n, Admission::Counted).await? {
        BeginOutcome::Proceed(ticket) => {
            c.commit_update(user, &ticket, FsmWrite::Set(format!("state-{n}").into_bytes())).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

async fn updates(n: i64) -> anyhow::Result<()> {
    let c = instance(&fresh_keys(), clock(), 1);
    let mut done = 0;
    for i in 0..n {
        done += i64::from(update(&c, i).await?);
    }
    anyhow::ensure!(done == n, "only {done} of {n} updates ran");
    println!("{n} updates, each begin + commit");
    Ok(())
}

fn baseline(script: &str) -> anyhow::Result<f64> {
    let out = Command::new("bash").arg(script).output().context("run the redis-benchmark baseline")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.rsplit(':')
        .next()
        .and_then(|t| t.trim().trim_end_matches("requests/s").trim().parse().ok())
        .with_context(|| format!("no figure in baseline output: {text}{}", String::from_utf8_lossy(&out.stderr)))
}

async fn throughput(seconds: u64) -> anyhow::Result<f64> {
    let c = Arc::new(instance(&fresh_keys(), clock(), 2));
    let next = Arc::new(AtomicI64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (c, next) = (c.clone(), next.clone());
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    done += u64::from(update(c.as_ref(), next.fetch_add(1, Ordering::Relaxed)).await?);
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("updates") => updates(args.get(1).context("updates N")?.parse()?).await,
        Some("throughput") => {
            let mut seconds = 10;
            let mut script = "../shared/bench/redis-evalsha-baseline.sh".to_owned();
            let mut it = args.iter().skip(1);
            while let Some(flag) = it.next() {
                match flag.as_str() {
                    "--seconds" => seconds = it.next().context("--seconds N")?.parse()?,
                    "--baseline" => script = it.next().context("--baseline PATH")?.clone(),
                    other => anyhow::bail!("unknown argument {other}"),
                }
            }
            let before = baseline(&script)?;
            let ours = throughput(seconds).await?;
            let after = baseline(&script)?;
            let pairs_baseline = (before + after) / 2.0 / 2.0;
            println!("redis-benchmark EVALSHA c50: {before:.0} requests/s before, {after:.0} after");
            println!("| measure | per second | ratio |");
            println!("|---|---|---|");
            println!("| redis-benchmark EVALSHA c50, halved (one pair = two scripts) | {pairs_baseline:.0} | 1.00 |");
            println!(
                "| begin+commit pairs, 50 tasks, one multiplexed connection | {ours:.0} | {:.2} |",
                ours / pairs_baseline
            );
            Ok(())
        }
        _ => anyhow::bail!("usage: coord-bench updates N | coord-bench throughput [--seconds S] [--baseline PATH]"),
    }
}
