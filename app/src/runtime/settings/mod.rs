//! One typed settings struct, read once at start-up and nested by concern (database,
//! coordination, Telegram, providers, the shop's policy). As in the old bot (audit part 0), every
//! variable is prefixed by the environment: with `APP_ENV=prod` the database URL is read from
//! `PROD_DATABASE_URL`. Values come from the process environment, then from an optional `.env`
//! file (the environment wins). Every problem is reported at once, one line per variable, naming
//! it. Secrets (the bot token, passwords inside URLs, provider tokens) are held in types that
//! never print them.

mod values;
mod variables;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

pub use values::{BotToken, SecretUrl};
pub use variables::{Spec, Var, WhenUnset, readme_table};

use crate::domain::{Money, Percent, ShopPolicy, UserId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppEnv {
    Local,
    Stage,
    Prod,
}

impl AppEnv {
    pub fn prefix(self) -> &'static str {
        match self {
            AppEnv::Local => "LOCAL",
            AppEnv::Stage => "STAGE",
            AppEnv::Prod => "PROD",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AppEnv::Local => "local",
            AppEnv::Stage => "stage",
            AppEnv::Prod => "prod",
        }
    }

    /// The name a variable is read under in this environment (`PROD_DATABASE_URL`).
    pub fn variable(self, var: Var) -> String {
        format!("{}_{}", self.prefix(), var.spec().key)
    }
}

#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    pub url: SecretUrl,
    pub max_connections: u32,
}

/// Which coordination design runs: Redis, shared by every instance, or the old bot's design in
/// this process's memory (`legacy`: one instance only; never in prod).
#[derive(Clone, Debug)]
pub enum CoordinationSetting {
    Legacy,
    Redis(RedisSettings),
}

#[derive(Clone, Debug)]
pub struct RedisSettings {
    pub url: SecretUrl,
    /// Extra CA certificates (PEM) to trust for `rediss://`, for a Redis with a private CA.
    pub ca_file: Option<PathBuf>,
    /// First part of every Redis key, before the environment and the bot id.
    pub prefix: String,
}

#[derive(Clone, Debug)]
pub struct TelegramSettings {
    pub bot_token: Option<BotToken>,
    pub admins: Vec<UserId>,
    /// Shown by the Support button.
    pub support_contact: String,
    /// Receive updates by webhook at this URL instead of long polling.
    pub webhook_url: Option<Url>,
}

#[derive(Clone, Debug)]
pub struct ProviderSettings {
    /// Outline's management API, its secret path included.
    pub vpn_panel_url: Option<values::PrivateUrl>,
    /// The panel's certificate, pinned (required for `https`).
    pub vpn_panel_cert_sha256: Option<[u8; 32]>,
    pub crypto_pay_token: Option<SecretString>,
    pub crypto_pay_api: Url,
    pub crypto_pay_webhook_path: String,
}

/// How updates come in.
#[derive(Clone, Debug)]
pub enum Intake {
    /// Telegram POSTs each update to `url` (any number of instances behind it), with `secret`.
    Webhook { url: Url, secret: SecretString, max_connections: u8 },
    /// One instance at a time (elected) fetches updates with getUpdates.
    Polling,
}

/// The running process: how updates come in, where it listens, how it stops.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub intake: Intake,
    pub telegram_api: Url,
    /// Whether the Messenger keeps Telegram's sending limits (off only for a local server).
    pub send_limits: bool,
    /// Whether this instance runs the background workers.
    pub workers: bool,
    /// The pause between two rounds of a worker that found less than a batch.
    pub worker_interval: Duration,
    pub http_listen: std::net::SocketAddr,
    pub updates_in_flight_max: usize,
    pub shutdown_timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub app_env: AppEnv,
    pub database: DatabaseSettings,
    pub coordination: CoordinationSetting,
    pub telegram: TelegramSettings,
    pub server: ServerSettings,
    pub providers: ProviderSettings,
    pub shop: ShopPolicy,
}

/// Everything wrong with the configuration, one line per variable.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads prefixed variables and collects every problem instead of stopping at the first.
struct Reader<'a> {
    env: AppEnv,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<String>,
}

