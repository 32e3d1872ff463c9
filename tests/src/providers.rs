//! The bot with its live provider clients (Outline, Crypto Pay) pointed at the fake servers of
//! `atlas_sim::fakes`, served on real TCP ports (Outline over TLS with a self-signed certificate
//! made by `openssl`, as Outline's installer makes one).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use atlas::coord::limits::Flood;
use atlas::net::client::HttpClient;
use atlas::net::{Io, Listener, TcpListener, TcpNetwork};
use atlas::ports::Clock;
use atlas::providers::cryptopay::CryptoPayClient;
use atlas::providers::outline::OutlineClient;
use atlas::providers::resilience::Resilience;
use atlas::runtime::wiring::{Adapters, App, Parts, assemble};
use atlas::store::PgStore;
use atlas_sim::fakes::cryptopay::FakeCryptoPay;
use atlas_sim::fakes::outline::FakeOutline;
use secrecy::SecretString;

use crate::bot::{BotHarness, RecordingMessenger, rules};
use crate::redis_support::{ids, instance};

/// The Crypto Pay app token of the tests.
pub const CRYPTO_TOKEN: &str = "12345:AAtestTOKENforCryptoPay";
/// The secret path of the fake Outline API.
pub const OUTLINE_PREFIX: &str = "Sec7retPrefix";
/// Each provider call is bounded by this in the tests (the real bound is seconds).
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);

/// The world whose providers are the live HTTP clients.
pub struct HttpWorld;

impl Adapters for HttpWorld {
    type Store = PgStore;
    type Coordination = atlas::coord::redis::RedisCoordination<atlas::coord::connector::TcpDialer>;
    type Vpn = OutlineClient<TcpNetwork>;
    type Messenger = RecordingMessenger;
    type Crypto = CryptoPayClient<TcpNetwork>;
}

/// A self-signed certificate and key (PEM) for `127.0.0.1`, and the SHA-256 of the certificate.
pub fn self_signed(dir: &Path) -> (Vec<u8>, Vec<u8>, [u8; 32]) {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=outline",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    let der = Command::new("openssl")
        .args(["x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der"])
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(der.status.success());
    let der = std::fs::read(dir.join("cert.der")).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, &der);
    let pin: [u8; 32] = digest.as_ref().try_into().unwrap();
    (std::fs::read(dir.join("cert.pem")).unwrap(), std::fs::read(dir.join("key.pem")).unwrap(), pin)
}

/// A TCP listener whose connections are TLS with `cert`/`key`.
pub struct TlsListener {
    tcp: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
}

impl TlsListener {
    pub async fn bind(cert_pem: &[u8], key_pem: &[u8]) -> TlsListener {
        use rustls::pki_types::pem::PemObject as _;
        let certs: Vec<_> =
            rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem).collect::<Result<_, _>>().unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        TlsListener { tcp, tls: tokio_rustls::TlsAcceptor::from(Arc::new(config)) }
    }
}

impl Listener for TlsListener {
    async fn accept(&mut self) -> std::io::Result<(Box<dyn Io>, SocketAddr)> {
        loop {
            let (stream, peer) = self.tcp.accept().await?;
            // A client that refuses our certificate ends its handshake: wait for the next one.
            if let Ok(tls) = self.tls.accept(stream).await {
                return Ok((Box::new(tls), peer));
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Serves `router` on `listener` until the test ends; returns the address.
pub fn serve(listener: impl Listener, router: axum::Router) -> SocketAddr {
    let addr = listener.local_addr().unwrap();
    tokio::spawn(atlas::net::server::serve(listener, router, std::future::pending::<()>(), Duration::ZERO));
    addr
}

/// The fakes, served: Outline over TLS (pinned), Crypto Pay over plain HTTP.
pub struct Providers {
    pub outline: FakeOutline,
    pub crypto: FakeCryptoPay,
    pub outline_url: url::Url,
    pub pin: [u8; 32],
    pub crypto_url: url::Url,
    _dir: tempdir::Dir,
}

impl Providers {
    pub async fn start() -> Providers {
        let dir = tempdir::Dir::new();
        let (cert, key, pin) = self_signed(dir.path());
        let outline = FakeOutline::new(OUTLINE_PREFIX);
        let addr = serve(TlsListener::bind(&cert, &key).await, outline.router());
        let crypto = FakeCryptoPay::new(CRYPTO_TOKEN);
        let crypto_addr = serve(TcpListener::bind("127.0.0.1:0".parse().unwrap()).await.unwrap(), crypto.router());
        Providers {
            outline,
            crypto,
            outline_url: url::Url::parse(&format!("https://{addr}/{OUTLINE_PREFIX}")).unwrap(),
            pin,
            crypto_url: url::Url::parse(&format!("http://{crypto_addr}/")).unwrap(),
            _dir: dir,
        }
    }

    pub fn outline_client(&self, clock: Arc<dyn Clock>, seed: u64) -> OutlineClient<TcpNetwork> {
        let http = HttpClient::pinned(TcpNetwork, self.pin).unwrap();
        let mut resilience = Resilience::new("the VPN panel", clock, ids(seed));
        resilience.backoff = Duration::from_millis(10);
        OutlineClient::new(http, self.outline_url.clone(), resilience).with_timeout(CALL_TIMEOUT)
    }

    pub fn crypto_client(&self, clock: Arc<dyn Clock>, seed: u64) -> CryptoPayClient<TcpNetwork> {
        let http = HttpClient::new(TcpNetwork, None).unwrap();
        let mut resilience = Resilience::new("Crypto Pay", clock, ids(seed));
        resilience.backoff = Duration::from_millis(10);
        let token = SecretString::from(CRYPTO_TOKEN.to_owned());
        CryptoPayClient::new(http, self.crypto_url.clone(), token, Duration::from_secs(3600), resilience)
            .with_timeout(CALL_TIMEOUT)
    }

    /// An instance of the bot (the harness's database, Redis keys, Telegram and clock) whose
    /// providers are the live clients of these fakes.
    pub fn app(&self, bot: &BotHarness, seed: u64) -> App<HttpWorld> {
        let clock: Arc<dyn Clock> = bot.clock.clone();
        let coordination =
            instance(&bot.keys, clock.clone(), seed).with_flood(Flood { max: 10_000, window: Duration::from_secs(10) });
        let parts = Parts {
            store: bot.db.store.clone(),
            coordination,
            vpn: self.outline_client(clock.clone(), seed),
            messenger: bot.messenger.clone(),
            crypto: self.crypto_client(clock.clone(), seed),
            clock,
            ids: ids(seed),
        };
        assemble(parts, rules(&[]))
    }
}

/// A temporary directory removed at drop.
pub mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Dir {
            let path = std::env::temp_dir().join(format!("atlas-{}-{}", std::process::id(), rand_suffix()));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Default for Dir {
        fn default() -> Dir {
            Dir::new()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn rand_suffix() -> u64 {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).unwrap();
        u64::from_le_bytes(bytes)
    }
}
