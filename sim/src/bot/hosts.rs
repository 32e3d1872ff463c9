//! The hosts of a whole-bot run: the instances (the run function of `atlas-bot run` with the
//! live Telegram, Outline and Crypto Pay clients over simulated TCP, the sim Redis and the store
//! model), the internet (the fake Bot API with its webhook pusher and the users' apps, the fake
//! Outline panel and Crypto Pay, each service on its own port), and a balancer in front of the
//! instances.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use atlas::coord::AnyCoordination;
use atlas::coord::legacy::LegacyCoordination;
use atlas::net::client::{HttpClient, HttpError};
use atlas::ports::{Clock, Ids};
use atlas::providers::cryptopay::CryptoPayClient;
use atlas::providers::outline::OutlineClient;
use atlas::providers::resilience::Resilience;
use atlas::runtime::run::{RunConfig, run};
use atlas::runtime::settings::Intake;
use atlas::runtime::wiring::{Adapters, Parts, Rules};
use atlas::runtime::workers::WorkerConfig;
use atlas::telegram::api::BotApi;
use atlas::telegram::messenger::TelegramMessenger;
use secrecy::SecretString;
use tracing::Instrument as _;

use crate::bot_api::{FakeBotApi, Redelivery, deliver_webhooks};
use crate::clock::{SimClock, sim_now};
use crate::dialer::SimDialer;
use crate::fakes::cryptopay::FakeCryptoPay;
use crate::fakes::outline::FakeOutline;
use crate::history::REPORT_TARGET;
use crate::net::{SimListener, SimNetwork};
use crate::scenario::{BotIntake, Mode, Routing};
use crate::store_host::{SimStore, StoreLink};
use crate::world::{Stopping, instance_ids, redis_coordination};

pub const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_";
pub const CRYPTO_TOKEN: &str = "777:SimCryptoPayToken";
pub const WEBHOOK_SECRET: &str = "sim-webhook-secret";
/// The host of everything outside the bot's deployment: Telegram (its Bot API and the users'
/// apps), the Outline panel and Crypto Pay. One host, each service on its port: every host a
/// world has is ticked at every step (and each pair of hosts is a link turmoil walks), so four
/// hosts where one does cost a whole-bot run about a sixth of its time, for nothing a run can tell
/// apart. The bot reaches each service by its own URL, as live.
pub const INTERNET_HOST: &str = "internet";
pub const TELEGRAM_PORT: u16 = 8081;
pub const OUTLINE_PORT: u16 = 8443;
pub const CRYPTO_PORT: u16 = 80;
/// The services' names: in the trace's calls and the report's lanes.
pub const TELEGRAM: &str = "telegram";
pub const OUTLINE: &str = "outline";
pub const CRYPTO: &str = "cryptopay";
pub const BALANCER_HOST: &str = "balancer";
pub const BOT_PORT: u16 = 8080;
pub const CRYPTO_WEBHOOK_PATH: &str = "/crypto-pay/webhook";
pub const TELEGRAM_HOOK_PATH: &str = "/telegram/hook";
/// The admins of every whole-bot run; shoppers are numbered from `FIRST_SHOPPER`.
pub const ADMINS: [i64; 2] = [1, 2];
pub const FIRST_SHOPPER: i64 = 100;
/// How long an instance drains after SIGTERM before it exits with what it has not finished.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The bot's adapters in this world: the live Telegram and provider clients over simulated TCP.
pub struct WholeBot;

impl Adapters for WholeBot {
    type Store = SimStore;
    type Coordination = AnyCoordination<SimDialer>;
    type Vpn = OutlineClient<SimNetwork>;
    type Messenger = TelegramMessenger<SimNetwork>;
    type Crypto = CryptoPayClient<SimNetwork>;
}

pub fn url(text: &str) -> url::Url {
    url::Url::parse(text).expect("a valid URL")
}

