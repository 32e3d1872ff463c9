//! Helpers for tests and benchmarks against real PostgreSQL: a fresh, migrated database per test
//! (dropped when the test ends, even when it fails), typed shortcuts to arrange state, and the
//! ledger invariants every test can assert.
//!
//! The server is `ATLAS_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432`), the
//! one `ci/test` makes sure is running.

pub mod bot;
pub mod e2e;
pub mod providers;

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use atlas::domain::{Language, Money, PaymentProviderKind, Percent, ProviderPaymentId, UserId};
use atlas::ports::store::{Accounts, Promos, ProviderPayment};
use atlas::store::PgStore;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::Connection as _;

/// Connections each test's pool may open: enough for the stress tests' concurrency, small enough
/// that many tests in parallel stay under the server's default limit of 100.
pub const TEST_POOL_CONNECTIONS: u32 = 12;

/// How many sequences (or histories) a fidelity test compares: `ATLAS_FIDELITY_SEQUENCES` for
/// the long runs recorded in BENCHMARKS.md, `default` (a bounded sample) otherwise.
pub fn fidelity_sequences(default: u64) -> u64 {
    std::env::var("ATLAS_FIDELITY_SEQUENCES").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

/// The seed a fidelity test starts at: `ATLAS_FIDELITY_FIRST` (to run a failing seed again), 0
/// otherwise.
pub fn fidelity_first() -> u64 {
    std::env::var("ATLAS_FIDELITY_FIRST").ok().and_then(|n| n.parse().ok()).unwrap_or(0)
}

pub fn server_url() -> String {
    std::env::var("ATLAS_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A database of its own for one test, migrated, dropped on drop.
pub struct TestDb {
    pub store: PgStore,
    name: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        TestDb::with_connections(TEST_POOL_CONNECTIONS).await
    }

    pub async fn with_connections(max_connections: u32) -> TestDb {
        let (store, name) = fresh_database("atlas_test", max_connections)
            .await
            .expect("a fresh database (is PostgreSQL running? ci/test starts it)");
        TestDb { store, name }
    }

    /// A fresh database copied from `template` (a migrated one nobody is connected to): what a
    /// test that needs thousands of fresh databases uses, as migrating each is slow. Its pool
    /// opens at most `max_connections`.
    pub async fn copy_of(template: &Template, max_connections: u32) -> TestDb {
        let name = unique_name("atlas_copy");
        let copied = async {
            let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", server_url())).await?;
            let create = format!("CREATE DATABASE {name} TEMPLATE {}", template.name);
            sqlx::query(sqlx::AssertSqlSafe(create)).execute(&mut admin).await?;
            // Each commit waits for no disk flush: a copy lives for one test and is dropped. The
            // pool keeps its connections for the copy's life and waits long for one: a long
            // fidelity run on a loaded machine must fail only on a divergence, never because a
            // connection reached its lifetime and a new one was slow to open. (Store calls are
            // still bounded by the store's own 16 s call timeout.)
            let url = format!("{}/{name}", server_url());
            let options = PgStore::connect_options(&url, atlas::store::postgres::STATEMENT_TIMEOUT)?
                .options([("synchronous_commit", "off")]);
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(std::time::Duration::from_secs(60))
                .max_lifetime(None)
                .idle_timeout(None)
                .connect_with(options)
                .await?;
            anyhow::Ok(PgStore::from_pool(pool))
        };
        let store = copied.await.expect("a copy of the template database");
        TestDb { store, name }
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        self.store.pool()
    }

    /// Puts this copy back to what `template` holds, as a fresh copy would be: a test running
    /// thousands of sequences reuses a few databases (a copy costs about 0.5 s here, a reset a
    /// few milliseconds). Every table is truncated and refilled in one transaction, triggers off
    /// (the ledger's append-only guard, the balance trigger), and every sequence is set back;
    /// then the database is read back and must equal the template's contents.
    pub async fn reset_to(&self, template: &Template) -> anyhow::Result<()> {
        let contents = &template.contents;
        let mut tx = self.pool().begin().await?;
        sqlx::query("SET LOCAL session_replication_role = replica").execute(&mut *tx).await?;
        let all: Vec<String> = contents.tables.iter().map(|(table, _)| format!("public.{}", quoted(table))).collect();
        let truncate = format!("TRUNCATE {} RESTART IDENTITY", all.join(", "));
        sqlx::query(sqlx::AssertSqlSafe(truncate)).execute(&mut *tx).await?;
        for ((_, rows), table) in contents.tables.iter().zip(&all) {
            if rows != "[]" {
                let refill =
                    format!("INSERT INTO {table} SELECT * FROM json_populate_recordset(NULL::{table}, $1::JSON)");
                sqlx::query(sqlx::AssertSqlSafe(refill)).bind(rows).persistent(false).execute(&mut *tx).await?;
            }
        }
        for (sequence, last, called) in &contents.sequences {
            sqlx::query("SELECT setval($1::REGCLASS, $2, $3)")
                .bind(format!("public.{}", quoted(sequence)))
                .bind(last)
                .bind(called)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let now = Contents::read(self.pool()).await?;
        anyhow::ensure!(now == *contents, "database {} differs from a fresh copy after its reset", self.name);
        // What the contents do not show: another session of this test still at work here (a
        // refusal's rollback ends a moment after its error was sent), or the locks it holds. A
        // fresh copy has neither; give a rollback up to 5 s (a loaded machine) to end.
        let busy = "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database =
                    (SELECT oid FROM pg_database WHERE datname = current_database()))
              + (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                    AND backend_type = 'client backend' AND pid <> pg_backend_pid()
                    AND state NOT IN ('idle', 'disabled'))";
        for attempt in 0.. {
            let at_work: i64 = sqlx::query_scalar(busy).fetch_one(self.pool()).await?;
            if at_work == 0 {
                break;
            }
            anyhow::ensure!(
                attempt < 500,
                "database {}: {at_work} locks or sessions still at work after its reset",
                self.name
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        drop_now(&self.name);
    }
}

/// Drops database `name` from a `Drop`: Drop is synchronous and may run inside the test's
/// runtime, so from a thread of its own with a runtime of its own.
fn drop_now(name: &str) {
    let owned = name.to_owned();
    let dropped = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(drop_database(&owned))
    })
    .join();
    if !matches!(dropped, Ok(Ok(()))) {
        eprintln!("warning: could not drop test database {name}");
    }
}

/// A migrated database that tests copy (`TestDb::copy_of`) or reset a copy to
/// (`TestDb::reset_to`); dropped on drop.
pub struct Template {
    name: String,
    contents: Contents,
}

impl Template {
    pub async fn new() -> Template {
        let (store, name) = fresh_database("atlas_template", 1).await.expect("a template database");
        let contents = Contents::read(store.pool()).await.expect("the template's contents");
        // A template is copied only while nobody is connected to it.
        store.pool().close().await;
        Template { name, contents }
    }
}

/// Everything a database holds that operations can change: each table's rows in storage order
/// (as JSON text) and each sequence's position. The migrations' seeded catalogue is in here.
#[derive(Debug, PartialEq, Eq)]
struct Contents {
    tables: Vec<(String, String)>,
    sequences: Vec<(String, i64, bool)>,
}

impl Contents {
    async fn read(pool: &sqlx::PgPool) -> anyhow::Result<Contents> {
        // Only plain tables and sequences in `public`: anything else would escape the reset.
        let other: Vec<String> = sqlx::query_scalar(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
                  AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'
                  AND (n.nspname <> 'public' OR c.relkind NOT IN ('r', 'S', 'i', 'v'))",
        )
        .fetch_all(pool)
        .await?;
        anyhow::ensure!(other.is_empty(), "relations a reset would not restore: {other:?}");
        let names = "SELECT c.relname::TEXT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind = $1::\"char\" ORDER BY c.relname";
        let mut tables = Vec::new();
        for table in sqlx::query_scalar::<_, String>(names).bind("r").fetch_all(pool).await? {
            let rows =
                format!("SELECT coalesce(json_agg(t ORDER BY ctid)::TEXT, '[]') FROM public.{} t", quoted(&table));
            let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(rows)).persistent(false).fetch_one(pool).await?;
            tables.push((table, rows));
        }
        let mut sequences = Vec::new();
        for sequence in sqlx::query_scalar::<_, String>(names).bind("S").fetch_all(pool).await? {
            let at = format!("SELECT last_value, is_called FROM public.{}", quoted(&sequence));
            let (last, called): (i64, bool) =
                sqlx::query_as(sqlx::AssertSqlSafe(at)).persistent(false).fetch_one(pool).await?;
            sequences.push((sequence, last, called));
        }
        Ok(Contents { tables, sequences })
    }
}

/// `name` as an SQL identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Drop for Template {
    fn drop(&mut self) {
        drop_now(&self.name);
    }
}

