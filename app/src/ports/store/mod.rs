//! The store: users, subscriptions, keys and every money operation, each with the guarantee the
//! audit found in the old system (parts 2-4). Split by who uses it: [`Accounts`] (users and
//! balances), [`Purchases`] (the catalogue, purchases, provider payments, referral rewards),
//! [`Promos`], [`Withdrawals`], [`Subscriptions`] (trial, auto-renewal, activation, keys) and
//! [`Notices`], [`AdminTools`] and [`Broadcasts`]; [`Store`] is all of them. Live: PostgreSQL (`crate::store::PgStore`); simulation:
//! a model behind an RPC, kept honest by a differential test.
//!
//! Every operation that takes `now` uses it for what it stores and decides (expiry, promo
//! validity); the caller reads it from the Clock port. A refused operation writes nothing.

mod accounts;
mod admin;
mod broadcasts;
mod notices;
mod promos;
mod purchases;
mod subscriptions;
mod withdrawals;

pub use accounts::*;
pub use admin::*;
pub use broadcasts::*;
pub use notices::*;
pub use promos::*;
pub use purchases::*;
pub use subscriptions::*;
pub use withdrawals::*;

/// A provider's invoice, as purchases and top-ups keep it.
pub use crate::ports::payments::Invoice;

/// Errors every operation may return besides its own refusals.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The operation took effect now.
    Done,
    /// It had already taken effect (a redelivered callback, a replayed key): nothing changed.
    Duplicate,
}

/// Whether the store can serve this instance (for `/readyz` and start-up).
pub trait Health: Send + Sync + 'static {
    /// The database answers and every migration this build knows is applied.
    fn ready(&self) -> impl std::future::Future<Output = Result<(), StoreError>> + Send;
}

/// The whole store: what an instance of the bot is given.
pub trait Store:
    Accounts + Purchases + Promos + Withdrawals + Subscriptions + Notices + AdminTools + Broadcasts + Health
{
}

impl<T> Store for T where
    T: Accounts + Purchases + Promos + Withdrawals + Subscriptions + Notices + AdminTools + Broadcasts + Health
{
}
