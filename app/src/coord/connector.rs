//! Connections to Redis over a stream the caller supplies. redis-rs's `Client` and
//! `ConnectionManager` open their own sockets, which the simulation cannot intercept; a
//! `MultiplexedConnection` built over any stream can. So the dialing, the reconnect with backoff
//! and the timeouts live here, and the same code runs over tokio TCP (live, optionally TLS) and
//! over turmoil's simulated TCP.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo};
use url::Url;

use crate::ports::coordination::CoordinationError;
use crate::ports::{Clock, Ids};

/// Longest one Redis command may take, round trip included. Scripts here touch a handful of keys
/// and run in microseconds; a reply later than this means Redis or the network is in trouble.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(1_000);

/// Longest dialing and the handshake (HELLO/AUTH/SELECT/CLIENT SETINFO) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(2_000);

/// Backoff between failed connection attempts: doubling from the first to the cap, with up to
/// 50% jitter so instances do not reconnect in lockstep after Redis comes back.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(50);
pub const BACKOFF_MAX: Duration = Duration::from_millis(2_000);

/// A stream to Redis: anything that reads and writes.
pub use crate::net::Io as RedisIo;

/// Opens a stream to the Redis server. Live: TCP, optionally TLS; simulation: turmoil TCP.
pub trait Dialer: Send + Sync + 'static {
    fn dial(&self) -> impl Future<Output = std::io::Result<Box<dyn RedisIo>>> + Send;
}

/// Where and how to reach Redis, parsed from a `redis://` or `rediss://` URL.
#[derive(Clone)]
pub struct RedisTarget {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub info: RedisConnectionInfo,
}

impl RedisTarget {
    pub fn from_url(url: &Url) -> Result<RedisTarget, String> {
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => return Err(format!("unsupported scheme {other}")),
        };
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("no host")?.trim_matches(['[', ']']).to_owned();
        let port = url.port().unwrap_or(6379);
        let mut info = RedisConnectionInfo::default();
        let db = url.path().trim_start_matches('/');
        if !db.is_empty() {
            info = info.set_db(db.parse().map_err(|_| format!("database {db:?} is not a number"))?);
        }
        if !url.username().is_empty() {
            info = info.set_username(url.username());
        }
        if let Some(password) = url.password() {
            info = info.set_password(password);
        }
        Ok(RedisTarget { host, port, tls, info })
    }
}

