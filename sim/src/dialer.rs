//! The Redis connector's stream in the simulation: turmoil's simulated TCP to the Redis host.

use atlas::coord::connector::{Dialer, RedisIo};

pub struct SimDialer {
    pub host: String,
    pub port: u16,
}

impl Dialer for SimDialer {
    async fn dial(&self) -> std::io::Result<Box<dyn RedisIo>> {
        let stream = turmoil::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        Ok(Box::new(stream))
    }
}
