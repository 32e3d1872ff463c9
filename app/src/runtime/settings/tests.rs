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
    let CoordinationSetting::Redis(redis) = &s.coordination else { panic!("redis expected") };
    assert_eq!(redis.prefix, "atlas");
    assert_eq!(s.telegram.admins, vec![UserId::new(1).unwrap(), UserId::new(42).unwrap()]);
    assert_eq!(s.telegram.bot_token.as_ref().unwrap().bot_id(), 123456789);
    assert!(s.database.url.expose().contains("hunter2"));
}

#[test]
fn prod_without_redis_url_names_the_variable() {
    let err = settings(&[("APP_ENV", "prod"), ("PROD_DATABASE_URL", "postgres://db/atlas"), ("PROD_BOT_TOKEN", TOKEN)])
        .unwrap_err();
    assert!(err.to_string().contains("PROD_REDIS_URL: is required"), "{err}");
}

#[test]
fn prod_refuses_the_legacy_design() {
    let err = settings(&[
        ("APP_ENV", "prod"),
        ("PROD_DATABASE_URL", "postgres://db/atlas"),
        ("PROD_REDIS_URL", "redis://cache"),
        ("PROD_BOT_TOKEN", TOKEN),
        ("PROD_COORDINATION", "legacy"),
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
        ("LOCAL_COORDINATION", "memory"),
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
        "LOCAL_COORDINATION",
    ] {
        assert!(err.to_string().contains(var), "{var} missing from:\n{err}");
    }
    assert!(!err.to_string().contains("nonsense"), "a bad token must not be echoed:\n{err}");
    assert_eq!(settings(&[("APP_ENV", "qa")]).unwrap_err().0.len(), 1);
}

#[test]
fn secrets_never_print() {
    // Every variable the table marks secret, set to a value of its shape, plus passwords in URLs.
    let mut vars: Vec<(String, String)> = vec![
        ("LOCAL_DATABASE_URL".into(), "postgres://atlas:hunter2@db/atlas".into()),
        ("LOCAL_REDIS_URL".into(), "redis://:sekret@cache".into()),
        // A webhook, so that its secret is held and not merely ignored.
        ("LOCAL_WEBHOOK_URL".into(), "https://bot.example/tg".into()),
    ];
    let mut secrets = vec!["hunter2".to_owned(), "sekret".to_owned()];
    for &var in Var::ALL.iter().filter(|v| v.spec().secret) {
        let secret = format!("secret{}value", var.spec().key);
        let value = match var {
            Var::BotToken => TOKEN.to_owned(),
            // Outline's API URL: the secret is its path.
            Var::VpnPanelUrl => format!("http://panel.example:8443/{secret}"),
            _ => secret.clone(),
        };
        secrets.push(if var == Var::BotToken { value.split_once(':').unwrap().1.to_owned() } else { secret });
        vars.push((AppEnv::Local.variable(var), value));
    }
    assert!(secrets.len() >= 5, "the table marks the bot token and both provider tokens secret");
    let borrowed: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let s = settings(&borrowed).unwrap();
    let shown = format!("{s:?}\n{}", s.redacted_lines().join("\n"));
    for secret in &secrets {
        assert!(!shown.contains(secret.as_str()), "{secret} leaked:\n{shown}");
    }
    assert!(shown.contains("LOCAL_DATABASE_URL=postgres://atlas:***@db/atlas"), "{shown}");
    assert!(shown.contains("LOCAL_VPN_PANEL_URL=<set, redacted>"), "{shown}");
}

#[test]
fn check_config_lists_every_variable_of_the_table() {
    let s = settings(&[("LOCAL_DATABASE_URL", "postgres://db/atlas")]).unwrap();
    let lines = s.redacted_lines();
    assert_eq!(lines.len(), Var::ALL.len() + 1);
    for &var in Var::ALL {
        let name = format!("LOCAL_{}=", var.spec().key);
        assert!(lines.iter().any(|l| l.starts_with(&name)), "{name} is not listed");
    }
}

#[test]
fn local_defaults_to_the_legacy_design_without_redis() {
    let s = settings(&[("LOCAL_DATABASE_URL", "postgres://db/atlas")]).unwrap();
    assert!(matches!(s.coordination, CoordinationSetting::Legacy));
    assert_eq!(s.shop.withdrawal_min.minor(), 10_000);
    let err = settings(&[("LOCAL_DATABASE_URL", "postgres://db/atlas"), ("LOCAL_COORDINATION", "redis")]).unwrap_err();
    assert!(err.to_string().contains("LOCAL_REDIS_URL"), "{err}");
}

/// The defaults the table shows are the defaults: setting every variable to its table default
/// gives the same settings as setting none.
#[test]
fn the_table_defaults_are_the_effective_defaults() {
    let base = [("LOCAL_DATABASE_URL", "postgres://db/atlas"), ("LOCAL_REDIS_URL", "redis://cache")];
    let unset = settings(&base).unwrap();
    let mut vars: Vec<(String, String)> = base.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for &var in Var::ALL {
        if let WhenUnset::Value(value) = var.spec().default {
            vars.push((AppEnv::Local.variable(var), value.to_owned()));
        }
    }
    let borrowed: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let set = settings(&borrowed).unwrap();
    assert_eq!(unset.redacted_lines(), set.redacted_lines());
    assert_eq!(unset.shop, set.shop);
}

#[test]
fn the_old_name_of_the_legacy_design_says_what_to_set() {
    let err = settings(&[("LOCAL_DATABASE_URL", "postgres://db/atlas"), ("LOCAL_COORDINATION", "memory")]).unwrap_err();
    assert!(err.to_string().contains("LOCAL_COORDINATION: memory is now called legacy"), "{err}");
}

#[test]
fn the_intake_follows_the_webhook_url_and_needs_its_secret() {
    let db = ("LOCAL_DATABASE_URL", "postgres://db/atlas");
    let polling = settings(&[db]).unwrap();
    assert!(matches!(polling.server.intake, Intake::Polling));
    assert_eq!(polling.server.http_listen.to_string(), "0.0.0.0:8080");
    assert_eq!(polling.server.telegram_api.as_str(), "https://api.telegram.org/");
    let webhook =
        settings(&[db, ("LOCAL_WEBHOOK_URL", "https://bot.example/tg/hook"), ("LOCAL_WEBHOOK_SECRET", "s3cr3t_-")])
            .unwrap();
    let Intake::Webhook { url, max_connections, .. } = &webhook.server.intake else { panic!("a webhook") };
    assert_eq!((url.path(), *max_connections), ("/tg/hook", 40));
    let err = settings(&[db, ("LOCAL_WEBHOOK_URL", "https://bot.example/tg")]).unwrap_err();
    assert!(err.to_string().contains("LOCAL_WEBHOOK_SECRET: is required"), "{err}");
    let err = settings(&[db, ("LOCAL_INTAKE", "webhook"), ("LOCAL_WEBHOOK_SECRET", "x")]).unwrap_err();
    assert!(err.to_string().contains("LOCAL_WEBHOOK_URL: is required"), "{err}");
    let err =
        settings(&[db, ("LOCAL_INTAKE", "polling"), ("LOCAL_WEBHOOK_URL", "https://bot.example/tg")]).unwrap_err();
    assert!(err.to_string().contains("LOCAL_INTAKE"), "{err}");
    let err = settings(&[
        ("APP_ENV", "stage"),
        ("STAGE_DATABASE_URL", "postgres://db/atlas"),
        ("STAGE_BOT_TOKEN", TOKEN),
        ("STAGE_WEBHOOK_URL", "http://bot.example/tg"),
        ("STAGE_WEBHOOK_SECRET", "bad secret!"),
    ])
    .unwrap_err();
    assert!(err.to_string().contains("STAGE_WEBHOOK_URL") && err.to_string().contains("STAGE_WEBHOOK_SECRET"), "{err}");
    assert!(!err.to_string().contains("bad secret!"), "a secret is never echoed:\n{err}");
    let err = settings(&[db, ("LOCAL_HTTP_LISTEN", "everywhere"), ("LOCAL_SHUTDOWN_TIMEOUT", "0")]).unwrap_err();
    assert!(
        err.to_string().contains("LOCAL_HTTP_LISTEN") && err.to_string().contains("LOCAL_SHUTDOWN_TIMEOUT"),
        "{err}"
    );
}

#[test]
fn providers_are_refused_naming_the_variable() {
    let base = [
        ("APP_ENV", "stage"),
        ("STAGE_DATABASE_URL", "postgres://db/atlas"),
        ("STAGE_REDIS_URL", "redis://r"),
        ("STAGE_BOT_TOKEN", TOKEN),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut vars = base.to_vec();
        vars.extend_from_slice(extra);
        settings(&vars)
    };
    let pin = "4EFF7BB90BCE5D4A172D338DC91B5B9975E197E39E3FA4FC42353763C4E58765";
    let ok = with(&[("STAGE_VPN_PANEL_URL", "https://1.2.3.4:51083/xlUG4F5"), ("STAGE_VPN_PANEL_CERT_SHA256", pin)]);
    assert_eq!(ok.unwrap().providers.vpn_panel_cert_sha256.map(hex::encode).unwrap(), pin.to_lowercase());
    let no_pin = with(&[("STAGE_VPN_PANEL_URL", "https://1.2.3.4:51083/xlUG4F5")]).unwrap_err().to_string();
    assert!(no_pin.contains("STAGE_VPN_PANEL_CERT_SHA256: is required"), "{no_pin}");
    let bad_pin = with(&[("STAGE_VPN_PANEL_URL", "https://h/x"), ("STAGE_VPN_PANEL_CERT_SHA256", "abc")]);
    assert!(bad_pin.unwrap_err().to_string().contains("STAGE_VPN_PANEL_CERT_SHA256: must be 64 hex digits"));
    let clear = with(&[("STAGE_VPN_PANEL_URL", "http://1.2.3.4:51083/xlUG4F5")]).unwrap_err().to_string();
    assert!(clear.contains("STAGE_VPN_PANEL_URL: must start with https://"), "{clear}");
    assert!(!clear.contains("xlUG4F5"), "the secret path is not echoed: {clear}");
    for taken in ["/metrics", "/healthz"] {
        let err = with(&[("STAGE_CRYPTO_PAY_WEBHOOK_PATH", taken)]).unwrap_err().to_string();
        assert!(err.contains("STAGE_CRYPTO_PAY_WEBHOOK_PATH: is already a route"), "{err}");
    }
}
