//! The `atlas-bot` command line as an operator uses it: `check-config` and `migrate`, with
//! settings from the environment and from a `.env` file, against the real PostgreSQL server.

use std::path::PathBuf;
use std::process::{Command, Output};

use sqlx::Connection as _;

const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_";

fn server_url() -> String {
    std::env::var("ATLAS_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Runs atlas-bot in a scratch directory with only the given variables (plus PATH).
fn atlas_bot(args: &[&str], vars: &[(&str, &str)], dotenv: Option<&str>) -> Output {
    let dir = scratch_dir();
    if let Some(text) = dotenv {
        std::fs::write(dir.join(".env"), text).unwrap();
    }
    let output = Command::new(env!("CARGO_BIN_EXE_atlas-bot"))
        .args(args)
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().copied())
        .output()
        .expect("atlas-bot runs");
    let _ = std::fs::remove_dir_all(&dir);
    output
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("atlas-cli-{}-{:08x}", std::process::id(), getrandom::u32().unwrap()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn prod_without_redis_url_refuses_to_start_and_names_the_variable() {
    let out = atlas_bot(
        &["check-config"],
        &[("APP_ENV", "prod"), ("PROD_DATABASE_URL", "postgres://db/atlas"), ("PROD_BOT_TOKEN", TOKEN)],
        None,
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("PROD_REDIS_URL"), "{}", text(&out));
}

#[test]
fn check_config_prints_effective_settings_with_secrets_redacted() {
    let out = atlas_bot(
        &["check-config"],
        &[
            ("APP_ENV", "stage"),
            ("STAGE_DATABASE_URL", "postgres://atlas:hunter2@db:5432/atlas"),
            ("STAGE_REDIS_URL", "rediss://default:sekret@cache:6380"),
            ("STAGE_BOT_TOKEN", TOKEN),
            ("STAGE_ADMIN_IDS", "42"),
        ],
        None,
    );
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("STAGE_DATABASE_URL=postgres://atlas:***@db:5432/atlas"), "{shown}");
    assert!(shown.contains("STAGE_COORDINATION=redis"), "{shown}");
    assert!(shown.contains("STAGE_ADMIN_IDS=42"), "{shown}");
    for secret in ["hunter2", "sekret", "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_"] {
        assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
    }
}

#[test]
fn dotenv_file_supplies_what_the_environment_does_not() {
    let out = atlas_bot(
        &["check-config"],
        &[("LOCAL_REFERRAL_PERCENT", "15")],
        Some("LOCAL_DATABASE_URL=postgres://from-dotenv/atlas\nLOCAL_REFERRAL_PERCENT=99\n"),
    );
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("LOCAL_DATABASE_URL=postgres://from-dotenv/atlas"), "{shown}");
    assert!(shown.contains("LOCAL_REFERRAL_PERCENT=15"), "the environment wins over .env:\n{shown}");
}

#[test]
fn unknown_command_prints_usage_and_fails() {
    let out = atlas_bot(&["launch-rockets"], &[], None);
    assert!(!out.status.success());
    assert!(text(&out).contains("usage: atlas-bot"));
}

#[tokio::test]
async fn migrate_applies_the_schema_once() {
    let name = format!("atlas_cli_{}_{:08x}", std::process::id(), getrandom::u32().unwrap());
    let mut admin =
        sqlx::PgConnection::connect(&format!("{}/postgres", server_url())).await.expect("PostgreSQL is reachable");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    let url = format!("{}/{name}", server_url());
    for _ in 0..2 {
        let out = atlas_bot(&["migrate"], &[("LOCAL_DATABASE_URL", &url)], None);
        assert!(out.status.success(), "{}", text(&out));
    }
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name IN
         ('users', 'balance_ledger', 'promo_codes', 'withdrawal_requests', 'notice_deliveries')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, 5);
    let _ = conn.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&mut admin).await.unwrap();
    // An unreachable database is a clear failure, not a hang.
    let out = atlas_bot(&["migrate"], &[("LOCAL_DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")], None);
    assert!(!out.status.success());
    assert!(text(&out).contains("cannot connect to PostgreSQL"), "{}", text(&out));
}

fn redis_url() -> String {
    std::env::var("ATLAS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[test]
fn preflight_in_prod_refuses_an_unreachable_redis_and_names_the_variable() {
    let db = format!("{}/postgres", server_url());
    let ok = atlas_bot(
        &["preflight"],
        &[("APP_ENV", "prod"), ("PROD_DATABASE_URL", &db), ("PROD_REDIS_URL", &redis_url()), ("PROD_BOT_TOKEN", TOKEN)],
        None,
    );
    assert!(ok.status.success(), "{}", text(&ok));
    let down = atlas_bot(
        &["preflight"],
        &[
            ("APP_ENV", "prod"),
            ("PROD_DATABASE_URL", &db),
            ("PROD_REDIS_URL", "redis://:sekret@127.0.0.1:1"),
            ("PROD_BOT_TOKEN", TOKEN),
        ],
        None,
    );
    let shown = text(&down);
    assert!(!down.status.success());
    assert!(shown.contains("PROD_REDIS_URL"), "{shown}");
    assert!(!shown.contains("sekret"), "{shown}");
}
