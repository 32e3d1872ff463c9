//! Live clients of the outside services the shop depends on: the VPN panel (Outline) and the
//! crypto payment provider (Crypto Pay). Until their HTTP clients are built, an instance runs
//! with [`unavailable`] in their place: the bot answers every user, and what needs the missing
//! service says it is not available right now.

pub mod unavailable;