/// A name no other test process or earlier run uses: pid, a per-process counter, OS randomness.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let salt = getrandom::u32().unwrap_or(0);
    format!("{prefix}_{}_{n}_{salt:08x}", std::process::id())
}

/// The tests' "now": a fixed instant, so expiries and windows are exact.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

pub fn uid(id: i64) -> UserId {
    UserId::new(id).expect("test user ids are positive")
}

/// An amount in minor units, as the store reports it.
pub fn minor(minor: i64) -> Money {
    Money::from_minor(minor).expect("test amounts are not negative")
}

pub fn money(text: &str) -> Money {
    Money::parse(text).expect("test amounts are valid")
}

pub fn crypto(payment_id: &str, amount: &str) -> ProviderPayment {
    ProviderPayment {
        provider: PaymentProviderKind::Crypto,
        payment_id: ProviderPaymentId::parse(payment_id).expect("valid payment id"),
        amount: money(amount),
    }
}

/// Registers a user and credits `balance` (if any) through a real top-up.
pub async fn user_with_balance(store: &PgStore, id: i64, balance: &str) -> UserId {
    let user = uid(id);
    store.register_user(user, Language::En, None, None, t0()).await.expect("register");
    if balance != "0" {
        store.top_up(user, crypto(&format!("seed-{id}"), balance), t0()).await.expect("seed top-up");
    }
    user
}

