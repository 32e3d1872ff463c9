//! Logging: JSON lines in `stage` and `prod` (for the log pipeline), readable lines locally; on
//! stderr, filtered by `RUST_LOG` (default `info`). Every line of an update's work carries its
//! correlation id (the `update` span). Secrets never reach a log line: the settings types redact
//! them, the Telegram client keeps the token out of every error, and the code logs ids and
//! amounts, never tokens, URLs with passwords, keys or requisites.

use tracing_subscriber::EnvFilter;

use super::AppEnv;

pub fn init(env: AppEnv) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match env {
        AppEnv::Local => builder.try_init(),
        AppEnv::Stage | AppEnv::Prod => builder.json().with_current_span(true).with_span_list(true).try_init(),
    };
}
