//! The bot's own log lines during a replay (`ATLAS_SIM_LOG`): stamped with simulated time, never
//! the machine's clock, so the lines read against the trace.

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// Simulated time since the start of the run, as the trace writes it.
struct Simulated;

impl FormatTime for Simulated {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let at = turmoil::sim_elapsed().unwrap_or_default();
        write!(w, "{:>10.3}s", at.as_secs_f64())
    }
}

/// Sends log lines passing `filter` (an `EnvFilter` directive such as `info` or `atlas=debug`)
/// to stderr.
pub fn to_stderr(filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("ATLAS_SIM_LOG is not a log filter: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(Simulated)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init()
        .map_err(|e| anyhow::anyhow!("logging already set up: {e}"))
}
