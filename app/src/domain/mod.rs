//! Pure types and rules of the shop: money, users, tariffs, promo codes, withdrawals.
//! Nothing here performs I/O; parsers turn user input into these types or say what is wrong.

pub mod money;
pub mod promo;
pub mod types;
pub mod withdrawal;

pub use money::{AmountError, Money};
pub use promo::{PromoCode, PromoCodeError};
pub use types::*;
pub use withdrawal::{Requisites, RequisitesError};
