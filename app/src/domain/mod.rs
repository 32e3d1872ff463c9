//! Pure types and rules of the shop: ids, money, users, tariffs, promo codes, withdrawals, the
//! shop's policy. Nothing here performs I/O; parsers turn user input into these types or say
//! what is wrong.

pub mod ids;
pub mod keys;
pub mod money;
pub mod promo;
pub mod shop;
pub mod types;
pub mod withdrawal;

pub use ids::{BroadcastId, PromoId, PurchaseId, SubscriptionId, TopUpId, UserId, WithdrawalId};
pub use keys::{ACTIVATION_CLAIM, KeyFacts, KeyLabel, activation_backoff, is_orphan};
pub use money::{AMOUNT_MAX, AmountError, Money, Percent, PercentError};
pub use promo::{PromoCode, PromoCodeError};
pub use shop::ShopPolicy;
pub use types::*;
pub use withdrawal::{REQUISITES_LEN_MAX, REQUISITES_LEN_MIN, Requisites, RequisitesError};
