//! An HTTP/1.1 server over any [`Listener`]: hyper serves each accepted stream with an axum
//! router, so the webhook route and the health endpoints run on tokio TCP live and on
//! turmoil's listener in the simulation. Shutdown stops accepting, lets every connection finish
//! the request it is on (keep-alive connections close after it), and returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt as _;

use super::Listener;

/// The address a request's connection came from, in the request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer(pub std::net::SocketAddr);

/// Connections served at once; beyond it the server stops accepting until one closes (the
/// listener's backlog then holds the rest, and clients see the delay, not an error).
pub const CONNECTIONS_MAX: usize = 1_024;

/// How long a client may take to send a request's headers before its connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A failing `accept` (too many open files, say) is retried after this pause rather than in a
/// busy loop.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `shutdown` resolves, then waits (at most `drain`) for the
/// connections to finish what they are doing.
pub async fn serve<L: Listener>(
    listener: L,
    router: axum::Router,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    serve_until(listener, router, shutdown, async move { drain }).await;
}

/// [`serve`], with the drain time known only when the server stops (what is left of a
/// shutdown timeout).
pub async fn serve_until<L: Listener>(
    mut listener: L,
    router: axum::Router,
    shutdown: impl Future,
    drain: impl Future<Output = Duration>,
) {
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, "HTTP server listening"),
        Err(e) => tracing::warn!(error = %e, "HTTP server listening on an unknown address"),
    }
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        // Handlers may ask who is calling (`Extension<Peer>`): the fake hosts of the simulation
        // record which instance made each call.
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(Peer(peer));
                request
            },
        ));
        // No Date header: it would read the OS clock, which the simulation does not control.
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .auto_date_header(false)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
            drop(slot);
        });
    }
    let drain = drain.await;
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!(?drain, "connections still open after the drain time; closing");
    }
}
