//! The composition root and the process around the core: settings, the wiring of adapters into
//! one assembly, the intake function and the leader loop every instance runs, the live clock and
//! randomness, start-up checks and logging. Only this module knows the settings; the layers below
//! take what they need as arguments.

pub mod agreed_clock;
pub mod gate;
pub mod http;
pub mod intake;
pub mod leader;
pub mod live;
pub mod payment_webhook;
pub mod poller;
pub mod preflight;
pub mod run;
pub mod settings;
pub mod telemetry;
pub mod webhook;
pub mod wiring;
pub mod workers;

pub use settings::{AppEnv, CoordinationSetting, Settings};