impl Reader<'_> {
    fn raw(&self, var: Var) -> Option<String> {
        (self.lookup)(&self.env.variable(var)).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn fail(&mut self, var: Var, why: impl fmt::Display) {
        let name = self.env.variable(var);
        self.errors.push(format!("{name}: {why}"));
    }

    /// The variable's value, or its table default, parsed; `None` when it is unset without a
    /// default value, or its value is wrong (then the problem is recorded).
    fn parsed<T>(&mut self, var: Var, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let (value, is_default) = match (self.raw(var), &var.spec().default) {
            (Some(value), _) => (value, false),
            (None, WhenUnset::Value(value)) => ((*value).to_owned(), true),
            (None, WhenUnset::Words(_)) => return None,
        };
        match parse(&value) {
            Ok(v) => Some(v),
            Err(why) => {
                assert!(!is_default, "the default of {} in the variables table does not parse: {why}", var.spec().key);
                self.fail(var, why);
                None
            }
        }
    }

    fn required<T>(&mut self, var: Var, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        if self.raw(var).is_none() {
            self.fail(var, "is required");
            return None;
        }
        self.parsed(var, parse)
    }
}

impl Settings {
    /// Reads the settings through `lookup` (a variable name to its value). `APP_ENV` is read
    /// unprefixed and defaults to `local`.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Settings, ConfigErrors> {
        let app_env = match lookup("APP_ENV").map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("local") => AppEnv::Local,
            Some("stage") => AppEnv::Stage,
            Some("prod") => AppEnv::Prod,
            Some(other) => {
                return Err(ConfigErrors(vec![format!("APP_ENV: {other:?} is not one of local, stage, prod")]));
            }
        };
        let mut r = Reader { env: app_env, lookup, errors: Vec::new() };
        let database = database(&mut r);
        let coordination = coordination(&mut r);
        let telegram = telegram(&mut r);
        let server = server(&mut r, &telegram);
        let providers = providers(&mut r, &telegram);
        let shop = shop(&mut r);
        match (database, coordination, server, providers, shop) {
            (Some(database), Some(coordination), Some(server), Some(providers), Some(shop)) if r.errors.is_empty() => {
                Ok(Settings { app_env, database, coordination, telegram, server, providers, shop })
            }
            _ => {
                assert!(!r.errors.is_empty(), "a setting is missing but no problem was recorded");
                Err(ConfigErrors(r.errors))
            }
        }
    }

    /// Reads the process environment, then `dotenv_path` if it exists (the environment wins).
    pub fn load(dotenv_path: Option<&Path>) -> Result<Settings, ConfigErrors> {
        let mut file = BTreeMap::new();
        if let Some(path) = dotenv_path.filter(|p| p.exists()) {
            let entries = dotenvy::from_path_iter(path)
                .map_err(|e| ConfigErrors(vec![format!("{}: cannot read ({e})", path.display())]))?;
            for entry in entries {
                let (key, value) = entry.map_err(|e| ConfigErrors(vec![format!("{}: {e}", path.display())]))?;
                file.insert(key, value);
            }
        }
        Settings::from_lookup(&|key| std::env::var(key).ok().or_else(|| file.get(key).cloned()))
    }

    pub fn is_admin(&self, user: UserId) -> bool {
        self.telegram.admins.contains(&user)
    }

    /// The effective settings, one `NAME=value` line each (every variable of the table). A
    /// variable the table marks secret shows only whether it is set (and the bot token its public
    /// bot id), whatever it holds.
    pub fn redacted_lines(&self) -> Vec<String> {
        let mut lines = vec![format!("APP_ENV={}", self.app_env.name())];
        for &var in Var::ALL {
            let value = if var.spec().secret { self.secret_shown(var) } else { self.shown(var) };
            lines.push(format!("{}={value}", self.app_env.variable(var)));
        }
        lines
    }

    /// What `check-config` shows of a secret: never its value.
    fn secret_shown(&self, var: Var) -> String {
        let set = match var {
            Var::BotToken => {
                return self.telegram.bot_token.as_ref().map_or_else(unset, |t| format!("{}:<redacted>", t.bot_id()));
            }
            Var::VpnPanelUrl => self.providers.vpn_panel_url.is_some(),
            Var::WebhookSecret => matches!(self.server.intake, Intake::Webhook { .. }),
            Var::CryptoPayToken => self.providers.crypto_pay_token.is_some(),
            other => unreachable!("{other:?} is not a secret of the table"),
        };
        if set { "<set, redacted>".to_owned() } else { unset() }
    }

    /// What `check-config` shows of a variable that is not secret (URLs without their password).
    fn shown(&self, var: Var) -> String {
        let redis = match &self.coordination {
            CoordinationSetting::Redis(redis) => Some(redis),
            CoordinationSetting::Legacy => None,
        };
        let unused = || "<unused: COORDINATION=legacy>".to_owned();
        match var {
            Var::DatabaseUrl => self.database.url.to_string(),
            Var::DbMaxConnections => self.database.max_connections.to_string(),
            Var::RedisUrl => redis.map_or_else(unused, |r| r.url.to_string()),
            Var::RedisCaFile => {
                redis.map_or_else(unused, |r| r.ca_file.as_ref().map_or_else(unset, |f| f.display().to_string()))
            }
            Var::RedisPrefix => redis.map_or_else(unused, |r| r.prefix.clone()),
            Var::Coordination => if redis.is_some() { "redis" } else { "legacy" }.to_owned(),
            Var::AdminIds => self.telegram.admins.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            Var::WebhookUrl => self.telegram.webhook_url.as_ref().map_or_else(unset, ToString::to_string),
            Var::VpnPanelCertSha256 => self.providers.vpn_panel_cert_sha256.map_or_else(unset, hex::encode),
            Var::CryptoPayApiUrl => self.providers.crypto_pay_api.to_string(),
            Var::CryptoPayWebhookPath => self.providers.crypto_pay_webhook_path.clone(),
            Var::ReferralPercent => self.shop.referral_percent.get().to_string(),
            Var::WithdrawalMin => self.shop.withdrawal_min.to_string(),
            Var::TrialDays => self.shop.trial_days.to_string(),
            Var::PurchaseTtlMinutes => (self.shop.purchase_ttl.as_secs() / 60).to_string(),
            Var::StarPrice => self.shop.star_price.to_string(),
            Var::SupportContact => self.telegram.support_contact.clone(),
            Var::Intake => match self.server.intake {
                Intake::Webhook { .. } => "webhook".to_owned(),
                Intake::Polling => "polling".to_owned(),
            },
            Var::WebhookMaxConnections => match &self.server.intake {
                Intake::Webhook { max_connections, .. } => max_connections.to_string(),
                Intake::Polling => "<unused: INTAKE=polling>".to_owned(),
            },
            Var::TelegramApiUrl => self.server.telegram_api.to_string(),
            Var::SendLimits => if self.server.send_limits { "on" } else { "off" }.to_owned(),
            Var::Workers => if self.server.workers { "on" } else { "off" }.to_owned(),
            Var::WorkerInterval => self.server.worker_interval.as_secs().to_string(),
            Var::HttpListen => self.server.http_listen.to_string(),
            Var::UpdatesInFlightMax => self.server.updates_in_flight_max.to_string(),
            Var::ShutdownTimeout => self.server.shutdown_timeout.as_secs().to_string(),
            secret @ (Var::BotToken | Var::VpnPanelUrl | Var::CryptoPayToken | Var::WebhookSecret) => {
                unreachable!("{secret:?} is secret: shown by secret_shown")
            }
        }
    }
}

