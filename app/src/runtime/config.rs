//! One typed settings struct, read once at start-up. As in the old bot (audit part 0), every
//! variable is prefixed by the environment: with `APP_ENV=prod` the database URL is read from
//! `PROD_DATABASE_URL`. Values come from the process environment, then from an optional `.env`
//! file (the environment wins). Every URL is validated here; secrets (the bot token, passwords
//! inside URLs, provider tokens) are held in types that never print them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::domain::{Money, UserId};

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
}

/// Which Coordination implementation runs: Redis (shared between instances) or the in-memory
/// single-instance design of the old bot (for one instance, tests and the simulation's A/B).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordinationMode {
    Redis,
    Memory,
}

/// A URL that may carry a password. Display and Debug replace the password with `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(Url);

impl SecretUrl {
    /// The full URL, password included: only for handing to a driver.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &Url {
        &self.0
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        f.write_str(shown.as_str())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({self})")
    }
}

/// The Telegram bot token (`<bot id>:<secret>`). Only the bot id is ever shown.
#[derive(Clone)]
pub struct BotToken {
    bot_id: i64,
    token: SecretString,
}

impl BotToken {
    pub fn bot_id(&self) -> i64 {
        self.bot_id
    }

    pub fn expose(&self) -> &str {
        self.token.expose_secret()
    }
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BotToken({}:***)", self.bot_id)
    }
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub app_env: AppEnv,
    pub database_url: SecretUrl,
    pub redis_url: Option<SecretUrl>,
    /// Extra CA certificates (PEM) to trust for `rediss://`, for a Redis with a private CA.
    pub redis_ca_file: Option<std::path::PathBuf>,
    pub bot_token: Option<BotToken>,
    pub admin_ids: Vec<UserId>,
    pub coordination: CoordinationMode,
    /// First part of every Redis key, before the environment and the bot id.
    pub redis_prefix: String,
    pub db_max_connections: u32,
    /// Share of a referred user's purchase credited to the referrer.
    pub referral_percent: u8,
    pub withdrawal_min: Money,
    pub trial_days: i32,
    /// How long a provider-paid purchase waits for its payment before it expires.
    pub purchase_ttl_minutes: i32,
    /// Receive updates by webhook at this URL instead of long polling.
    pub webhook_url: Option<Url>,
    pub vpn_panel_url: Option<SecretUrl>,
    pub vpn_panel_token: Option<SecretString>,
    pub crypto_pay_token: Option<SecretString>,
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
    prefix: &'static str,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<String>,
}

impl Reader<'_> {
    fn name(&self, key: &str) -> String {
        format!("{}_{key}", self.prefix)
    }

    fn raw(&self, key: &str) -> Option<String> {
        (self.lookup)(&self.name(key)).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn fail(&mut self, key: &str, why: impl fmt::Display) {
        let name = self.name(key);
        self.errors.push(format!("{name}: {why}"));
    }

    fn parsed<T>(&mut self, key: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let value = self.raw(key)?;
        match parse(&value) {
            Ok(v) => Some(v),
            Err(why) => {
                self.fail(key, why);
                None
            }
        }
    }

    fn required<T>(&mut self, key: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        if self.raw(key).is_none() {
            self.fail(key, "is required");
            return None;
        }
        self.parsed(key, parse)
    }

    fn number<T: std::str::FromStr + PartialOrd + fmt::Display>(&mut self, key: &str, default: T, min: T, max: T) -> T {
        self.parsed(key, |v| match v.parse::<T>() {
            Ok(n) if n >= min && n <= max => Ok(n),
            _ => Err(format!("must be a whole number from {min} to {max}")),
        })
        .unwrap_or(default)
    }
}

