//! `atlas-bot`: the production bot's command line. Thin on purpose: it reads the settings and
//! hands them to the library.

use std::path::Path;
use std::process::ExitCode;

use atlas::runtime::{Settings, telemetry};
use atlas::store::PgStore;

const USAGE: &str = "usage: atlas-bot <command>

commands:
  check-config   print the effective settings (secrets redacted) and exit
  migrate        apply the database migrations and exit

Settings come from APP_ENV-prefixed variables (e.g. PROD_DATABASE_URL) and an optional .env
file in the working directory; see README.md.";

fn main() -> ExitCode {
    telemetry::init();
    let command = std::env::args().nth(1);
    let settings = match command.as_deref() {
        Some("check-config" | "migrate") => match Settings::load(Some(Path::new(".env"))) {
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
        _ => match migrate(&settings) {
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

fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let store = PgStore::connect(settings.database_url.expose(), 2).await?;
        store.migrate().await
    })
}
