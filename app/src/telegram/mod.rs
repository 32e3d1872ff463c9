//! The live Telegram adapter: the Bot API over the project's HTTP client (`api`), the
//! Messenger port on it with Telegram's sending limits (`messenger`, `limits`), and the two
//! intakes of updates, the webhook route and the leader-elected poller.

pub mod api;
pub mod limits;
pub mod messenger;
