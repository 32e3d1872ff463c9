//! Live clients of the outside services the shop depends on, over the project's HTTP client (so
//! the same code runs over turmoil in the simulation): the VPN panel ([`outline`]) and the crypto
//! payment provider ([`cryptopay`]), each behind [`resilience`] (bounded retries with jitter, a
//! circuit breaker). An instance configured without one runs with [`unavailable`] in its place:
//! the bot answers every user, and what needs the missing service says it is not available now.

pub mod cryptopay;
pub mod outline;
pub mod resilience;
pub mod unavailable;
