//! Atlas Secure: a Telegram bot that sells VPN subscriptions, built to run as several instances
//! at once on Redis and PostgreSQL.
//!
//! The core (`domain`, and later `dialogues` and `workers`) knows the outside world only through
//! the traits in [`ports`]; adapters live beside it (`store` for PostgreSQL, `runtime` for the
//! process: configuration, system clock, OS randomness). The simulation in `atlas-sim` plugs its
//! own adapters into the same ports.

pub mod coord;
pub mod domain;
pub mod ports;
pub mod runtime;
pub mod services;
pub mod store;