fn url_with_scheme(value: &str, schemes: &[&str]) -> Result<SecretUrl, String> {
    let url = Url::parse(value).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !schemes.contains(&url.scheme()) {
        return Err(format!(
            "must start with {}",
            schemes.iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(" or ")
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(SecretUrl(url))
}

fn bot_token(value: &str) -> Result<BotToken, String> {
    let shape = "must look like <bot id>:<secret> as given by @BotFather";
    let (id, secret) = value.split_once(':').ok_or(shape)?;
    let bot_id = id.parse::<i64>().ok().filter(|id| *id > 0).ok_or(shape)?;
    let ok = secret.len() >= 30 && secret.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        return Err(shape.into());
    }
    Ok(BotToken { bot_id, token: SecretString::from(value.to_owned()) })
}

fn admin_ids(value: &str) -> Result<Vec<UserId>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<i64>().ok().and_then(UserId::new).ok_or_else(|| format!("{s:?} is not a Telegram user id")))
        .collect()
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
        let mut r = Reader { prefix: app_env.prefix(), lookup, errors: Vec::new() };

        let database_url = r.required("DATABASE_URL", |v| url_with_scheme(v, &["postgres", "postgresql"]));
        let redis_url = if app_env == AppEnv::Prod {
            r.required("REDIS_URL", |v| url_with_scheme(v, &["redis", "rediss"]))
        } else {
            r.parsed("REDIS_URL", |v| url_with_scheme(v, &["redis", "rediss"]))
        };
        let redis_ca_file = r.parsed("REDIS_CA_FILE", |v| {
            let path = std::path::PathBuf::from(v);
            if path.is_file() { Ok(path) } else { Err(format!("{v} is not a readable file")) }
        });
        let bot_token = if app_env == AppEnv::Local {
            r.parsed("BOT_TOKEN", bot_token)
        } else {
            r.required("BOT_TOKEN", bot_token)
        };
        let admin_ids = r.parsed("ADMIN_IDS", admin_ids).unwrap_or_default();
        let default_mode = if redis_url.is_some() { CoordinationMode::Redis } else { CoordinationMode::Memory };
        let coordination = r
            .parsed("COORDINATION", |v| match v {
                "redis" => Ok(CoordinationMode::Redis),
                "memory" => Ok(CoordinationMode::Memory),
                _ => Err("must be redis or memory".into()),
            })
            .unwrap_or(default_mode);
        if app_env == AppEnv::Prod && coordination == CoordinationMode::Memory {
            r.fail("COORDINATION", "must be redis in prod (the in-memory design is single-instance only)");
        }
        if coordination == CoordinationMode::Redis && redis_url.is_none() && app_env != AppEnv::Prod {
            r.fail("REDIS_URL", "is required when COORDINATION is redis");
        }
        let redis_prefix = r
            .parsed("REDIS_PREFIX", |v| {
                let ok = (1..=32).contains(&v.len())
                    && v.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
                if ok { Ok(v.to_owned()) } else { Err("must be 1 to 32 of a-z 0-9 _ -".into()) }
            })
            .unwrap_or_else(|| "atlas".into());
        let db_max_connections = r.number("DB_MAX_CONNECTIONS", 10, 1, 200);
        let referral_percent = r.number("REFERRAL_PERCENT", 10, 0, 100);
        let withdrawal_min = r
            .parsed("WITHDRAWAL_MIN", |v| Money::parse(v).map_err(|e| e.to_string()))
            .unwrap_or(Money::from_minor(10_000).expect("100.00 is a valid amount"));
        let trial_days = r.number("TRIAL_DAYS", 3, 1, 30);
        let purchase_ttl_minutes = r.number("PURCHASE_TTL_MINUTES", 60, 5, 24 * 60);
        let webhook_url = r.parsed("WEBHOOK_URL", |v| url_with_scheme(v, &["https"]).map(|u| u.0));
        let vpn_panel_url = r.parsed("VPN_PANEL_URL", |v| url_with_scheme(v, &["http", "https"]));
        let vpn_panel_token = r.raw("VPN_PANEL_TOKEN").map(SecretString::from);
        let crypto_pay_token = r.raw("CRYPTO_PAY_TOKEN").map(SecretString::from);

        match (database_url, r.errors.is_empty()) {
            (Some(database_url), true) => Ok(Settings {
                app_env,
                database_url,
                redis_url,
                redis_ca_file,
                bot_token,
                admin_ids,
                coordination,
                redis_prefix,
                db_max_connections,
                referral_percent,
                withdrawal_min,
                trial_days,
                purchase_ttl_minutes,
                webhook_url,
                vpn_panel_url,
                vpn_panel_token,
                crypto_pay_token,
            }),
            _ => Err(ConfigErrors(r.errors)),
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
        self.admin_ids.contains(&user)
    }

    /// The effective settings, one `NAME=value` line each, secrets redacted.
    pub fn redacted_lines(&self) -> Vec<String> {
        let p = self.app_env.prefix();
        let set = |present: bool| if present { "<set, redacted>" } else { "<not set>" }.to_owned();
        let opt = |v: Option<String>| v.unwrap_or_else(|| "<not set>".into());
        vec![
            format!("APP_ENV={}", self.app_env.name()),
            format!("{p}_DATABASE_URL={}", self.database_url),
            format!("{p}_REDIS_URL={}", opt(self.redis_url.as_ref().map(ToString::to_string))),
            format!("{p}_REDIS_CA_FILE={}", opt(self.redis_ca_file.as_ref().map(|f| f.display().to_string()))),
            format!("{p}_BOT_TOKEN={}", opt(self.bot_token.as_ref().map(|t| format!("{}:<redacted>", t.bot_id())))),
            format!("{p}_ADMIN_IDS={}", self.admin_ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")),
            format!(
                "{p}_COORDINATION={}",
                match self.coordination {
                    CoordinationMode::Redis => "redis",
                    CoordinationMode::Memory => "memory",
                }
            ),
            format!("{p}_REDIS_PREFIX={}", self.redis_prefix),
            format!("{p}_DB_MAX_CONNECTIONS={}", self.db_max_connections),
            format!("{p}_REFERRAL_PERCENT={}", self.referral_percent),
            format!("{p}_WITHDRAWAL_MIN={}", self.withdrawal_min),
            format!("{p}_TRIAL_DAYS={}", self.trial_days),
            format!("{p}_PURCHASE_TTL_MINUTES={}", self.purchase_ttl_minutes),
            format!("{p}_WEBHOOK_URL={}", opt(self.webhook_url.as_ref().map(ToString::to_string))),
            format!("{p}_VPN_PANEL_URL={}", opt(self.vpn_panel_url.as_ref().map(ToString::to_string))),
            format!("{p}_VPN_PANEL_TOKEN={}", set(self.vpn_panel_token.is_some())),
            format!("{p}_CRYPTO_PAY_TOKEN={}", set(self.crypto_pay_token.is_some())),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_";

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigErrors> {
        let map: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(&|k| map.get(k).cloned())
    }

    #[test]
    fn reads_prefixed_variables_of_the_environment() {
        let s = settings(&[
            ("APP_ENV", "stage"),
            ("STAGE_DATABASE_URL", "postgres://atlas:hunter2@db:5432/atlas"),
            ("STAGE_REDIS_URL", "rediss://:sekret@cache:6380/0"),
            ("STAGE_BOT_TOKEN", TOKEN),
            ("STAGE_ADMIN_IDS", "1, 42"),
            ("PROD_DATABASE_URL", "postgres://ignored@x/y"),
        ])
        .unwrap();
        assert_eq!(s.app_env, AppEnv::Stage);
        assert_eq!(s.coordination, CoordinationMode::Redis);
        assert_eq!(s.admin_ids, vec![UserId::new(1).unwrap(), UserId::new(42).unwrap()]);
        assert_eq!(s.bot_token.as_ref().unwrap().bot_id(), 123456789);
        assert!(s.database_url.expose().contains("hunter2"));
    }

    #[test]
    fn prod_without_redis_url_names_the_variable() {
        let err =
            settings(&[("APP_ENV", "prod"), ("PROD_DATABASE_URL", "postgres://db/atlas"), ("PROD_BOT_TOKEN", TOKEN)])
                .unwrap_err();
        assert!(err.to_string().contains("PROD_REDIS_URL: is required"), "{err}");
    }

    #[test]
    fn prod_refuses_memory_coordination() {
        let err = settings(&[
            ("APP_ENV", "prod"),
            ("PROD_DATABASE_URL", "postgres://db/atlas"),
            ("PROD_REDIS_URL", "redis://cache"),
            ("PROD_BOT_TOKEN", TOKEN),
            ("PROD_COORDINATION", "memory"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("PROD_COORDINATION"), "{err}");
    }

    #[test]
    fn every_bad_value_is_reported() {
        let err = settings(&[
            ("LOCAL_DATABASE_URL", "mysql://db/atlas"),
            ("LOCAL_REDIS_URL", "not a url"),
            ("LOCAL_BOT_TOKEN", "nonsense"),
            ("LOCAL_ADMIN_IDS", "1,x"),
            ("LOCAL_REFERRAL_PERCENT", "101"),
            ("LOCAL_WITHDRAWAL_MIN", "-3"),
            ("LOCAL_REDIS_CA_FILE", "/nonexistent/ca.pem"),
        ])
        .unwrap_err();
        for var in [
            "LOCAL_DATABASE_URL",
            "LOCAL_REDIS_URL",
            "LOCAL_BOT_TOKEN",
            "LOCAL_ADMIN_IDS",
            "LOCAL_REFERRAL_PERCENT",
            "LOCAL_WITHDRAWAL_MIN",
            "LOCAL_REDIS_CA_FILE",
        ] {
            assert!(err.to_string().contains(var), "{var} missing from:\n{err}");
        }
        assert!(!err.to_string().contains("nonsense"), "a bad token must not be echoed:\n{err}");
        assert_eq!(settings(&[("APP_ENV", "qa")]).unwrap_err().0.len(), 1);
    }

    #[test]
    fn secrets_never_print() {
        let s = settings(&[
            ("LOCAL_DATABASE_URL", "postgres://atlas:hunter2@db/atlas"),
            ("LOCAL_REDIS_URL", "redis://:sekret@cache"),
            ("LOCAL_BOT_TOKEN", TOKEN),
            ("LOCAL_VPN_PANEL_TOKEN", "paneltoken123"),
            ("LOCAL_CRYPTO_PAY_TOKEN", "cryptotoken456"),
        ])
        .unwrap();
        let shown = format!("{s:?}\n{}", s.redacted_lines().join("\n"));
        for secret in ["hunter2", "sekret", "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_", "paneltoken123", "cryptotoken456"] {
            assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
        }
        assert!(shown.contains("LOCAL_DATABASE_URL=postgres://atlas:***@db/atlas"), "{shown}");
    }

    #[test]
    fn local_defaults_to_memory_coordination_without_redis() {
        let s = settings(&[("LOCAL_DATABASE_URL", "postgres://db/atlas")]).unwrap();
        assert_eq!(s.coordination, CoordinationMode::Memory);
        assert_eq!(s.withdrawal_min.minor(), 10_000);
        let err =
            settings(&[("LOCAL_DATABASE_URL", "postgres://db/atlas"), ("LOCAL_COORDINATION", "redis")]).unwrap_err();
        assert!(err.to_string().contains("LOCAL_REDIS_URL"), "{err}");
    }
}