/// Creates a promo code through the store, as an admin would.
pub async fn create_promo(
    db: &TestDb,
    code: &str,
    percent: u8,
    max_uses: Option<u32>,
    expires_at: Option<DateTime<Utc>>,
) {
    let promo = atlas::ports::store::NewPromo {
        code: atlas::domain::PromoCode::parse(code).expect("valid test code"),
        discount: Percent::new(percent).expect("a test percentage"),
        max_uses: max_uses.map(|m| std::num::NonZeroU32::new(m).expect("positive test max_uses")),
        expires_at,
        created_by: uid(1),
        correlation_id: None,
    };
    db.store.create_promo(promo, t0()).await.expect("create promo");
}

pub async fn balance(db: &TestDb, user: UserId) -> i64 {
    sqlx::query_scalar("SELECT balance FROM users WHERE telegram_id = $1")
        .bind(user.get())
        .fetch_one(db.pool())
        .await
        .unwrap()
}

pub async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Row counts of every table that an operation writes: a refused operation must leave all of
/// them unchanged.
pub async fn snapshot(db: &TestDb) -> Vec<(String, i64)> {
    let tables = [
        "users",
        "subscriptions",
        "vpn_keys",
        "pending_purchases",
        "promo_redemptions",
        "payments",
        "payment_idempotency_keys",
        "withdrawal_requests",
        "referral_rewards",
        "admin_audit_log",
        "balance_ledger",
        "auto_renewals",
        "notice_deliveries",
        "topups",
        "broadcasts",
    ];
    let mut counts = Vec::new();
    for table in tables {
        counts.push((table.to_owned(), count(db, &format!("SELECT count(*) FROM {table}")).await));
    }
    counts.push((
        "sum(used_count)".into(),
        count(db, "SELECT coalesce(sum(used_count), 0)::BIGINT FROM promo_codes").await,
    ));
    counts.push(("sum(balance)".into(), count(db, "SELECT coalesce(sum(balance), 0)::BIGINT FROM users").await));
    counts
}

