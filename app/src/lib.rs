//! Atlas Secure: a Telegram bot that sells VPN subscriptions, built to run as several instances
//! at once on Redis and PostgreSQL.
//!
//! The core (`domain`, `services`, and the conversations and workers to come) knows the outside
//! world only through the traits in [`ports`]. Adapters live beside it: `store` (PostgreSQL),
//! `coord` (Redis, and the legacy in-memory design). `runtime` is the composition root: it alone
//! reads the settings and wires adapters into the one assembly (`runtime::wiring`) that
//! `atlas-bot`, the tests and the simulation in `atlas-sim` all run.

pub mod bot;
pub mod coord;
pub mod domain;
pub mod net;
pub mod ports;
pub mod providers;
pub mod runtime;
pub mod services;
pub mod store;
pub mod telegram;
pub mod workers;
