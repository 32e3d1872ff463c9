//! Logging: human-readable lines on stderr, filtered by `RUST_LOG` (default `info`).
//! Secrets never reach a log line: the settings types redact them, and the code logs ids and
//! amounts, never tokens, URLs with passwords, keys or requisites.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