fn unset() -> String {
    "<not set>".to_owned()
}

fn database(r: &mut Reader<'_>) -> Option<DatabaseSettings> {
    let url = r.required(Var::DatabaseUrl, |v| values::url_with_scheme(v, &["postgres", "postgresql"]));
    let max_connections = r.parsed(Var::DbMaxConnections, |v| values::number(v, 1, 200));
    Some(DatabaseSettings { url: url?, max_connections: max_connections? })
}

fn coordination(r: &mut Reader<'_>) -> Option<CoordinationSetting> {
    let redis_url = |v: &str| values::url_with_scheme(v, &["redis", "rediss"]);
    let url =
        if r.env == AppEnv::Prod { r.required(Var::RedisUrl, redis_url) } else { r.parsed(Var::RedisUrl, redis_url) };
    let ca_file = r.parsed(Var::RedisCaFile, |v| {
        let path = PathBuf::from(v);
        if path.is_file() { Ok(path) } else { Err(format!("{v} is not a readable file")) }
    });
    let prefix = r.parsed(Var::RedisPrefix, values::redis_prefix);
    let redis = r
        .parsed(Var::Coordination, |v| match v {
            "redis" => Ok(true),
            "legacy" => Ok(false),
            "memory" => Err("memory is now called legacy: set it to legacy (or redis)".into()),
            _ => Err("must be redis or legacy".into()),
        })
        .unwrap_or(url.is_some() || r.raw(Var::RedisUrl).is_some());
    if !redis {
        if r.env == AppEnv::Prod {
            r.fail(Var::Coordination, "must be redis in prod (the legacy design is single-instance only)");
            return None;
        }
        return Some(CoordinationSetting::Legacy);
    }
    if url.is_none() && r.raw(Var::RedisUrl).is_none() && r.env != AppEnv::Prod {
        r.fail(Var::RedisUrl, "is required when COORDINATION is redis");
    }
    Some(CoordinationSetting::Redis(RedisSettings { url: url?, ca_file, prefix: prefix? }))
}

