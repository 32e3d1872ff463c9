//! The traits the core needs from the outside world. Each has a live adapter in this crate and
//! a simulated one in `atlas-sim`; the core never names an adapter.

pub mod clock;
pub mod coordination;
pub mod ids;
pub mod messenger;
pub mod payments;
pub mod store;
pub mod vpn;

pub use clock::Clock;
pub use coordination::Coordination;
pub use ids::{Ids, SeededIds};
pub use messenger::Messenger;
pub use payments::PaymentProvider;
pub use store::Store;
pub use vpn::VpnProvider;
