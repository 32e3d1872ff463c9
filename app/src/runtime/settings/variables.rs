//! Every configuration variable, once: its name (after the `APP_ENV` prefix), when it is
//! required, its default and what it means. Parsing reads names and defaults from here, the
//! redacted listing walks this table, and a test holds the README's table to it.

macro_rules! variables {
    ($($var:ident => ($key:literal, $required:literal, $default:expr, $meaning:literal, $secret:literal)),+ $(,)?) => {
        /// A configuration variable.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Var {
            $($var),+
        }

        impl Var {
            /// Every variable, in the order the README and `check-config` list them.
            pub const ALL: &'static [Var] = &[$(Var::$var),+];

            pub fn spec(self) -> &'static Spec {
                match self {
                    $(Var::$var => &Spec { key: $key, required: $required, default: $default, meaning: $meaning, secret: $secret }),+
                }
            }
        }
    };
}

/// How a variable is documented and treated.
#[derive(Debug)]
pub struct Spec {
    /// The name after the environment's prefix (`DATABASE_URL` is read as `PROD_DATABASE_URL`).
    pub key: &'static str,
    /// When it must be set.
    pub required: &'static str,
    /// Used when the variable is not set: a value parsed exactly as if it had been set, or the
    /// words that say what happens without it.
    pub default: WhenUnset,
    pub meaning: &'static str,
    /// Never shown: `check-config` prints only whether it is set.
    pub secret: bool,
}