fn telegram(r: &mut Reader<'_>) -> TelegramSettings {
    let bot_token = if r.env == AppEnv::Local {
        r.parsed(Var::BotToken, values::bot_token)
    } else {
        r.required(Var::BotToken, values::bot_token)
    };
    let admins = r.parsed(Var::AdminIds, values::admin_ids).unwrap_or_default();
    // Telegram calls webhooks over HTTPS only; locally a test's fake Bot API may call plain HTTP.
    let schemes: &[&str] = if r.env == AppEnv::Local { &["https", "http"] } else { &["https"] };
    let webhook_url = r.parsed(Var::WebhookUrl, |v| values::url_with_scheme(v, schemes).map(|u| u.url().clone()));
    let support_contact = r
        .parsed(Var::SupportContact, |v| {
            let ok = (2..=128).contains(&v.chars().count()) && !v.chars().any(char::is_control);
            if ok { Ok(v.to_owned()) } else { Err("must be 2 to 128 characters on one line".into()) }
        })
        .unwrap_or_default();
    TelegramSettings { bot_token, admins, support_contact, webhook_url }
}

fn server(r: &mut Reader<'_>, telegram: &TelegramSettings) -> Option<ServerSettings> {
    let webhook = r
        .parsed(Var::Intake, |v| match v {
            "webhook" => Ok(true),
            "polling" => Ok(false),
            _ => Err("must be webhook or polling".into()),
        })
        .unwrap_or(telegram.webhook_url.is_some());
    let secret = r.parsed(Var::WebhookSecret, |v| {
        let ok = (1..=256).contains(&v.len()) && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if ok { Ok(SecretString::from(v.to_owned())) } else { Err("must be 1 to 256 of A-Z a-z 0-9 _ -".into()) }
    });
    let max_connections = r.parsed(Var::WebhookMaxConnections, |v| values::number(v, 1u8, 100));
    let telegram_api =
        r.parsed(Var::TelegramApiUrl, |v| values::url_with_scheme(v, &["http", "https"]).map(|u| u.url().clone()));
    let on_off = |v: &str| match v {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("must be on or off".into()),
    };
    let send_limits = r.parsed(Var::SendLimits, on_off);
    let workers = r.parsed(Var::Workers, on_off);
    let worker_interval = r.parsed(Var::WorkerInterval, |v| values::number(v, 1u64, 3600).map(Duration::from_secs));
    let http_listen =
        r.parsed(Var::HttpListen, |v| v.parse().map_err(|_| "must be an address such as 0.0.0.0:8080".into()));
    let updates_in_flight_max = r.parsed(Var::UpdatesInFlightMax, |v| values::number(v, 1usize, 10_000));
    let shutdown_timeout = r.parsed(Var::ShutdownTimeout, |v| values::number(v, 1u64, 300).map(Duration::from_secs));
    let intake = if webhook {
        match (&telegram.webhook_url, secret) {
            (Some(url), Some(secret)) => {
                Intake::Webhook { url: url.clone(), secret, max_connections: max_connections? }
            }
            (url, secret) => {
                if url.is_none() {
                    r.fail(Var::WebhookUrl, "is required with INTAKE=webhook");
                }
                if secret.is_none() && r.raw(Var::WebhookSecret).is_none() {
                    r.fail(Var::WebhookSecret, "is required with INTAKE=webhook (Telegram proves each update with it)");
                }
                return None;
            }
        }
    } else {
        if telegram.webhook_url.is_some() {
            r.fail(Var::Intake, "is polling but WEBHOOK_URL is set: unset one of them");
            return None;
        }
        Intake::Polling
    };
    Some(ServerSettings {
        intake,
        telegram_api: telegram_api?,
        send_limits: send_limits?,
        workers: workers?,
        worker_interval: worker_interval?,
        http_listen: http_listen?,
        updates_in_flight_max: updates_in_flight_max?,
        shutdown_timeout: shutdown_timeout?,
    })
}

