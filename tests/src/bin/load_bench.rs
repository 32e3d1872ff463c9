//! The load benchmark of `atlas-bot run` (issue: `atlas-bot run`). One release `atlas-bot`
//! process, in webhook mode, on real Redis and PostgreSQL; this process plays Telegram: it
//! serves the fake Bot API (what the bot sends goes there) and POSTs webhook updates — a 4-step
//! menu conversation of many users over a fixed number of kept-alive connections, each user's
//! updates in order (one connection carries a fixed set of users, one update at a time).
//!
//! It reports updates per second, the p50/p99 latency of an update as Telegram sees it (POST to
//! answer), the bot process's CPU time per update (from `/proc/<pid>/stat`), and the Redis-bound
//! limit measured in the same invocation: redis-benchmark's EVALSHA rate at `-c 50`
//! (`../shared/bench/redis-evalsha-baseline.sh`) divided by the 2 Redis round trips of an update.
//!
//! `cargo build --release --workspace --bins && target/release/load-bench [--users 500]
//! [--connections 50] [--rounds 4]`

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atlas::net::client::HttpClient;
use atlas::net::server::serve;
use atlas::net::{Listener as _, TcpListener, TcpNetwork};
use atlas_sim::bot_api::{FakeBotApi, Redelivery, updates};
use atlas_tests::TestDb;
use atlas_tests::e2e::{TOKEN, WEBHOOK_SECRET};
use bytes::Bytes;
use hyper::Method;

/// The steps of the conversation each user goes through per round: the menu, the balance,
/// back to the menu, support. `/start` once before (registration, not measured).
const STEPS: [&str; 4] = ["m", "bal", "m", "sup"];

struct Args {
    users: usize,
    connections: usize,
    rounds: usize,
    /// Record where the bot's CPU time goes (`perf record`) during the measured phase.
    perf: bool,
}