/// The ledger invariants of the audit, checked on the final state:
/// no balance below zero; every balance equals the sum of its ledger entries; promo
/// `used_count` within `max_uses` and equal to its redemptions; each payment credited at most
/// once; each referral reward granted once and matched by one ledger entry.
pub async fn assert_ledger_invariants(db: &TestDb) -> anyhow::Result<()> {
    let pool = db.pool();
    let negative: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE balance < 0").fetch_one(pool).await?;
    anyhow::ensure!(negative == 0, "{negative} balances below zero");
    let drift: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT u.telegram_id, u.balance, coalesce(sum(l.amount), 0)::BIGINT FROM users u
         LEFT JOIN balance_ledger l ON l.user_id = u.telegram_id
         GROUP BY u.telegram_id, u.balance HAVING u.balance <> coalesce(sum(l.amount), 0)",
    )
    .fetch_all(pool)
    .await?;
    anyhow::ensure!(drift.is_empty(), "balances differ from ledger sums (user, balance, sum): {drift:?}");
    let promo: Vec<(String, i32, Option<i32>, i64)> = sqlx::query_as(
        "SELECT c.code, c.used_count, c.max_uses, (SELECT count(*) FROM promo_redemptions r WHERE r.promo_id = c.id)
         FROM promo_codes c",
    )
    .fetch_all(pool)
    .await?;
    for (code, used, max, redemptions) in promo {
        anyhow::ensure!(max.is_none_or(|m| used <= m), "promo {code}: used_count {used} above max_uses {max:?}");
        anyhow::ensure!(
            i64::from(used) == redemptions,
            "promo {code}: used_count {used} but {redemptions} redemptions"
        );
    }
    let topups: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT p.id, (SELECT count(*) FROM balance_ledger l WHERE l.kind = 'topup' AND l.reference = 'payment:' || p.id)
         FROM payments p",
    )
    .fetch_all(pool)
    .await?;
    for (payment, credits) in topups {
        anyhow::ensure!(credits <= 1, "payment {payment} credited {credits} times");
    }
    let credited_topups: i64 =
        sqlx::query_scalar("SELECT count(*) FROM balance_ledger WHERE kind = 'topup'").fetch_one(pool).await?;
    let topup_payments: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payments WHERE purpose = 'topup'").fetch_one(pool).await?;
    anyhow::ensure!(
        credited_topups == topup_payments,
        "{topup_payments} top-up payments but {credited_topups} credits"
    );
    let rewards: i64 = sqlx::query_scalar("SELECT count(*) FROM referral_rewards").fetch_one(pool).await?;
    let reward_purchases: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT purchase_id) FROM referral_rewards").fetch_one(pool).await?;
    let reward_credits: i64 = sqlx::query_scalar("SELECT count(*) FROM balance_ledger WHERE kind = 'referral_reward'")
        .fetch_one(pool)
        .await?;
    anyhow::ensure!(
        rewards == reward_purchases && rewards == reward_credits,
        "referral rewards {rewards}, distinct purchases {reward_purchases}, ledger credits {reward_credits}"
    );
    Ok(())
}

/// Applies the migrations to a named database on the test server (for the benchmark).
pub async fn fresh_database(prefix: &str, max_connections: u32) -> anyhow::Result<(PgStore, String)> {
    let name = unique_name(prefix);
    let mut admin =
        sqlx::PgConnection::connect(&format!("{}/postgres", server_url())).await.context("connect to PostgreSQL")?;
    // `name` comes from unique_name: letters, digits and underscores only.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
    let store = PgStore::connect(&format!("{}/{name}", server_url()), max_connections).await?;
    store.migrate().await?;
    Ok((store, name))
}

pub async fn drop_database(name: &str) -> anyhow::Result<()> {
    let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", server_url())).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut admin)
        .await?;
    Ok(())
}

/// Runs the pgbench spend baseline (`../shared/bench/pg-spend-baseline.sh SECONDS HOT_IDS`) and
/// returns its transactions per second.
pub fn pgbench_spend(script: &str, seconds: u64, hot_ids: u32) -> anyhow::Result<f64> {
    let out = std::process::Command::new("bash")
        .arg(script)
        .arg(seconds.to_string())
        .arg(hot_ids.to_string())
        .output()
        .context("run the pgbench baseline")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = text.rsplit(':').next().and_then(|t| t.trim().trim_end_matches("tps").trim().parse().ok());
    tps.with_context(|| format!("no tps in baseline output: {text}{}", String::from_utf8_lossy(&out.stderr)))
}

/// Redis for the coordination tests: `ATLAS_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`).
/// Each test uses a key prefix of its own, and every key has a TTL, so runs never meet.
pub mod redis_support {
    use std::sync::Arc;
    use std::time::Duration;

    use atlas::coord::connector::{RedisConnector, RedisTarget, TcpDialer};
    use atlas::coord::keys::KeySpace;
    use atlas::coord::redis::RedisCoordination;
    use atlas::ports::{Clock, Ids, SeededIds};
    use atlas::runtime::live::SystemClock;
    use chrono::{DateTime, Utc};

