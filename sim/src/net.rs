//! The project's network traits (`atlas::net::{Network, Listener}`) on turmoil's simulated TCP:
//! the bot's HTTP client (Telegram, the VPN panel, Crypto Pay) and its HTTP server (the webhook,
//! the endpoints) run in the simulation exactly as they run live, over these.

use std::net::SocketAddr;

use atlas::net::{Io, Listener, Network};

/// Outgoing connections to simulated hosts, by name.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimNetwork;

impl Network for SimNetwork {
    async fn connect(&self, host: &str, port: u16) -> std::io::Result<Box<dyn Io>> {
        let stream = turmoil::net::TcpStream::connect((host, port)).await?;
        Ok(Box::new(stream))
    }
}

/// A listener on the simulated host it is bound on.
pub struct SimListener(turmoil::net::TcpListener);

impl SimListener {
    /// Listens on `port` of this host (every address).
    pub async fn bind(port: u16) -> std::io::Result<SimListener> {
        Ok(SimListener(turmoil::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port)).await?))
    }
}

impl Listener for SimListener {
    async fn accept(&mut self) -> std::io::Result<(Box<dyn Io>, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        Ok((Box::new(stream), peer))
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}