/// The live dialer: tokio TCP, wrapped in rustls with the web PKI roots for `rediss://`.
pub struct TcpDialer {
    host: String,
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl TcpDialer {
    /// A dialer for `target`; for `rediss://` it trusts the web PKI roots, plus the CA
    /// certificates in `extra_ca_pem` if given (a managed Redis with a private CA).
    pub fn new(target: &RedisTarget, extra_ca_pem: Option<&[u8]>) -> Result<TcpDialer, String> {
        let tls = if target.tls { Some(crate::net::tls::client_config(extra_ca_pem, &[])?) } else { None };
        Ok(TcpDialer { host: target.host.clone(), port: target.port, tls })
    }
}

impl Dialer for TcpDialer {
    async fn dial(&self) -> std::io::Result<Box<dyn RedisIo>> {
        use crate::net::Network as _;
        let tcp = crate::net::TcpNetwork.connect(&self.host, self.port).await?;
        match &self.tls {
            Some(tls) => crate::net::tls::wrap(tls, &self.host, tcp).await,
            None => Ok(tcp),
        }
    }
}

struct State {
    /// The live connection and its generation (a reset names the generation it saw fail, so a
    /// late failure of an old connection never throws away a newer one).
    connection: Option<(u64, MultiplexedConnection)>,
    generation: u64,
    failures: u32,
    /// No new attempt before this (monotonic clock).
    retry_at: Duration,
}

/// One multiplexed connection, shared by every caller of this instance, redialed on failure with
/// backoff. Callers never wait for a backoff: during one they are told Redis is unavailable at
/// once, and the policy of each action decides what that means. Callers that arrive while a dial
/// is under way wait for it (2 s at most) and share its connection, so a burst of calls at start
/// or after an outage opens one connection, not one each.
pub struct RedisConnector<D: Dialer> {
    dialer: D,
    info: RedisConnectionInfo,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    state: Mutex<State>,
    dial_gate: tokio::sync::Mutex<()>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Server errors that mean "this node cannot serve us now" (a demoted primary after a failover,
/// a replica, a node loading its data): drop the connection and redial, rather than keep
/// sending scripts to a node that refuses them.
const REDIAL_ERRORS: [&str; 3] = ["READONLY", "MASTERDOWN", "LOADING"];

impl<D: Dialer> RedisConnector<D> {
    pub fn new(dialer: D, info: RedisConnectionInfo, clock: Arc<dyn Clock>, ids: Arc<dyn Ids>) -> RedisConnector<D> {
        let state = State { connection: None, generation: 0, failures: 0, retry_at: Duration::ZERO };
        RedisConnector { dialer, info, clock, ids, state: Mutex::new(state), dial_gate: tokio::sync::Mutex::new(()) }
    }

    /// The current connection (and its generation), or Unavailable during a backoff.
    fn current(&self) -> Result<Option<(u64, MultiplexedConnection)>, CoordinationError> {
        let state = lock(&self.state);
        if let Some((generation, connection)) = &state.connection {
            return Ok(Some((*generation, connection.clone())));
        }
        if self.clock.monotonic() < state.retry_at {
            return Err(CoordinationError::Unavailable);
        }
        Ok(None)
    }

    /// The current connection (and its generation), dialing one if there is none and the
    /// backoff allows; one dial at a time, and those who waited for it share its result.
    pub async fn connection(&self) -> Result<(u64, MultiplexedConnection), CoordinationError> {
        if let Some(current) = self.current()? {
            return Ok(current);
        }
        let _gate = self.dial_gate.lock().await;
        if let Some(current) = self.current()? {
            return Ok(current);
        }
        let opened = tokio::time::timeout(CONNECT_TIMEOUT, self.open()).await;
        let mut state = lock(&self.state);
        match opened {
            Ok(Ok(connection)) => {
                state.generation += 1;
                let generation = state.generation;
                state.connection = Some((generation, connection.clone()));
                Ok((generation, connection))
            }
            Ok(Err(e)) => {
                self.note_failure(&mut state, &e.to_string());
                Err(CoordinationError::Unavailable)
            }
            Err(_) => {
                self.note_failure(&mut state, "timed out");
                Err(CoordinationError::Unavailable)
            }
        }
    }

    async fn open(&self) -> anyhow::Result<MultiplexedConnection> {
        let stream = self.dialer.dial().await?;
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(CALL_TIMEOUT));
        let (connection, driver) = MultiplexedConnection::new_with_config(&self.info, stream, config).await?;
        tokio::spawn(driver);
        Ok(connection)
    }

    fn backoff(&self, failures: u32) -> Duration {
        let exp = BACKOFF_FIRST.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(BACKOFF_MAX);
        let jitter_ms = self.ids.next_u64() % (exp.as_millis() as u64 / 2 + 1);
        exp + Duration::from_millis(jitter_ms)
    }

    /// Counts a failure (a failed dial, or a call that failed on a connection) and pushes the
    /// next dial back; the backoff grows until a call succeeds again. The first failure after
    /// health waits for nothing: after Redis restarts, the first call on the old connection
    /// fails though Redis is back, and the next call should find out on a new one.
    fn note_failure(&self, state: &mut State, reason: &str) {
        let pause = if state.failures == 0 { Duration::ZERO } else { self.backoff(state.failures) };
        state.failures = state.failures.saturating_add(1);
        state.retry_at = self.clock.monotonic() + pause;
        tracing::warn!(failures = state.failures, reason, "Redis unavailable");
    }

    /// Forgets connection `generation` after it failed, so the next call redials (after the
    /// backoff). A newer connection is kept.
    fn reset(&self, generation: u64, reason: &str) {
        let mut state = lock(&self.state);
        if state.connection.as_ref().is_some_and(|(g, _)| *g == generation) {
            state.connection = None;
            self.note_failure(&mut state, reason);
        }
    }

    fn succeeded(&self) {
        let mut state = lock(&self.state);
        if state.failures > 0 {
            tracing::info!(failures = state.failures, "Redis answers again");
            state.failures = 0;
        }
    }

    /// Runs one call on the connection with the call timeout. A transport failure, a timeout or a
    /// node that cannot serve (READONLY, MASTERDOWN, LOADING) drops the connection and reports
    /// Redis unavailable; any other server error is unexpected.
    pub async fn call<T, F, Fut>(&self, call: F) -> Result<T, CoordinationError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let (generation, connection) = self.connection().await?;
        let started = self.clock.monotonic();
        let answered = tokio::time::timeout(CALL_TIMEOUT, call(connection)).await;
        let seconds = self.clock.monotonic().saturating_sub(started).as_secs_f64();
        metrics::histogram!("atlas_redis_call_seconds").record(seconds);
        match answered {
            Ok(Ok(value)) => {
                self.succeeded();
                Ok(value)
            }
            Ok(Err(e))
                if e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_unrecoverable_error()
                    || e.code().is_some_and(|code| REDIAL_ERRORS.contains(&code)) =>
            {
                self.reset(generation, &e.to_string());
                Err(CoordinationError::Unavailable)
            }
            Ok(Err(e)) => Err(CoordinationError::Unexpected(anyhow::Error::new(e).context("Redis refused a call"))),
            Err(_) => {
                self.reset(generation, "a call timed out");
                Err(CoordinationError::Unavailable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_with_credentials_database_and_tls() {
        let t = RedisTarget::from_url(&Url::parse("rediss://user:pw@cache.example:6380/2").unwrap()).unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("cache.example", 6380, true));
        assert_eq!((t.info.db(), t.info.username(), t.info.password()), (2, Some("user"), Some("pw")));
        let plain = RedisTarget::from_url(&Url::parse("redis://127.0.0.1").unwrap()).unwrap();
        assert_eq!((plain.port, plain.tls, plain.info.db()), (6379, false, 0));
        assert!(RedisTarget::from_url(&Url::parse("redis://h/x").unwrap()).is_err());
    }
}
