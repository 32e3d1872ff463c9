//! `rediss://` for real: a Redis server with TLS on a spare port, its certificate signed by a CA
//! made for this test. The coordination connects when told to trust that CA
//! (`*_REDIS_CA_FILE`), and refuses an untrusted server.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use atlas::coord::connector::{RedisConnector, RedisTarget, TcpDialer};
use atlas::coord::redis::RedisCoordination;
use atlas::ports::Coordination;
use atlas::ports::coordination::{Admission, BeginOutcome, FsmWrite};
use atlas_tests::redis_support::{clock, fresh_keys, ids};
use atlas_tests::{uid, unique_name};

struct TlsRedis {
    child: Child,
    port: u16,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a server certificate for localhost signed by it, and redis-server with TLS only.
fn start_tls_redis(dir: &Path) -> TlsRedis {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=atlas-test-ca",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args([
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.crt",
            "--tls-auth-clients",
            "no",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts (ci/test installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server with TLS did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    TlsRedis { child, port }
}

fn coordination(port: u16, ca: Option<&[u8]>) -> RedisCoordination<TcpDialer> {
    let target = RedisTarget::from_url(&url::Url::parse(&format!("rediss://localhost:{port}")).unwrap()).unwrap();
    let dialer = TcpDialer::new(&target, ca).expect("a usable CA");
    RedisCoordination::new(
        RedisConnector::new(dialer, target.info.clone(), clock(), ids(1)),
        fresh_keys(),
        clock(),
        ids(2),
    )
}

#[tokio::test]
async fn rediss_connects_to_a_server_signed_by_the_configured_ca() {
    let dir = std::env::temp_dir().join(unique_name("atlas-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let server = start_tls_redis(&dir);
    let ca = std::fs::read(dir.join("ca.crt")).unwrap();

    let trusted = coordination(server.port, Some(&ca));
    trusted.ping().await.expect("PING over TLS");
    let user = uid(1);
    let BeginOutcome::Proceed(ticket) = trusted.begin_update(user, 1, Admission::Counted).await.unwrap() else {
        panic!("a fresh chat proceeds")
    };
    assert_eq!(
        trusted.commit_update(user, &ticket, FsmWrite::Set(b"over tls".to_vec())).await.unwrap(),
        atlas::ports::coordination::CommitOutcome::Committed
    );

    // Without the CA the server's certificate is not trusted: no connection, no data.
    let untrusted = coordination(server.port, None);
    assert!(untrusted.ping().await.is_err());
    // A file without certificates is refused when the settings are read.
    let target = RedisTarget::from_url(&url::Url::parse("rediss://localhost:1").unwrap()).unwrap();
    assert!(TcpDialer::new(&target, Some(b"not a certificate")).is_err());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
