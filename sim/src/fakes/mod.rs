//! Fake HTTP servers of the providers the bot calls, speaking their documented APIs
//! (`../shared/spec/providers.md`): an Outline server's management API and the Crypto Pay API.
//! Each is an axum router over the project's `Listener`, so it serves on a real TCP port in the
//! tests and on a turmoil listener in the simulation; each records what it was asked and can
//! fail on demand (5xx, a hang, a malformed body).

pub mod cryptopay;
pub mod outline;

use std::time::Duration;

/// A fault the next matching call meets instead of its answer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// HTTP 500 (or 502).
    ServerError,
    /// No answer for this long, then the real one (the client's timeout decides).
    Hang(Duration),
    /// HTTP 200 with a body that is not the API's JSON.
    Malformed,
}
