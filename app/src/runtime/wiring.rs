//! The composition root (zero2prod's `Application::build`): settings → pools → coordination →
//! the assembly every instance runs. It has two halves:
//!
//! - [`assemble`] takes a world's adapters — live, the tests' or the simulation's — and builds the
//!   same [`App`]: the ports the core uses, coordination behind the failure policy, the shop's
//!   rules. The adapters are type parameters ([`Adapters`]); the assembly is shared, so what runs
//!   in a test or a simulated instance is what runs in production.
//! - The live adapters are built from the settings here and nowhere else ([`live_store`],
//!   [`live_coordination`]); errors name the variable to fix.
//!
//! `atlas-bot run` calls [`assemble`] with the live adapters of every port, the simulation with
//! its own, the tests with theirs.

use std::sync::Arc;

use super::run::{RunConfig, RunError, run};
use super::settings::{CoordinationSetting, RedisSettings, Settings};
use super::workers::WorkerConfig;
use crate::coord::AnyCoordination;
use crate::coord::connector::{RedisConnector, RedisTarget, TcpDialer};
use crate::coord::keys::KeySpace;
use crate::coord::legacy::LegacyCoordination;
use crate::coord::policy::Guarded;
use crate::coord::redis::RedisCoordination;
use crate::domain::{ShopPolicy, UserId};
use crate::net::client::HttpClient;
use crate::net::{TcpListener, TcpNetwork};
use crate::ports::{Clock, Coordination, Ids, Messenger, PaymentProvider, Store, VpnProvider};
use crate::providers::cryptopay::CryptoPayClient;
use crate::providers::outline::OutlineClient;
use crate::providers::resilience::Resilience;
use crate::providers::unavailable::{OrUnavailable, Unavailable};
use crate::services::reissue::REISSUE_LOCK_TTL;
use crate::store::PgStore;
use crate::telegram::api::BotApi;
use crate::telegram::messenger::TelegramMessenger;

/// The adapter types of one world.
pub trait Adapters: 'static {
    type Store: Store;
    type Coordination: Coordination;
    type Vpn: VpnProvider;
    type Messenger: Messenger;
    /// The crypto payment provider (Crypto Pay). Telegram Stars go through the Messenger.
    type Crypto: PaymentProvider;
}

/// The adapters a world hands to [`assemble`].
pub struct Parts<A: Adapters> {
    pub store: A::Store,
    pub coordination: A::Coordination,
    pub vpn: A::Vpn,
    pub messenger: A::Messenger,
    pub crypto: A::Crypto,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn Ids>,
}

/// The rules an instance runs by (from the settings, or given by a test or scenario).
#[derive(Clone, Debug)]
pub struct Rules {
    pub shop: ShopPolicy,
    /// Telegram users allowed to use admin tools; checked on the server for every admin step.
    pub admins: Vec<UserId>,
    /// Where the Support button sends users.
    pub support_contact: String,
    /// The bot's @username (from `getMe`), for referral links; without it the link is the
    /// `/start` payload alone.
    pub bot_username: Option<String>,
    /// How long a reissue may hold its user's lock ([`REISSUE_LOCK_TTL`] live; the simulation
    /// shortens it, as it shortens every lease, to see a holder outlive it).
    pub reissue_lock_ttl: std::time::Duration,
}

impl Rules {
    pub fn from_settings(settings: &Settings) -> Rules {
        Rules {
            shop: settings.shop.clone(),
            admins: settings.telegram.admins.clone(),
            support_contact: settings.telegram.support_contact.clone(),
            bot_username: None,
            reissue_lock_ttl: REISSUE_LOCK_TTL,
        }
    }

    pub fn is_admin(&self, user: UserId) -> bool {
        self.admins.contains(&user)
    }
}

/// One instance of the bot's core: its ports, coordination behind the failure policy
/// (`coord::policy`), and its rules.
pub struct App<A: Adapters> {
    pub store: A::Store,
    pub coordination: Guarded<A::Coordination>,
    pub vpn: A::Vpn,
    pub messenger: A::Messenger,
    pub crypto: A::Crypto,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn Ids>,
    pub rules: Rules,
}

