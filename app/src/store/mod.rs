//! Adapters of the Store port. PostgreSQL is the live one; the simulation has its own model.

pub mod postgres;

pub use postgres::{MIGRATOR, PgStore};
