//! `atlas-bot`: the production bot's command line. Thin on purpose: it reads the settings and
//! hands them to the library.

use std::path::Path;
use std::process::ExitCode;

use std::sync::Arc;

use atlas::runtime::live::{OsIds, SystemClock};
use atlas::runtime::{Settings, preflight, telemetry, wiring};

const USAGE: &str = "usage: atlas-bot <command>

commands:
  check-config   print the effective settings (secrets redacted) and exit
  migrate        apply the database migrations and exit
  preflight      check that PostgreSQL and (with COORDINATION=redis) Redis answer, and exit

Settings come from APP_ENV-prefixed variables (e.g. PROD_DATABASE_URL) and an optional .env
file in the working directory; see README.md.";

fn main() -> ExitCode {
    telemetry::init();
    let command = std::env::args().nth(1);
    let settings = match command.as_deref() {
        Some("check-config" | "migrate" | "preflight") => match Settings::load(Some(Path::new(".env"))) {
            Ok(settings) => settings,
            Err(errors) => {
                eprintln!("configuration is invalid:\n{errors}");
                return ExitCode::from(2);
            }
        },
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command.as_deref() {
        Some("check-config") => {
            for line in settings.redacted_lines() {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Some("preflight") => match block_on(check(&settings)) {
            Ok(()) => {
                println!("PostgreSQL and Redis answer");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("preflight failed: {err:#}");
                ExitCode::FAILURE
            }
        },
        _ => match block_on(migrate(&settings)) {
            Ok(()) => {
                println!("migrations applied");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("migrate failed: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn block_on<T>(work: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(work)
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let store = wiring::live_store(settings, 2).await.map_err(anyhow::Error::msg)?;
    store.migrate().await
}

async fn check(settings: &Settings) -> anyhow::Result<()> {
    let ids = Arc::new(OsIds::new()?);
    preflight::preflight(settings, Arc::new(SystemClock::new()), ids).await.map_err(anyhow::Error::msg)
}