/// The one assembly, whatever the world.
pub fn assemble<A: Adapters>(parts: Parts<A>, rules: Rules) -> App<A> {
    // The fallback limiter of the failure policy: this instance's own memory.
    let local = LegacyCoordination::new(parts.clock.clone(), parts.ids.clone());
    App {
        store: parts.store,
        coordination: Guarded::new(parts.coordination, local),
        vpn: parts.vpn,
        messenger: parts.messenger,
        crypto: parts.crypto,
        clock: parts.clock,
        ids: parts.ids,
        rules,
    }
}

/// Live coordination: Redis over TCP (optionally TLS), or the legacy design.
pub type LiveCoordination = AnyCoordination<TcpDialer>;

/// Connects a PostgreSQL pool of at most `max_connections` to the settings' database (the bot
/// passes `DB_MAX_CONNECTIONS`; a one-shot command needs one or two). The error names the variable
/// and shows the URL without its password.
pub async fn live_store(settings: &Settings, max_connections: u32) -> Result<PgStore, String> {
    let db = &settings.database;
    PgStore::connect(db.url.expose(), max_connections).await.map_err(|e| {
        let var = settings.app_env.variable(super::settings::Var::DatabaseUrl);
        format!("cannot reach PostgreSQL at {} ({var}): {e:#}", db.url)
    })
}

/// The coordination of the settings. Connecting is lazy: [`ping_redis`] says whether Redis
/// answers.
pub fn live_coordination(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
) -> Result<LiveCoordination, String> {
    Ok(match &settings.coordination {
        CoordinationSetting::Legacy => AnyCoordination::Legacy(LegacyCoordination::new(clock, ids)),
        CoordinationSetting::Redis(redis) => AnyCoordination::Redis(live_redis(settings, redis, clock, ids)?),
    })
}

/// Redis coordination over TCP. Every key carries the prefix, the environment and the bot id, so
/// environments and bots sharing one Redis never meet.
pub fn live_redis(
    settings: &Settings,
    redis: &RedisSettings,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
) -> Result<RedisCoordination<TcpDialer>, String> {
    use super::settings::Var;
    let name = |var| settings.app_env.variable(var);
    let target = RedisTarget::from_url(redis.url.url()).map_err(|e| format!("{}: {e}", name(Var::RedisUrl)))?;
    let ca = match &redis.ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| format!("{}: cannot read {}: {e}", name(Var::RedisCaFile), path.display()))?,
        ),
        None => None,
    };
    let dialer = TcpDialer::new(&target, ca.as_deref()).map_err(|e| format!("{}: {e}", name(Var::RedisCaFile)))?;
    let bot_id = settings.telegram.bot_token.as_ref().map_or(0, |t| t.bot_id());
    let keys = KeySpace::new(&redis.prefix, settings.app_env.name(), bot_id);
    let connector = RedisConnector::new(dialer, target.info.clone(), clock.clone(), ids.clone());
    Ok(RedisCoordination::new(connector, keys, clock, ids))
}

/// Pings Redis once; the error names the variable and shows the URL without its password.
pub async fn ping_redis(
    settings: &Settings,
    redis: &RedisSettings,
    coordination: &RedisCoordination<TcpDialer>,
) -> Result<(), String> {
    coordination.ping().await.map_err(|e| {
        let var = settings.app_env.variable(super::settings::Var::RedisUrl);
        format!("cannot reach Redis at {} ({var}): {e}", redis.url)
    })
}

/// The live world: PostgreSQL, Redis (or the legacy design), Telegram, the Outline panel and
/// Crypto Pay over TCP; a provider that is not configured runs as [`Unavailable`].
pub struct LiveWorld;

impl Adapters for LiveWorld {
    type Store = PgStore;
    type Coordination = LiveCoordination;
    type Vpn = OrUnavailable<OutlineClient<TcpNetwork>>;
    type Messenger = TelegramMessenger<TcpNetwork>;
    type Crypto = OrUnavailable<CryptoPayClient<TcpNetwork>>;
}

/// The VPN panel of the settings: Outline over TCP, its certificate pinned for `https`.
pub fn live_vpn(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
) -> Result<OrUnavailable<OutlineClient<TcpNetwork>>, String> {
    use super::settings::Var;
    let providers = &settings.providers;
    let Some(url) = &providers.vpn_panel_url else {
        return Ok(OrUnavailable::Unavailable(Unavailable { why: "no VPN panel is configured (VPN_PANEL_URL)" }));
    };
    let http = match providers.vpn_panel_cert_sha256 {
        Some(pin) if url.expose().scheme() == "https" => HttpClient::pinned(TcpNetwork, pin),
        _ => HttpClient::new(TcpNetwork, None),
    }
    .map_err(|e| format!("{}: {e}", settings.app_env.variable(Var::VpnPanelCertSha256)))?;
    let resilience = Resilience::new("the VPN panel", clock, ids);
    Ok(OrUnavailable::Live(OutlineClient::new(http, url.expose().clone(), resilience)))
}