    pub fn redis_url() -> String {
        std::env::var("ATLAS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    pub fn target() -> RedisTarget {
        RedisTarget::from_url(&url::Url::parse(&redis_url()).expect("valid ATLAS_TEST_REDIS_URL")).expect("redis URL")
    }

    /// A key space no other test or run uses.
    pub fn fresh_keys() -> KeySpace {
        KeySpace::new(&super::unique_name("t"), "test", 1)
    }

    pub fn ids(seed: u64) -> Arc<dyn Ids> {
        Arc::new(SeededIds::new(seed ^ u64::from(getrandom::u32().unwrap_or(0))))
    }

    /// An instance's view of time, shifted by `skew` (wall clock and monotonic alike), as a
    /// badly synchronized host would have it.
    pub struct SkewedClock {
        inner: SystemClock,
        skew: Duration,
        ahead: bool,
    }

    impl SkewedClock {
        pub fn new(skew: Duration, ahead: bool) -> SkewedClock {
            SkewedClock { inner: SystemClock::new(), skew, ahead }
        }
    }

    impl Clock for SkewedClock {
        fn now(&self) -> DateTime<Utc> {
            let skew = chrono::Duration::from_std(self.skew).unwrap();
            if self.ahead { self.inner.now() + skew } else { self.inner.now() - skew }
        }

        fn monotonic(&self) -> Duration {
            if self.ahead {
                self.inner.monotonic() + self.skew
            } else {
                self.inner.monotonic().saturating_sub(self.skew)
            }
        }
    }

    pub fn clock() -> Arc<dyn Clock> {
        Arc::new(SystemClock::new())
    }

    /// An instance's coordination on real Redis, over its own connection.
    pub fn instance(keys: &KeySpace, clock: Arc<dyn Clock>, seed: u64) -> RedisCoordination<TcpDialer> {
        let target = target();
        let ids = ids(seed);
        let connector = RedisConnector::new(
            TcpDialer::new(&target, None).expect("plain TCP"),
            target.info.clone(),
            clock.clone(),
            ids.clone(),
        );
        RedisCoordination::new(connector, keys.clone(), clock, ids)
    }

    /// A plain connection for looking at (or tampering with) keys directly.
    pub async fn raw() -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(redis_url()).expect("redis URL");
        tokio::time::timeout(Duration::from_secs(5), client.get_multiplexed_async_connection())
            .await
            .expect("Redis answers in time (ci/test starts it)")
            .expect("Redis is reachable")
    }
}

/// A TCP proxy in front of Redis that a test can cut and restore, to see what the bot does when
/// Redis goes away and comes back.
pub mod proxy {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::AbortHandle;

    pub struct Proxy {
        addr: SocketAddr,
        upstream: (String, u16),
        /// The accepting task.
        tasks: Arc<Mutex<Vec<AbortHandle>>>,
        /// One task per connection carried.
        connections: Arc<Mutex<Vec<AbortHandle>>>,
    }

    impl Proxy {
        pub async fn start(upstream: (String, u16)) -> Proxy {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a proxy port");
            let proxy = Proxy {
                addr: listener.local_addr().unwrap(),
                upstream,
                tasks: Arc::default(),
                connections: Arc::default(),
            };
            proxy.serve(listener);
            proxy
        }

        pub fn port(&self) -> u16 {
            self.addr.port()
        }

        fn serve(&self, listener: TcpListener) {
            let (upstream, connections) = (self.upstream.clone(), self.connections.clone());
            let accept = tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let upstream = upstream.clone();
                    let copy = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect((upstream.0.as_str(), upstream.1)).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().unwrap().push(copy.abort_handle());
                }
            });
            self.tasks.lock().unwrap().push(accept.abort_handle());
        }

        /// Closes every connection and refuses new ones.
        pub fn cut(&self) {
            for task in self.tasks.lock().unwrap().drain(..) {
                task.abort();
            }
            self.drop_connections();
        }

        /// Closes every connection open now and goes on accepting new ones: what clients see
        /// when Redis restarts (or fails over) and is back at once.
        pub fn drop_connections(&self) {
            for task in self.connections.lock().unwrap().drain(..) {
                task.abort();
            }
        }

        /// Accepts connections again, on the same port.
        pub async fn restore(&self) {
            let listener = TcpListener::bind(self.addr).await.expect("rebind the proxy port");
            self.serve(listener);
        }
    }
}
