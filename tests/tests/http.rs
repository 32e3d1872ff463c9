//! The project's HTTP client and server (`atlas::net`) against each other on real TCP: requests
//! and answers, kept-alive connections reused, a server that went away, timeouts and limits, and
//! a graceful shutdown that lets the request in flight finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use atlas::net::client::{HttpClient, HttpError};
use atlas::net::server::serve;
use atlas::net::{Listener as _, TcpListener, TcpNetwork};
use axum::routing::{get, post};
use bytes::Bytes;
use hyper::{Method, StatusCode};

const TIMEOUT: Duration = Duration::from_secs(5);

struct Running {
    base: url::Url,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<()>,
}

/// A listener that counts the connections it accepted.
struct Counting(TcpListener, Arc<AtomicUsize>);

impl atlas::net::Listener for Counting {
    async fn accept(&mut self) -> std::io::Result<(Box<dyn atlas::net::Io>, std::net::SocketAddr)> {
        let accepted = self.0.accept().await?;
        self.1.fetch_add(1, Ordering::Relaxed);
        Ok(accepted)
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.local_addr()
    }
}

async fn start(router: axum::Router) -> Running {
    start_counting(router, Arc::default()).await
}

async fn start_counting(router: axum::Router, accepted: Arc<AtomicUsize>) -> Running {
    let listener = Counting(TcpListener::bind("127.0.0.1:0".parse().unwrap()).await.unwrap(), accepted);
    let base = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(serve(listener, router, async move { stopped.await.unwrap_or(()) }, TIMEOUT));
    Running { base, stop: Some(stop), served }
}

fn client() -> HttpClient<TcpNetwork> {
    HttpClient::new(TcpNetwork, None).unwrap()
}

#[tokio::test]
async fn requests_are_answered_over_reused_connections() {
    let connections = Arc::new(AtomicUsize::new(0));
    let router = axum::Router::new()
        .route("/echo", post(|body: Bytes| async move { body }))
        .route("/hello", get(|| async { "hello" }));
    let server = start_counting(router, connections.clone()).await;
    let client = client();
    for n in 0..20 {
        let body = Bytes::from(format!("ping {n}"));
        let url = server.base.join("/echo?x=1").unwrap();
        let response = client.request(Method::POST, &url, &[], body.clone(), TIMEOUT).await.unwrap();
        assert_eq!((response.status, response.body), (StatusCode::OK, body));
    }
    let response = client.request(Method::GET, &server.base.join("/hello").unwrap(), &[], Bytes::new(), TIMEOUT).await;
    assert_eq!(&response.unwrap().body[..], b"hello");
    let missing = client.request(Method::GET, &server.base.join("/nope").unwrap(), &[], Bytes::new(), TIMEOUT).await;
    assert_eq!(missing.unwrap().status, StatusCode::NOT_FOUND);
    assert_eq!(connections.load(Ordering::Relaxed), 1, "one kept-alive connection served them all");
}

#[tokio::test]
async fn a_slow_server_times_out_and_a_large_body_is_refused() {
    let router = axum::Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route("/big", get(|| async { vec![b'x'; atlas::net::client::BODY_MAX_BYTES + 1] }));
    let server = start(router).await;
    let client = client();
    let slow = client
        .request(Method::GET, &server.base.join("/slow").unwrap(), &[], Bytes::new(), Duration::from_millis(200))
        .await;
    assert!(matches!(slow, Err(HttpError::Timeout(_))), "{slow:?}");
    let big = client.request(Method::GET, &server.base.join("/big").unwrap(), &[], Bytes::new(), TIMEOUT).await;
    assert!(matches!(big, Err(HttpError::TooLarge)), "{big:?}");
    let nobody = url::Url::parse("http://127.0.0.1:1/").unwrap();
    let refused = client.request(Method::GET, &nobody, &[], Bytes::new(), TIMEOUT).await;
    assert!(matches!(refused, Err(HttpError::Connect(_))), "{refused:?}");
}

/// A server restarted on the same port: the client's idle connection to the old one is dead,
/// and the next request goes through on a new connection.
#[tokio::test]
async fn a_dead_idle_connection_is_replaced() {
    let router = || axum::Router::new().route("/", get(|| async { "up" }));
    let mut first = start(router()).await;
    let client = client();
    let url = first.base.clone();
    assert_eq!(client.request(Method::GET, &url, &[], Bytes::new(), TIMEOUT).await.unwrap().status, StatusCode::OK);
    first.stop.take().unwrap().send(()).unwrap();
    first.served.await.unwrap();
    let addr: std::net::SocketAddr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap()).parse().unwrap();
    let listener = TcpListener::bind(addr).await.unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, router(), async move { stopped.await.unwrap_or(()) }, TIMEOUT));
    let again = client.request(Method::GET, &url, &[], Bytes::new(), TIMEOUT).await;
    assert_eq!(again.unwrap().status, StatusCode::OK);
}

/// Shutdown stops accepting but lets the request in flight finish.
#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish() {
    let router = axum::Router::new().route(
        "/work",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            "done"
        }),
    );
    let mut server = start(router).await;
    let client = Arc::new(client());
    let url = server.base.join("/work").unwrap();
    let in_flight = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { client.request(Method::GET, &url, &[], Bytes::new(), TIMEOUT).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop.take().unwrap().send(()).unwrap();
    let answered = in_flight.await.unwrap().unwrap();
    assert_eq!(&answered.body[..], b"done");
    server.served.await.unwrap();
    let after = HttpClient::new(TcpNetwork, None).unwrap().request(Method::GET, &url, &[], Bytes::new(), TIMEOUT).await;
    assert!(matches!(after, Err(HttpError::Connect(_))), "{after:?}");
}