/// The shop's rules of these runs: the seed's, with the two admins.
pub fn rules() -> Rules {
    let mut rules = crate::seed::rules();
    rules.admins = ADMINS.iter().map(|a| atlas::domain::UserId::new(*a).expect("positive")).collect();
    rules
}

/// The fake servers of a run; each records what it saw, and survives its host's restarts.
#[derive(Clone)]
pub struct Fakes {
    pub telegram: FakeBotApi,
    pub outline: FakeOutline,
    pub crypto: FakeCryptoPay,
}

impl Fakes {
    pub fn new(redelivery: Redelivery) -> Fakes {
        Fakes {
            telegram: FakeBotApi::new(TOKEN, redelivery),
            outline: FakeOutline::new("secretpath"),
            crypto: FakeCryptoPay::new(CRYPTO_TOKEN),
        }
    }
}

/// Serves `router`, the service named `service`, on `port` of the current simulated host; when a
/// run's report is being made, every request and its answer go into it, in the service's lane
/// (`in_report`).
pub async fn serving(service: &'static str, port: u16, router: axum::Router) -> turmoil::Result {
    let listener = SimListener::bind(port).await?;
    // Only while a report is made (not whenever a log filter lets its events through: the layer
    // reads a body before its route does): a layer on every request costs the runs that make none.
    let router = match crate::history::capturing() {
        true => router.layer(axum::middleware::from_fn(move |request, next| in_report(service, request, next))),
        false => router,
    };
    // The server's own line (listening) in the service's lane too; its connections' lines (their
    // tasks are spawned, outside the span) and the webhook pusher's stay the host's.
    let lane = tracing::debug_span!(target: REPORT_TARGET, "service", name = service);
    atlas::net::server::serve(listener, router, std::future::pending::<()>(), Duration::ZERO).instrument(lane).await;
    Ok(())
}

/// Longest request body the report quotes.
const QUOTED_BYTES: usize = 160;

/// A request to a simulated host and its status, as an event of the report. Secrets stay out:
/// the paths' secret parts (the bot token, the panel's prefix) and bodies carrying a secret are not shown.
async fn in_report(
    service: &'static str,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    // Installed only while a report is made (`serving`). The report draws a lane per service.
    let lane = || tracing::debug_span!(target: REPORT_TARGET, "service", name = service);
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        // As a route reading the body would answer.
        let _lane = lane().entered();
        tracing::debug!(target: REPORT_TARGET, status = 400, "{method} (its body could not be read)");
        return axum::response::IntoResponse::into_response(axum::http::StatusCode::BAD_REQUEST);
    };
    let path = shown_path(parts.uri.path());
    let quoted = if bytes.windows(6).any(|w| w == b"secret") {
        "(its body carries a secret: not shown)".to_owned()
    } else {
        let mut quoted = String::from_utf8_lossy(&bytes[..bytes.len().min(QUOTED_BYTES)]).into_owned();
        if bytes.len() > QUOTED_BYTES {
            quoted.push('…');
        }
        quoted
    };
    let response = next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await;
    let _lane = lane().entered();
    tracing::debug!(target: REPORT_TARGET, status = response.status().as_u16(), "{method} {path} {quoted}");
    response
}

/// A request's path as the report shows it: the first part is a secret on the Bot API (the bot
/// token) and on the Outline panel (its secret prefix), so only the routes' own first parts show.
fn shown_path(path: &str) -> String {
    let mut parts: Vec<&str> = path.split('/').collect();
    if let Some(first) = parts.get_mut(1)
        && !["api", "telegram"].contains(first)
    {
        *first = "…";
    }
    parts.join("/")
}