fn args() -> Args {
    let mut args = Args { users: 500, connections: 50, rounds: 4, perf: false };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        if flag == "--perf" {
            args.perf = true;
            continue;
        }
        let value: usize = given.next().and_then(|v| v.parse().ok()).expect("a number after each flag");
        match flag.as_str() {
            "--users" => args.users = value,
            "--connections" => args.connections = value,
            "--rounds" => args.rounds = value,
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(args.users.is_multiple_of(args.connections), "users must split evenly over the connections");
    // The flood limit lets a user send 20 updates in a burst: keep within it.
    assert!(args.rounds * STEPS.len() < 20, "at most 4 rounds: with /start, a user's burst is 20 updates");
    args
}

fn baseline() -> f64 {
    let script = std::env::var("BENCH_DIR").unwrap_or_else(|_| "../shared/bench".into()) + "/redis-evalsha-baseline.sh";
    let out = Command::new("bash").arg(&script).output().expect("the baseline script runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{}", text.trim());
    text.split(": ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|r| r.parse().ok()).expect("a rate")
}

/// The process's user + system CPU time so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the bot's /proc/<pid>/stat");
    let after_name = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // CLK_TCK is 100 on Linux
}

/// CPU time of every process named `name` (redis-server, postgres).
fn cpu_of(name: &str) -> Duration {
    let out =
        Command::new("pgrep").args(["-x", name]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    out.unwrap_or_default().lines().filter_map(|pid| pid.trim().parse().ok()).map(cpu_time).sum()
}

/// Busy and total CPU time of the whole machine, from /proc/stat (all cores).
fn machine() -> (Duration, Duration) {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let ticks: Vec<u64> =
        stat.lines().next().unwrap().split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    let total: u64 = ticks.iter().sum();
    let idle = ticks[3] + ticks.get(4).copied().unwrap_or(0);
    (Duration::from_millis((total - idle) * 10), Duration::from_millis(total * 10))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let before = baseline();
    let db = TestDb::new().await;
    let telegram = FakeBotApi::new(TOKEN, Redelivery::default());
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let api_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, telegram.router(), std::future::pending(), Duration::from_secs(1)));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let binary = std::env::current_exe().unwrap().parent().unwrap().join("atlas-bot");
    let database = format!("{}/{}", atlas_tests::server_url(), db.name());
    let mut bot = Command::new(&binary)
        .arg("run")
        .env_clear()
        .env("RUST_LOG", "warn")
        .env("APP_ENV", "local")
        .env("LOCAL_DATABASE_URL", database)
        .env("LOCAL_REDIS_URL", atlas_tests::redis_support::redis_url())
        .env("LOCAL_REDIS_PREFIX", format!("load{:08x}", getrandom::u32().unwrap_or(0)))
        .env("LOCAL_BOT_TOKEN", TOKEN)
        .env("LOCAL_TELEGRAM_API_URL", &api_url)
        .env("LOCAL_SEND_LIMITS", "off")
        .env("LOCAL_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .env("LOCAL_WEBHOOK_URL", format!("http://127.0.0.1:{port}/hook"))
        .env("LOCAL_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{} does not start ({e}): build it with --release first", binary.display()));
    let hook = url::Url::parse(&format!("http://127.0.0.1:{port}/hook")).unwrap();
    wait_ready(&HttpClient::new(TcpNetwork, None).unwrap(), port).await;

    let users: Vec<i64> = (0..args.users as i64).map(|n| 1_000_000 + n).collect();
    let next_id = Arc::new(std::sync::atomic::AtomicI64::new(1));
    // Registration (each user's /start), not measured.
    drive(&hook, &telegram, &users, args.connections, &next_id, &["/start"]).await;
    let perf = args.perf.then(|| {
        Command::new("perf")
            .args(["record", "-F", "999", "-g", "-o", "/tmp/atlas-load.perf.data", "-p", &bot.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("perf runs")
    });
    if perf.is_some() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cpu_before = cpu_time(bot.id());
    let others_before = (cpu_time(std::process::id()), cpu_of("redis-server"), cpu_of("postgres"), machine());
    let started = Instant::now();
    let steps: Vec<&str> = (0..args.rounds).flat_map(|_| STEPS).collect();
    let mut latencies = drive(&hook, &telegram, &users, args.connections, &next_id, &steps).await;
    let elapsed = started.elapsed();
    let cpu = cpu_time(bot.id()) - cpu_before;
    let (me, redis, postgres, (busy, total)) = others_before;
    let (busy_after, total_after) = machine();
    let shares = [
        ("atlas-bot", cpu),
        ("load generator + fake Bot API (this process)", cpu_time(std::process::id()) - me),
        ("redis-server", cpu_of("redis-server") - redis),
        ("postgres", cpu_of("postgres") - postgres),
    ];
    if let Some(perf) = perf {
        let _ = Command::new("kill").args(["-INT", &perf.id().to_string()]).status();
        let _ = perf.wait_with_output();
        perf_report("dso", "where the bot's CPU time goes (perf, by library):", 12);
        perf_report("sym", "hottest functions:", 25);
    }
    let _ = bot.kill();
    let _ = bot.wait();
    let after = baseline();
    let updates = latencies.len();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((updates as f64 * q) as usize).min(updates - 1)];
    let rate = updates as f64 / elapsed.as_secs_f64();
    let redis_bound = (before + after) / 2.0 / 2.0;
    println!(
        "{updates} updates ({} users x {} steps) over {} connections in {:.2}s",
        args.users,
        steps.len(),
        args.connections,
        elapsed.as_secs_f64()
    );
    println!("| measure | figure | target |");
    println!("|---|---|---|");
    println!("| updates per second, one instance | {rate:.0} | >= 4300 |");
    println!("| latency p50 / p99 (POST to answer) | {:.1} ms / {:.1} ms | |", ms(at(0.5)), ms(at(0.99)));
    println!("| bot CPU per update | {:.3} ms | <= 0.27 ms |", cpu.as_secs_f64() * 1000.0 / updates as f64);
    println!("| Redis-bound limit (EVALSHA c50 / 2 round trips) | {redis_bound:.0} | |");
    println!("| ratio to the Redis-bound limit | {:.2} | >= 0.50 |", rate / redis_bound);
    let cores = (total_after - total).as_secs_f64() / elapsed.as_secs_f64();
    println!(
        "machine: {:.1} cores, {:.0}% busy during the measured phase; CPU per update by process:",
        cores,
        100.0 * (busy_after - busy).as_secs_f64() / (total_after - total).as_secs_f64()
    );
    for (name, time) in shares {
        println!("  {name}: {:.3} ms", time.as_secs_f64() * 1000.0 / updates as f64);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn wait_ready(client: &HttpClient<TcpNetwork>, port: u16) {
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}/readyz")).unwrap();
    for _ in 0..200 {
        if let Ok(r) = client.request(Method::GET, &url, &[], Bytes::new(), Duration::from_secs(1)).await
            && r.status.is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the bot never became ready");
}

/// Sends `steps` for every user, each connection carrying its share of the users one update at
/// a time (so each user's updates stay in order), and returns every update's latency.
async fn drive(
    hook: &url::Url,
    telegram: &FakeBotApi,
    users: &[i64],
    connections: usize,
    next_id: &Arc<std::sync::atomic::AtomicI64>,
    steps: &[&str],
) -> Vec<Duration> {
    let per = users.len() / connections;
    let mut tasks = tokio::task::JoinSet::new();
    for share in users.chunks(per) {
        let (hook, next_id, telegram) = (hook.clone(), next_id.clone(), telegram.clone());
        let share = share.to_vec();
        let steps: Vec<String> = steps.iter().map(|s| (*s).to_owned()).collect();
        tasks.spawn(async move {
            // Each task opens its own connection and keeps it: a client of its own.
            let own = HttpClient::new(TcpNetwork, None).unwrap();
            let mut latencies = Vec::with_capacity(share.len() * steps.len());
            for step in &steps {
                for &user in &share {
                    let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let mut update = if step.starts_with('/') {
                        updates::text(user, "en", step)
                    } else {
                        updates::callback(user, "en", &format!("cb{id}"), step)
                    };
                    update["update_id"] = serde_json::json!(id);
                    // Posted to the bot directly: the fake is told, so the bot may answer it.
                    telegram.note_delivered(&update);
                    let headers = [
                        ("content-type", "application/json".to_owned()),
                        ("x-telegram-bot-api-secret-token", WEBHOOK_SECRET.to_owned()),
                    ];
                    let sent = Instant::now();
                    let answer = own
                        .request(
                            Method::POST,
                            &hook,
                            &headers,
                            Bytes::from(update.to_string()),
                            Duration::from_secs(30),
                        )
                        .await
                        .expect("the bot answers");
                    assert!(answer.status.is_success(), "update {id}: {}", answer.status);
                    latencies.push(sent.elapsed());
                }
            }
            latencies
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.expect("a driver does not panic"));
    }
    all
}

/// Prints the first `lines` entries of the recorded profile sorted by `sort`, under `title`.
fn perf_report(sort: &str, title: &str, lines: usize) {
    let report = Command::new("perf")
        .args(["report", "-i", "/tmp/atlas-load.perf.data", "--stdio", "--no-children", "--sort", sort, "-g", "none"])
        .output()
        .expect("perf report runs");
    println!("{title}");
    for line in String::from_utf8_lossy(&report.stdout).lines().filter(|l| l.contains('%')).take(lines) {
        println!("  {}", line.trim());
    }
}