#[derive(Debug)]
pub enum WhenUnset {
    /// Unset means this value.
    Value(&'static str),
    /// Unset means what the words say (no value is parsed).
    Words(&'static str),
}

use WhenUnset::{Value, Words};

variables! {
    DatabaseUrl => ("DATABASE_URL", "always", Words("—"), "`postgres://` or `postgresql://` URL", false),
    RedisUrl => ("REDIS_URL", "in `prod`, or with `COORDINATION=redis`", Words("—"), "`redis://` or `rediss://` (TLS) URL", false),
    RedisCaFile => ("REDIS_CA_FILE", "no", Words("web PKI roots only"), "a PEM file of extra CA certificates to trust for `rediss://` (a Redis with a private CA)", false),
    BotToken => ("BOT_TOKEN", "in `stage` and `prod`", Words("—"), "the token from @BotFather (`<bot id>:<secret>`); only the bot id is ever shown", true),
    AdminIds => ("ADMIN_IDS", "no", Words("none"), "comma-separated Telegram user ids allowed to use admin tools", false),
    Coordination => ("COORDINATION", "no", Words("`redis` when `REDIS_URL` is set, else `legacy`"), "`redis` (shared by all instances) or `legacy` (the old single-instance, in-memory design); `prod` requires `redis`", false),
    RedisPrefix => ("REDIS_PREFIX", "no", Value("atlas"), "first part of every Redis key (`a-z 0-9 _ -`, up to 32)", false),
    DbMaxConnections => ("DB_MAX_CONNECTIONS", "no", Value("10"), "PostgreSQL pool size (1–200)", false),
    ReferralPercent => ("REFERRAL_PERCENT", "no", Value("10"), "share of a referred user's purchase credited to the referrer (0–100)", false),
    WithdrawalMin => ("WITHDRAWAL_MIN", "no", Value("100"), "smallest withdrawal, in roubles (`150`, `150.50`)", false),
    TrialDays => ("TRIAL_DAYS", "no", Value("3"), "length of the free trial (1–30)", false),
    PurchaseTtlMinutes => ("PURCHASE_TTL_MINUTES", "no", Value("60"), "how long a crypto/Stars purchase waits for payment (5–1440)", false),
    StarPrice => ("STAR_PRICE", "no", Value("1.50"), "what one Telegram Star costs the buyer, in roubles (prices in Stars are rounded up)", false),
    SupportContact => ("SUPPORT_CONTACT", "no", Value("@atlas_support"), "where the Support button sends users (a @username or a link)", false),
    WebhookUrl => ("WEBHOOK_URL", "with `INTAKE=webhook`", Words("long polling"), "`https://` URL to receive updates by webhook (`http://` too in `local`); its path is the route the bot serves", false),
    Intake => ("INTAKE", "no", Words("`webhook` when `WEBHOOK_URL` is set, else `polling`"), "`webhook` (any number of instances behind one URL) or `polling` (one poller, elected among the instances)", false),
    WebhookSecret => ("WEBHOOK_SECRET", "with `INTAKE=webhook`", Words("—"), "1–256 of `A-Z a-z 0-9 _ -`; Telegram sends it back with every update", true),
    WebhookMaxConnections => ("WEBHOOK_MAX_CONNECTIONS", "no", Value("40"), "connections Telegram may open to the webhook at once (1–100)", false),
    TelegramApiUrl => ("TELEGRAM_API_URL", "no", Value("https://api.telegram.org"), "the Bot API server (a local Bot API server, or a test's fake)", false),
    SendLimits => ("SEND_LIMITS", "no", Value("on"), "`on`: keep Telegram's sending limits (per chat a burst, then about 1 a second; 30 a second in all); `off` only against a local Bot API server or in a load benchmark", false),
    HttpListen => ("HTTP_LISTEN", "no", Value("0.0.0.0:8080"), "address of the HTTP server: the webhook route, `/healthz`, `/readyz`, `/metrics`", false),
    UpdatesInFlightMax => ("UPDATES_IN_FLIGHT_MAX", "no", Value("256"), "updates one instance handles at once; over it the webhook answers 503 and Telegram delivers again (1–10000)", false),
    Workers => ("WORKERS", "no", Value("on"), "`on`: this instance runs the background work (payment watcher, reminders, notices, expiry cleanup, broadcasts under leader leases; auto-renewal and key activation on every instance); `off` for an instance that only answers updates", false),
    WorkerInterval => ("WORKER_INTERVAL", "no", Value("10"), "seconds between two rounds of a background worker that found less than a batch (1–3600)", false),
    ShutdownTimeout => ("SHUTDOWN_TIMEOUT", "no", Value("25"), "seconds in-flight updates and workers get to finish after SIGTERM (1–300)", false),
    VpnPanelUrl => ("VPN_PANEL_URL", "no", Words("— (keys cannot be issued)"), "the Outline server's management API URL as its installer prints it (`apiUrl`, with the secret path; secret)", true),
    VpnPanelCertSha256 => ("VPN_PANEL_CERT_SHA256", "with an `https://` `VPN_PANEL_URL`", Words("—"), "the SHA-256 of the panel's certificate as the installer prints it (`certSha256`, 64 hex digits): the only certificate the client accepts", false),
    CryptoPayToken => ("CRYPTO_PAY_TOKEN", "no", Words("— (crypto payments off)"), "the Crypto Pay app's API token (secret)", true),
    CryptoPayApiUrl => ("CRYPTO_PAY_API_URL", "no", Value("https://pay.crypt.bot"), "the Crypto Pay API (`https://testnet-pay.crypt.bot` for the testnet)", false),
    CryptoPayWebhookPath => ("CRYPTO_PAY_WEBHOOK_PATH", "no", Value("/crypto-pay/webhook"), "the path on `HTTP_LISTEN` of Crypto Pay's `invoice_paid` webhook (set the same URL in @CryptoBot's app settings)", false),
}

/// The README's configuration table, rendered from this file.
pub fn readme_table() -> String {
    let mut out = String::from("| variable (after the prefix) | required | default | meaning |\n|---|---|---|---|\n");
    for var in Var::ALL {
        let spec = var.spec();
        let default = match spec.default {
            Value(value) => value,
            Words(words) => words,
        };
        out.push_str(&format!("| `{}` | {} | {default} | {} |\n", spec.key, spec.required, spec.meaning));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_shows_this_table() {
        let readme = include_str!("../../../../README.md");
        let table = readme_table();
        assert!(
            readme.contains(&table),
            "README.md's configuration table differs from app/src/runtime/settings/variables.rs; it should read:\n{table}"
        );
    }

    #[test]
    fn names_are_unique() {
        let mut keys: Vec<&str> = Var::ALL.iter().map(|v| v.spec().key).collect();
        keys.sort_unstable();
        let before = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), before);
    }
}
