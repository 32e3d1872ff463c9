//! `atlas-bot`: the production bot's command line. Thin on purpose: it reads the settings and
//! hands them to the library.

use std::path::Path;
use std::process::ExitCode;

use std::sync::Arc;

use atlas::runtime::live::{OsIds, SystemClock};
use atlas::runtime::{Settings, preflight, telemetry, wiring};

const USAGE: &str = "usage: atlas-bot <command>

commands:
  run            run the bot: take updates (webhook or polling), answer, until SIGTERM/SIGINT
  check-config   print the effective settings (secrets redacted) and exit
  migrate        apply the database migrations and exit
  preflight      check that PostgreSQL and (with COORDINATION=redis) Redis answer, and exit

Settings come from APP_ENV-prefixed variables (e.g. PROD_DATABASE_URL) and an optional .env
file in the working directory; see README.md.";

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let command = std::env::args().nth(1);
    let settings = match command.as_deref() {
        Some("run" | "check-config" | "migrate" | "preflight") => match Settings::load(Some(Path::new(".env"))) {
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
    telemetry::init(settings.app_env);
    match command.as_deref() {
        Some("run") => run(&settings),
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

/// `atlas-bot run`: 0 after a clean shutdown, 1 when the bot cannot start or meets another
/// poller (`POLLING_CONFLICT_DETECTED`). A second SIGTERM/SIGINT exits at once (130).
fn run(settings: &Settings) -> ExitCode {
    let metrics = match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        Ok(handle) => Some(handle),
        Err(e) => {
            eprintln!("metrics unavailable: {e}");
            None
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(wiring::run_live(settings, metrics, async {
        stop_signal().await;
        tracing::info!("stop signal received; a second one exits at once");
        tokio::spawn(async {
            stop_signal().await;
            eprintln!("second stop signal: exiting now");
            std::process::exit(130);
        });
    }));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = err.as_str(), "the bot stopped with an error");
            eprintln!("atlas-bot run: {err}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM or SIGINT (Ctrl-C).
async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "SIGTERM cannot be watched");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
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
