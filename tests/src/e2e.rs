//! End to end with the real binary: `atlas-bot run` processes on real PostgreSQL and Redis,
//! talking to the fake Bot API (`atlas_sim::bot_api`) served by the test on a real TCP port.
//! A [`Shop`] is one deployment (a database, a Redis key space, the fake Telegram); a [`Bot`] is
//! one `atlas-bot` process of it, whose log lines the test can read.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use atlas::net::client::HttpClient;
use atlas::net::server::serve;
use atlas::net::{Listener as _, TcpListener, TcpNetwork};
use atlas_sim::bot_api::{FakeBotApi, Redelivery, deliver_webhooks, updates};
use serde_json::Value;

use crate::TestDb;

/// The fake bot's token; its secret half must never appear in a log line.
pub const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_";
pub const TOKEN_SECRET: &str = "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_";
/// The webhook secret the shop's bots are given.
pub const WEBHOOK_SECRET: &str = "e2e-webhook-secret_42";
/// A password put into the database URL (trust authentication ignores it); it must never appear
/// in a log line either.
pub const DB_PASSWORD: &str = "hunter2-db-password";

/// How long a test waits for something the bot should do.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Builds `atlas-bot` once per test process (cargo does nothing when it is up to date) and
/// returns its path next to the test binaries.
pub fn binary() -> std::path::PathBuf {
    static BUILT: OnceLock<std::path::PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build.args(["build", "--quiet", "--workspace", "--bins"]);
            // What cargo set for this test binary is not the build's: a build script that
            // watches CARGO_MANIFEST_DIR (ring's) would otherwise rebuild the world each time.
            for (key, _) in std::env::vars() {
                let ours =
                    ["CARGO_MANIFEST", "CARGO_PKG", "CARGO_CRATE", "CARGO_BIN", "CARGO_PRIMARY", "CARGO_TARGET_TMPDIR"];
                if ours.iter().any(|prefix| key.starts_with(prefix)) || key.starts_with("NEXTEST") {
                    build.env_remove(key);
                }
            }
            let status = build.status().expect("cargo runs");
            assert!(status.success(), "atlas-bot does not build");
            let exe = std::env::current_exe().expect("the test binary's path");
            let dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps");
            dir.join("atlas-bot")
        })
        .clone()
}

/// How the shop's bots take updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Webhook,
    Polling,
}