/// Adds the internet host: the fake Bot API (with its webhook pusher), the Outline panel and
/// Crypto Pay, and the users `users` makes (their apps: they read and press through the fake Bot
/// API in memory), started again with the host.
pub fn add_internet<U, F>(sim: &mut turmoil::Sim<'_>, fakes: &Fakes, users: U)
where
    U: Fn() -> F + 'static,
    F: Future<Output = ()> + 'static,
{
    let fakes = fakes.clone();
    sim.host(INTERNET_HOST, move || {
        let Fakes { telegram, outline, crypto } = fakes.clone();
        let users = users();
        async move {
            let pusher = HttpClient::new(SimNetwork, None)?;
            tokio::spawn(deliver_webhooks(telegram.clone(), pusher, std::future::pending()));
            tokio::task::spawn_local(users);
            tokio::try_join!(
                serving(TELEGRAM, TELEGRAM_PORT, telegram.router()),
                serving(OUTLINE, OUTLINE_PORT, outline.router()),
                serving(CRYPTO, CRYPTO_PORT, crypto.router()),
            )?;
            Ok(())
        }
    });
}

/// The internet host with no users of its own (for tests that play them).
pub fn add_fakes(sim: &mut turmoil::Sim<'_>, fakes: &Fakes) {
    add_internet(sim, fakes, || std::future::ready(()));
}

/// What one instance is: its place, its design, its clock, how updates reach it.
#[derive(Clone)]
pub struct InstanceSpec {
    pub index: usize,
    pub seed: u64,
    pub mode: Mode,
    pub skew_ms: i64,
    pub intake: BotIntake,
    pub updates_in_flight_max: usize,
    /// The chat lease (and the legacy design's), shortened like the scenario's.
    pub lease: Duration,
    /// The reissue lock's time to live, when the scenario shortens it.
    pub reissue_lock: Option<Duration>,
    pub stopping: Stopping,
}

/// One instance: `atlas-bot run` with the simulation's adapters, through the same run function.
pub async fn instance(link: StoreLink, spec: InstanceSpec) -> turmoil::Result {
    let clock: Arc<dyn Clock> = Arc::new(SimClock { skew_ms: spec.skew_ms });
    let ids: Arc<dyn Ids> = instance_ids(spec.seed, spec.index, sim_now());
    let http = || HttpClient::new(SimNetwork, None);
    let telegram = Arc::new(BotApi::new(
        http()?,
        url(&format!("http://{INTERNET_HOST}:{TELEGRAM_PORT}")),
        SecretString::from(TOKEN.to_owned()),
    ));
    let resilience = |name| Resilience::new(name, clock.clone(), ids.clone());
    let coordination = match spec.mode {
        Mode::Redis => AnyCoordination::Redis(redis_coordination(clock.clone(), ids.clone(), spec.lease)),
        Mode::Legacy => {
            AnyCoordination::Legacy(LegacyCoordination::new(clock.clone(), ids.clone()).with_lease_ttl(spec.lease))
        }
    };
    let parts: Parts<WholeBot> = Parts {
        store: SimStore::new(link, spec.index, Default::default()),
        coordination,
        vpn: OutlineClient::new(
            http()?,
            url(&format!("http://{INTERNET_HOST}:{OUTLINE_PORT}/secretpath")),
            resilience("the VPN panel"),
        ),
        messenger: TelegramMessenger::new(telegram.clone(), clock.clone()),
        crypto: CryptoPayClient::new(
            http()?,
            url(&format!("http://{INTERNET_HOST}:{CRYPTO_PORT}/")),
            SecretString::from(CRYPTO_TOKEN.to_owned()),
            Duration::from_secs(3600),
            resilience("Crypto Pay"),
        ),
        clock: clock.clone(),
        ids,
    };
    let intake = match spec.intake {
        BotIntake::Webhook => Intake::Webhook {
            url: url(&format!("http://{BALANCER_HOST}:{BOT_PORT}{TELEGRAM_HOOK_PATH}")),
            secret: SecretString::from(WEBHOOK_SECRET.to_owned()),
            max_connections: 8,
        },
        BotIntake::Polling => Intake::Polling,
    };
    let config = RunConfig {
        intake,
        updates_in_flight_max: spec.updates_in_flight_max,
        shutdown_timeout: SHUTDOWN_TIMEOUT,
        // Shortened like the chat lease, so that a leader's death is over within a run: every
        // leader-only worker's lease is twice the scenario's lease (60 s live).
        workers: WorkerConfig {
            interval: Duration::from_secs(1),
            leader_ttl: spec.lease * 2,
            ..WorkerConfig::default()
        },
        payment_webhook: Some((CRYPTO_WEBHOOK_PATH.into(), SecretString::from(CRYPTO_TOKEN.to_owned()))),
    };
    let listener = SimListener::bind(BOT_PORT).await?;
    // SIGTERM, when the runner sends it.
    let stopping = spec.stopping.clone();
    let shutdown = async move { stopping.until_stopped(spec.index).await };
    let mut rules = rules();
    rules.reissue_lock_ttl = spec.reissue_lock.unwrap_or(rules.reissue_lock_ttl);
    if let Err(e) = run(parts, rules, telegram, None, config, listener, shutdown).await {
        // The process exits (as `atlas-bot run` would, with status 1); the run goes on without
        // it, and the checkers see what its users missed.
        tracing::error!(instance = spec.index, error = %e, "the instance exited");
    }
    Ok(())
}

/// The user an update is about, for sticky routing.
fn user_of(body: &[u8]) -> Option<i64> {
    crate::bot_api::user_of(&serde_json::from_slice(body).ok()?)
}

/// The balancer in front of the instances: each request to an instance picked by `routing`, and
/// to the next one when that one does not answer (as a health-checking balancer would). An update
/// sent on after an instance took it and gave no answer in time is delivered again, like
/// Telegram's redelivery: `telegram` records it as handed back (the slow instance may still
/// handle it too: at least once).
pub fn balancer(
    instances: Vec<String>,
    routing: Routing,
    telegram: FakeBotApi,
) -> impl Future<Output = turmoil::Result> {
    use axum::extract::{Request, State};
    use axum::response::IntoResponse;
    struct Lb {
        instances: Vec<String>,
        routing: Routing,
        next: std::sync::atomic::AtomicUsize,
        client: HttpClient<SimNetwork>,
        telegram: FakeBotApi,
    }
    async fn forward(State(lb): State<Arc<Lb>>, request: Request) -> axum::response::Response {
        let (parts, body) = request.into_parts();
        let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else {
            return hyper::StatusCode::BAD_REQUEST.into_response();
        };
        let headers: Vec<(&'static str, String)> =
            ["content-type", "x-telegram-bot-api-secret-token", atlas::providers::cryptopay::SIGNATURE_HEADER]
                .into_iter()
                .filter_map(|name| Some((name, parts.headers.get(name)?.to_str().ok()?.to_owned())))
                .collect();
        let n = lb.instances.len();
        // The body is read for its user only when routing is sticky.
        let sticky = (lb.routing == Routing::Sticky).then(|| user_of(&body)).flatten();
        let first = match sticky {
            Some(user) => user.rem_euclid(n as i64) as usize,
            None => lb.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        for k in 0..n {
            let host = &lb.instances[(first + k) % n];
            let to = url(&format!("http://{host}:{BOT_PORT}{}", parts.uri.path()));
            match lb.client.request(parts.method.clone(), &to, &headers, body.clone(), Duration::from_secs(20)).await {
                Ok(answer) => return (answer.status, answer.body).into_response(),
                Err(HttpError::Timeout(_)) if parts.uri.path() == TELEGRAM_HOOK_PATH && k + 1 < n => {
                    lb.telegram.sent_on(&body);
                }
                Err(_) => {}
            }
        }
        hyper::StatusCode::BAD_GATEWAY.into_response()
    }
    async move {
        let client = HttpClient::new(SimNetwork, None)?;
        let lb = Arc::new(Lb { instances, routing, next: Default::default(), client, telegram });
        let router = axum::Router::new().fallback(forward).with_state(lb);
        serving(BALANCER_HOST, BOT_PORT, router).await
    }
}