/// Crypto Pay of the settings, when its token is set.
pub fn live_crypto(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
) -> Result<OrUnavailable<CryptoPayClient<TcpNetwork>>, String> {
    let providers = &settings.providers;
    let Some(token) = &providers.crypto_pay_token else {
        return Ok(OrUnavailable::Unavailable(Unavailable {
            why: "crypto payments are not configured (CRYPTO_PAY_TOKEN)",
        }));
    };
    let http = HttpClient::new(TcpNetwork, None)?;
    let resilience = Resilience::new("Crypto Pay", clock, ids);
    let (api, ttl) = (providers.crypto_pay_api.clone(), settings.shop.purchase_ttl);
    Ok(OrUnavailable::Live(CryptoPayClient::new(http, api, token.clone(), ttl, resilience)))
}

/// `atlas-bot run`: builds the live adapters from the settings, checks that everything the bot
/// cannot work without answers (the error names the variable to fix), and runs the instance
/// until `shutdown` resolves.
pub async fn run_live(
    settings: &Settings,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    use super::settings::Var;
    let name = |var| settings.app_env.variable(var);
    let clock: Arc<dyn Clock> = Arc::new(super::live::SystemClock::new());
    let ids: Arc<dyn Ids> = Arc::new(super::live::OsIds::new().map_err(|e| e.to_string())?);
    let Some(token) = settings.telegram.bot_token.as_ref() else {
        return Err(format!("{}: is required to run the bot", name(Var::BotToken)));
    };
    let store = live_store(settings, settings.database.max_connections).await?;
    crate::ports::store::Health::ready(&store).await.map_err(|e| {
        format!("PostgreSQL at {} ({}) is not ready: {e}", settings.database.url, name(Var::DatabaseUrl))
    })?;
    let coordination = live_coordination(settings, clock.clone(), ids.clone())?;
    if let (CoordinationSetting::Redis(redis), AnyCoordination::Redis(c)) = (&settings.coordination, &coordination) {
        ping_redis(settings, redis, c).await?;
    }
    let http = HttpClient::new(TcpNetwork, None)?;
    let token = secrecy::SecretString::from(token.expose().to_owned());
    let telegram = Arc::new(BotApi::new(http, settings.server.telegram_api.clone(), token));
    let parts: Parts<LiveWorld> = Parts {
        store,
        coordination,
        vpn: live_vpn(settings, clock.clone(), ids.clone())?,
        messenger: if settings.server.send_limits {
            TelegramMessenger::new(telegram.clone(), clock.clone())
        } else {
            TelegramMessenger::unlimited(telegram.clone(), clock.clone())
        },
        crypto: live_crypto(settings, clock.clone(), ids.clone())?,
        clock,
        ids,
    };
    let listener = TcpListener::bind(settings.server.http_listen)
        .await
        .map_err(|e| format!("{}: cannot listen on {}: {e}", name(Var::HttpListen), settings.server.http_listen))?;
    let config = RunConfig {
        intake: settings.server.intake.clone(),
        updates_in_flight_max: settings.server.updates_in_flight_max,
        shutdown_timeout: settings.server.shutdown_timeout,
        workers: WorkerConfig {
            enabled: settings.server.workers,
            interval: settings.server.worker_interval,
            ..WorkerConfig::default()
        },
        payment_webhook: settings
            .providers
            .crypto_pay_token
            .clone()
            .map(|token| (settings.providers.crypto_pay_webhook_path.clone(), token)),
    };
    run(parts, Rules::from_settings(settings), telegram, metrics, config, listener, shutdown).await.map_err(|e| match e
    {
        RunError::Telegram(e) => format!(
            "{} (with {} and {}): {e}",
            "Telegram refused the start",
            name(Var::BotToken),
            name(Var::TelegramApiUrl)
        ),
        other => other.to_string(),
    })
}
