//! Identifiers: a Telegram user, and the rows money and keys hang on (purchases, subscriptions,
//! withdrawals, promo codes). Each is its own type, so a purchase id can never be passed where a
//! withdrawal id is meant; all are positive (database sequences and Telegram ids start at 1).

use std::fmt;

macro_rules! positive_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "i64", into = "i64")]
        pub struct $name(i64);

        impl $name {
            pub fn new(raw: i64) -> Option<$name> {
                (raw > 0).then_some($name(raw))
            }

            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl TryFrom<i64> for $name {
            type Error = String;

            fn try_from(raw: i64) -> Result<$name, String> {
                $name::new(raw).ok_or_else(|| format!("{} {raw} is not positive", stringify!($name)))
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

positive_id!(
    /// A Telegram user id (Telegram ids fit in 52 bits). Taken from an update's `from.id`, never
    /// from anything a user can type or put in callback data.
    UserId
);
positive_id!(
    /// A purchase of a tariff period (paid from the balance, or pending at a provider).
    PurchaseId
);
positive_id!(
    /// A user's subscription (one per user).
    SubscriptionId
);
positive_id!(
    /// A withdrawal request.
    WithdrawalId
);
positive_id!(
    /// A promo code's row.
    PromoId
);
positive_id!(
    /// A top-up of the balance paid by a provider.
    TopUpId
);
positive_id!(
    /// An admin's broadcast, a job the workers send.
    BroadcastId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_and_round_trip_through_serde() {
        assert!(UserId::new(0).is_none());
        assert!(PurchaseId::new(-5).is_none());
        let id = WithdrawalId::new(42).unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "42");
        assert_eq!(serde_json::from_str::<WithdrawalId>("42").unwrap(), id);
        assert!(serde_json::from_str::<WithdrawalId>("0").is_err());
    }
}