fn providers(r: &mut Reader<'_>, telegram: &TelegramSettings) -> Option<ProviderSettings> {
    // Outline's API path is a credential: never in the clear outside a developer's machine.
    let local = r.env == AppEnv::Local;
    let vpn_panel_url = r.parsed(Var::VpnPanelUrl, |v| {
        let url = values::private_url(v)?;
        if url.expose().scheme() == "http" && !local {
            return Err("must start with https:// (http:// only with APP_ENV=local)".into());
        }
        Ok(url)
    });
    let cert = r.parsed(Var::VpnPanelCertSha256, crate::net::tls::parse_fingerprint);
    // The API token travels in a header: never in the clear outside a developer's machine.
    let schemes: &[&str] = if local { &["https", "http"] } else { &["https"] };
    let crypto_pay_api =
        r.parsed(Var::CryptoPayApiUrl, |v| values::url_with_scheme(v, schemes).map(|u| u.url().clone()));
    let telegram_path = telegram.webhook_url.as_ref().map(|u| u.path().to_owned());
    let crypto_pay_webhook_path = r.parsed(Var::CryptoPayWebhookPath, |v| {
        let ok =
            v.starts_with('/') && v.len() > 1 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
        if !ok {
            return Err("must be a path such as /crypto-pay/webhook".into());
        }
        if ["/healthz", "/readyz", "/metrics"].contains(&v) || telegram_path.as_deref() == Some(v) {
            return Err("is already a route of HTTP_LISTEN (an endpoint, or WEBHOOK_URL's path)".into());
        }
        Ok(v.to_owned())
    });
    if vpn_panel_url.as_ref().is_some_and(|u| u.expose().scheme() == "https") && cert.is_none() {
        if r.raw(Var::VpnPanelCertSha256).is_none() {
            r.fail(
                Var::VpnPanelCertSha256,
                "is required with an https VPN_PANEL_URL (Outline's certificate is self-signed)",
            );
        }
        return None;
    }
    Some(ProviderSettings {
        vpn_panel_url,
        vpn_panel_cert_sha256: cert,
        crypto_pay_token: r.raw(Var::CryptoPayToken).map(SecretString::from),
        crypto_pay_api: crypto_pay_api?,
        crypto_pay_webhook_path: crypto_pay_webhook_path?,
    })
}

fn shop(r: &mut Reader<'_>) -> Option<ShopPolicy> {
    let referral_percent = r.parsed(Var::ReferralPercent, |v| {
        values::number(v, 0u8, 100).and_then(|p| Percent::new(p).map_err(|e| e.to_string()))
    });
    let withdrawal_min = r.parsed(Var::WithdrawalMin, |v| Money::parse(v).map_err(|e| e.to_string()));
    let trial_days = r.parsed(Var::TrialDays, |v| values::number(v, 1, ShopPolicy::TRIAL_DAYS_MAX));
    let (min, max) = (ShopPolicy::PURCHASE_TTL_MIN.as_secs() / 60, ShopPolicy::PURCHASE_TTL_MAX.as_secs() / 60);
    let purchase_ttl =
        r.parsed(Var::PurchaseTtlMinutes, |v| values::number(v, min, max).map(|m| Duration::from_secs(m * 60)));
    let star_price = r.parsed(Var::StarPrice, |v| Money::parse(v).map_err(|e| e.to_string()));
    Some(ShopPolicy {
        trial_days: trial_days?,
        withdrawal_min: withdrawal_min?,
        referral_percent: referral_percent?,
        purchase_ttl: purchase_ttl?,
        star_price: star_price?,
    })
}

#[cfg(test)]
mod tests;
