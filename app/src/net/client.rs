//! A small HTTP/1.1 client over the [`Network`]: hyper's connection layer, TLS for `https`,
//! and a pool of idle keep-alive connections per origin. It is ours rather than hyper-util's
//! pooled client because that one times idle connections out on the OS clock, which the
//! simulation cannot control; here a connection leaves the pool only when the server closed it.
//!
//! Every request is bounded by the caller's timeout as a whole: dialing, TLS, sending and
//! reading the body.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_LENGTH, HOST, HeaderValue};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsConnector;
use url::Url;

use super::{Network, tls};

/// The largest response body read; Bot API answers are kilobytes (a getUpdates batch of 100
/// updates stays well under this).
pub const BODY_MAX_BYTES: usize = 8 * 1024 * 1024;

/// Idle connections kept per origin: enough for the concurrency of one instance's sends, few
/// enough that a burst does not leave hundreds of sockets open.
pub const IDLE_PER_ORIGIN_MAX: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    fn of(url: &Url) -> Result<Origin, HttpError> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(HttpError::BadUrl(format!("scheme {other}"))),
        };
        let host = url.host_str().ok_or_else(|| HttpError::BadUrl("no host".into()))?;
        let port = url.port_or_known_default().ok_or_else(|| HttpError::BadUrl("no port".into()))?;
        Ok(Origin { https, host: host.trim_matches(['[', ']']).to_owned(), port })
    }

    /// The `Host` header: the port only when it is not the scheme's default; an IPv6 address
    /// in brackets.
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        match (self.https, self.port) {
            (true, 443) | (false, 80) => host,
            _ => format!("{host}:{}", self.port),
        }
    }
}

/// A response read in full.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("could not connect: {0}")]
    Connect(std::io::Error),
    #[error(transparent)]
    Protocol(#[from] hyper::Error),
    #[error("the response body is over {BODY_MAX_BYTES} bytes")]
    TooLarge,
    #[error("bad URL: {0}")]
    BadUrl(String),
}

pub struct HttpClient<N: Network> {
    network: N,
    tls: TlsConnector,
    idle: Mutex<BTreeMap<Origin, Vec<SendRequest<Full<Bytes>>>>>,
}

impl<N: Network> HttpClient<N> {
    /// A client over `network` trusting the web PKI roots (and `extra_ca_pem`, if given).
    pub fn new(network: N, extra_ca_pem: Option<&[u8]>) -> Result<HttpClient<N>, String> {
        let tls = tls::client_config(extra_ca_pem, &[b"http/1.1"])?;
        Ok(HttpClient { network, tls, idle: Mutex::new(BTreeMap::new()) })
    }

    /// A client over `network` that trusts only the certificate whose SHA-256 is `sha256` (a
    /// server with a self-signed certificate, such as an Outline panel).
    pub fn pinned(network: N, sha256: [u8; 32]) -> Result<HttpClient<N>, String> {
        let tls = tls::pinned_config(sha256, &[b"http/1.1"])?;
        Ok(HttpClient { network, tls, idle: Mutex::new(BTreeMap::new()) })
    }

    /// Sends one request and reads the whole response, all within `timeout`.
    pub async fn request(
        &self,
        method: Method,
        url: &Url,
        headers: &[(&'static str, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        let origin = Origin::of(url)?;
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let exchange = async {
            let mut request = Request::builder().method(method).uri(path);
            let request_headers = request.headers_mut().expect("a fresh builder");
            request_headers.insert(HOST, header(&origin.host_header())?);
            request_headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
            for (name, value) in headers {
                request_headers.insert(*name, header(value)?);
            }
            let request = request.body(Full::new(body)).map_err(|e| HttpError::BadUrl(e.to_string()))?;
            self.exchange(&origin, request).await
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| HttpError::Timeout(timeout))?
    }

    async fn exchange(&self, origin: &Origin, request: Request<Full<Bytes>>) -> Result<Response, HttpError> {
        // A pooled connection the server has just closed fails before the request leaves
        // (hyper reports it canceled): then, and only then, the request goes on a new one.
        let (mut sender, reused) = match self.pooled(origin) {
            Some(sender) => (sender, true),
            None => (self.dial(origin).await?, false),
        };
        let retry = reused.then(|| clone_request(&request));
        sender.ready().await?;
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(e) if e.is_canceled() && retry.is_some() => {
                sender = self.dial(origin).await?;
                sender.ready().await?;
                sender.send_request(retry.expect("checked")).await?
            }
            Err(e) => return Err(e.into()),
        };
        let (parts, body) = response.into_parts();
        let body =
            Limited::new(body, BODY_MAX_BYTES).collect().await.map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(e) => HttpError::Protocol(*e),
                Err(_) => HttpError::TooLarge,
            })?;
        self.release(origin, sender);
        Ok(Response { status: parts.status, headers: parts.headers, body: body.to_bytes() })
    }

    fn pooled(&self, origin: &Origin) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let senders = idle.get_mut(origin)?;
        while let Some(sender) = senders.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn release(&self, origin: &Origin, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let senders = idle.entry(origin.clone()).or_default();
        if senders.len() < IDLE_PER_ORIGIN_MAX {
            senders.push(sender);
        }
    }

    async fn dial(&self, origin: &Origin) -> Result<SendRequest<Full<Bytes>>, HttpError> {
        let stream = self.network.connect(&origin.host, origin.port).await.map_err(HttpError::Connect)?;
        let stream = if origin.https {
            tls::wrap(&self.tls, &origin.host, stream).await.map_err(HttpError::Connect)?
        } else {
            stream
        };
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        // The connection's I/O runs until both sides are done with it; a failure shows up in the
        // sender, which is then closed and never pooled.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP connection ended");
            }
        });
        Ok(sender)
    }
}

fn header(value: &str) -> Result<HeaderValue, HttpError> {
    HeaderValue::from_str(value).map_err(|e| HttpError::BadUrl(format!("header value: {e}")))
}

fn clone_request(request: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    copy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_header_names_the_origin() {
        let origin = |url: &str| Origin::of(&Url::parse(url).unwrap()).unwrap().host_header();
        assert_eq!(origin("https://api.telegram.org/bot1:x/getMe"), "api.telegram.org");
        assert_eq!(origin("http://127.0.0.1:8081/x"), "127.0.0.1:8081");
        assert_eq!(origin("http://[::1]:8081/x"), "[::1]:8081");
        assert_eq!(origin("https://[2001:db8::1]/x"), "[2001:db8::1]");
        assert!(Origin::of(&Url::parse("ftp://example.org/").unwrap()).is_err());
    }
}
