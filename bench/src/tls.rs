//! TLS for the client role (`https://`, `wss://`, `--tls`): rustls with the `ring` provider, as
//! the server uses. The client machines stay byte-oriented: `driver` encrypts what they write
//! and hands them the plaintext of what arrives, through one [`TlsConn`] per connection.
//!
//! Trust: `--tls-ca FILE` (PEM roots) or `--tls-insecure` (any certificate; signatures over the
//! handshake are still checked, so the handshake costs what a real one costs).

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};

/// The server's provider (X25519 first, as browsers; see `uringcast::server::tls`).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(uringcast::server::tls::crypto_provider())
}

/// The client config from `--tls-ca` / `--tls-insecure`; ALPN `http/1.1`.
pub fn client_config(ca: Option<&str>, insecure: bool) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let path = ca.ok_or("a TLS target needs --tls-ca FILE or --tls-insecure")?;
        let pem = std::fs::read(path).map_err(|e| format!("--tls-ca {path}: {e}"))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("--tls-ca {path}: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("--tls-ca {path}: {e}"))?;
        }
        if roots.is_empty() {
            return Err(format!("--tls-ca {path}: no CERTIFICATE section"));
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name to send and verify: `--tls-server-name`, else the URL's host.
pub fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_owned()).map_err(|e| format!("TLS server name {name:?}: {e}"))
}

/// `--tls-insecure`: any certificate chain is accepted; handshake signatures are verified.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One connection's TLS state.
pub struct TlsConn {
    conn: ClientConnection,
    /// Decrypted bytes the client machine has not consumed yet; empty (no allocation) when
    /// idle.
    pub pending: Vec<u8>,
}

impl TlsConn {
    pub fn new(config: Arc<ClientConfig>, name: ServerName<'static>) -> Result<TlsConn, String> {
        let conn = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
        Ok(TlsConn {
            conn,
            pending: Vec::new(),
        })
    }

    /// Encrypt `plain` (before the handshake ends, rustls holds it and sends it right after)
    /// and append every record due to `wire`, handshake messages included.
    pub fn write(&mut self, plain: &[u8], wire: &mut Vec<u8>) {
        if !plain.is_empty() {
            // A write into rustls's unbounded buffers takes everything.
            let _ = self.conn.writer().write_all(plain);
        }
        while self.conn.wants_write() {
            if self.conn.write_tls(wire).is_err() {
                break;
            }
        }
    }

    /// Take what it can of `ciphertext` (one read's worth) and append its plaintext to
    /// `pending`. Returns the bytes taken; an error closes the connection.
    pub fn feed(&mut self, mut ciphertext: &[u8]) -> Result<usize, rustls::Error> {
        let before = ciphertext.len();
        self.conn
            .read_tls(&mut ciphertext)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let state = self.conn.process_new_packets()?;
        let n = state.plaintext_bytes_to_read();
        if n > 0 {
            let start = self.pending.len();
            self.pending.resize(start + n, 0);
            if self
                .conn
                .reader()
                .read_exact(&mut self.pending[start..])
                .is_err()
            {
                self.pending.truncate(start);
            }
        }
        Ok(before - ciphertext.len())
    }
}
