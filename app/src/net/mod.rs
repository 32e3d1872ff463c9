//! The network, as the bot sees it: streams opened to named hosts and streams accepted on a
//! listener. Live they are tokio TCP (with rustls for `https`); in the simulation they are
//! turmoil's simulated TCP. Everything above — the HTTP client of Telegram and the providers, the
//! webhook server — is written once over these traits, so the same code (timeouts, retries,
//! parsing) runs in both worlds.

pub mod client;
pub mod server;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream: TCP, TLS over TCP, or simulated TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Opens plain streams to named hosts (TLS, when wanted, is layered on top by the caller).
pub trait Network: Send + Sync + 'static {
    /// A stream to `host:port`. Callers bound it with a timeout: in the simulation a dropped
    /// connection attempt is never answered.
    fn connect(&self, host: &str, port: u16) -> impl Future<Output = std::io::Result<Box<dyn Io>>> + Send;
}

/// Accepts streams on one address.
pub trait Listener: Send + 'static {
    fn accept(&mut self) -> impl Future<Output = std::io::Result<(Box<dyn Io>, SocketAddr)>> + Send;

    /// The address it listens on (port 0 becomes the port the OS chose).
    fn local_addr(&self) -> std::io::Result<SocketAddr>;
}

/// The live network: tokio TCP, Nagle off (requests and replies are small and latency counts).
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpNetwork;

impl Network for TcpNetwork {
    async fn connect(&self, host: &str, port: u16) -> std::io::Result<Box<dyn Io>> {
        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        Ok(Box::new(tcp))
    }
}

/// The live listener: a tokio TCP listener.
pub struct TcpListener(tokio::net::TcpListener);

impl TcpListener {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
        Ok(TcpListener(tokio::net::TcpListener::bind(addr).await?))
    }
}

impl Listener for TcpListener {
    async fn accept(&mut self) -> std::io::Result<(Box<dyn Io>, SocketAddr)> {
        let (tcp, peer) = self.0.accept().await?;
        tcp.set_nodelay(true)?;
        Ok((Box::new(tcp), peer))
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}
