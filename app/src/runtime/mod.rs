//! The process around the core: configuration, the live clock and randomness, logging.

pub mod config;
pub mod intake;
pub mod leader;
pub mod live;
pub mod preflight;
pub mod telemetry;

pub use config::{AppEnv, CoordinationMode, Settings};