/// One deployment: its database, its Redis key space, its fake Telegram.
pub struct Shop {
    pub db: TestDb,
    /// The fake Outline panel and Crypto Pay the instances use.
    pub providers: crate::providers::Providers,
    pub telegram: FakeBotApi,
    pub api_url: url::Url,
    pub mode: Mode,
    pub admins: Vec<i64>,
    prefix: String,
    next_query: std::sync::atomic::AtomicU64,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Shop {
    pub async fn new(mode: Mode, admins: &[i64]) -> Shop {
        let db = TestDb::new().await;
        let redelivery = Redelivery {
            first: Duration::from_millis(200),
            max: Duration::from_secs(2),
            answer_timeout: Duration::from_secs(30),
            ..Redelivery::default()
        };
        let telegram = FakeBotApi::new(TOKEN, redelivery);
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let api_url = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (stop_a, stop_b) = tokio::sync::watch::channel(false);
        tokio::spawn(serve(
            listener,
            telegram.router(),
            async move {
                let _ = stopped.await;
                let _ = stop_a.send(true);
            },
            Duration::from_secs(1),
        ));
        let pusher = telegram.clone();
        tokio::spawn(async move {
            let mut stop = stop_b;
            let client = HttpClient::new(TcpNetwork, None).unwrap();
            deliver_webhooks(pusher, client, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        });
        let prefix = format!("e2e{:08x}", getrandom::u32().unwrap_or(0));
        Shop {
            db,
            providers: crate::providers::Providers::start().await,
            telegram,
            api_url,
            mode,
            admins: admins.to_vec(),
            prefix,
            next_query: std::sync::atomic::AtomicU64::new(1),
            _stop: stop,
        }
    }

    /// Starts one `atlas-bot run` of this shop and waits until it serves.
    pub async fn start(&self) -> Bot {
        let port = free_port();
        let database = format!(
            "{}/{}",
            crate::server_url().replacen("://postgres@", &format!("://postgres:{DB_PASSWORD}@"), 1),
            self.db.name()
        );
        let mut command = Command::new(binary());
        command
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("APP_ENV", "local")
            .env("LOCAL_DATABASE_URL", database)
            .env("LOCAL_REDIS_URL", crate::redis_support::redis_url())
            .env("LOCAL_REDIS_PREFIX", &self.prefix)
            .env("LOCAL_BOT_TOKEN", TOKEN)
            .env("LOCAL_TELEGRAM_API_URL", self.api_url.as_str())
            .env("LOCAL_HTTP_LISTEN", format!("127.0.0.1:{port}"))
            .env("LOCAL_SHUTDOWN_TIMEOUT", "10")
            .env("LOCAL_WORKER_INTERVAL", "1")
            .env("LOCAL_VPN_PANEL_URL", self.providers.outline_url.as_str())
            .env("LOCAL_VPN_PANEL_CERT_SHA256", hex::encode(self.providers.pin))
            .env("LOCAL_CRYPTO_PAY_TOKEN", crate::providers::CRYPTO_TOKEN)
            .env("LOCAL_CRYPTO_PAY_API_URL", self.providers.crypto_url.as_str())
            .env("LOCAL_ADMIN_IDS", self.admins.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if self.mode == Mode::Webhook {
            command
                .env("LOCAL_WEBHOOK_URL", format!("http://127.0.0.1:{port}/telegram/hook"))
                .env("LOCAL_WEBHOOK_SECRET", WEBHOOK_SECRET);
        }
        let mut child = command.spawn().expect("atlas-bot starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let bot = Bot { child: Some(child), lines, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
        bot.wait_for_log("HTTP server listening").await;
        bot
    }

    /// The user `from` sends `text` (a command too).
    pub fn send_text(&self, from: i64, text: &str) -> i64 {
        self.telegram.push(updates::text(from, "en", text))
    }

    /// The user presses the button whose label contains `label` in their latest message that
    /// has one.
    pub fn press(&self, from: i64, label: &str) -> i64 {
        let data = self.telegram.button(from, label).unwrap_or_else(|| {
            panic!("no button {label:?} for {from}; they were told: {:?}", self.telegram.texts_to(from))
        });
        self.press_data(from, &data)
    }

    pub fn press_data(&self, from: i64, data: &str) -> i64 {
        let n = self.next_query.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.telegram.push(updates::callback(from, "en", &format!("cb{n}"), data))
    }

    /// `user` starts the bot and walks the purchase of 30 days of Basic up to the choice of how
    /// to pay.
    pub async fn to_payment_choice(&self, user: i64) {
        self.send_text(user, "/start");
        self.told(user, "Welcome").await;
        for (button, next) in
            [("Buy", "Choose a plan"), ("Basic", "choose a period"), ("30 days", "How do you want to pay")]
        {
            // The menu comes a moment after the welcome (Telegram's pacing of one chat).
            self.shown(user, button).await;
            self.press(user, button);
            self.told(user, next).await;
        }
    }

    /// Waits until a button whose label contains `label` has been sent to `chat`.
    pub async fn shown(&self, chat: i64, label: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.telegram.button(chat, label).is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{chat} was never shown a button {label:?}; they were told {:?}",
                self.telegram.texts_to(chat)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `chat` has been told something containing `needle`, and returns it.
    pub async fn told(&self, chat: i64, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(text) = self.telegram.texts_to(chat).into_iter().find(|t| t.contains(needle)) {
                return text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{chat} was never told {needle:?}; they were told {:?}",
                self.telegram.texts_to(chat)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the bot has called `method` at least once, and returns the latest call's body.
    pub async fn called(&self, method: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(body) = self.telegram.calls_of(method).pop() {
                return body;
            }
            assert!(tokio::time::Instant::now() < deadline, "the bot never called {method}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every pushed update was taken (confirmed by a poller or accepted by the
    /// webhook).
    pub async fn settled(&self) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.telegram.pending() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "{} updates never settled", self.telegram.pending());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One `atlas-bot run` process.
pub struct Bot {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    pub addr: SocketAddr,
}

impl Bot {
    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub async fn wait_for_log(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(line) = self.log().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(tokio::time::Instant::now() < deadline, "no log line with {needle:?}:\n{}", self.log().join("\n"));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, as an orchestrator stops an instance.
    pub fn terminate(&self) {
        let pid = self.child.as_ref().expect("running").id();
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    }

    /// SIGKILL: the instance dies on the spot.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit and returns its status code.
    pub async fn exit_code(&mut self) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("the process can be waited for") {
                return status.code();
            }
            assert!(tokio::time::Instant::now() < deadline, "the bot did not exit:\n{}", self.log().join("\n"));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GET `path` on the bot's HTTP server: the status and the body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let client = HttpClient::new(TcpNetwork, None).unwrap();
        let url = url::Url::parse(&format!("http://{}{path}", self.addr)).unwrap();
        let response =
            client.request(hyper::Method::GET, &url, &[], bytes::Bytes::new(), Duration::from_secs(5)).await.unwrap();
        (response.status.as_u16(), String::from_utf8_lossy(&response.body).into_owned())
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nothing listens on now (the OS's choice for a socket bound and closed at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The updates a chat's messages carry, for asserting on what the bot sent.
pub fn texts(messages: &[Value]) -> Vec<String> {
    messages.iter().filter_map(|m| m["text"].as_str().map(str::to_owned)).collect()
}
