//! TLS for outgoing connections: rustls with the web PKI roots (plus, optionally, a private CA),
//! layered over any stream of the [`Network`](super::Network), so the simulation can run it too.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::Io;

/// A client configuration trusting the web PKI roots and the CA certificates in `extra_ca_pem`
/// (a managed service with a private CA), offering `alpn` protocols.
pub fn client_config(extra_ca_pem: Option<&[u8]>, alpn: &[&[u8]]) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(pem) = extra_ca_pem {
        use rustls::pki_types::pem::PemObject as _;
        let mut added = 0;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("not a PEM certificate: {e}"))?;
            roots.add(cert).map_err(|e| format!("unusable CA certificate: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("no certificate in the CA file".into());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// `stream` wrapped in TLS to `host` (its certificate must name `host`).
pub async fn wrap(tls: &TlsConnector, host: &str, stream: Box<dyn Io>) -> std::io::Result<Box<dyn Io>> {
    let name =
        ServerName::try_from(host.to_owned()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    Ok(Box::new(tls.connect(name, stream).await?))
}
