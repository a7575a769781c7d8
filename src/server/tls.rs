//! TLS in process (rustls, `ring` provider): the certificate files, their reload on SIGHUP,
//! and one worker's TLS sessions. The engine stays byte-oriented: it hands the dispatcher
//! ciphertext, and everything the server queues passes through [`send`] here, which encrypts
//! it into a buffer of its own for the engine's queue, so encrypted output counts against the
//! same queue bounds as plain output.
//!
//! ```text
//!  engine on_data (ciphertext) ─► read_tls ─► process_new_packets ─► plaintext ─► Session::pending
//!                                                   │ handshake/alerts                │
//!                                                   ▼                                 ▼
//!  engine queue ◄─ write_tls ◄─ writer() ◄───── Out::send / fan-out ◄──── dispatcher steps
//! ```
//!
//! Memory per session: rustls holds its handshake state, then its record keys and a 4 KiB
//! receive buffer (its deframer keeps one read's worth); rustls's own send buffer is emptied
//! into the engine's queue after every write, and bounded by `set_buffer_limit` meanwhile.
//! Decrypted input the server has not consumed yet (a partial request head or frame) sits in
//! `pending`, bounded like the engine's leftover, and freed when empty.
//!
//! Never here: parsing, routing, the engine's ring. Certificates are read only at start-up and
//! on SIGHUP, never on a worker.

use std::fmt;
use std::io::{Read, Write};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

use crate::engine::{ConnId, Ctx, Handler};

/// The one application protocol spoken over TLS (ALPN, RFC 7301). A client offering only
/// others (`h2` alone) fails the handshake with `no_application_protocol`.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Plaintext rustls may buffer before the handshake ends, and TLS records it may hold between
/// a write and our draining them (we drain after every write, so it holds at most one).
const RUSTLS_BUFFER_LIMIT: usize = 64 << 10;

/// Why the certificate or key could not be used.
#[derive(Debug)]
pub enum TlsError {
    /// The file could not be read.
    Read {
        key: &'static str,
        path: String,
        err: std::io::Error,
    },
    /// The file has no PEM section of the kind needed, or a broken one.
    Pem {
        key: &'static str,
        path: String,
        what: String,
    },
    /// rustls refused the pair (a key that does not match the certificate, an unsupported key).
    Rejected { cert: String, err: rustls::Error },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { key, path, err } => write!(f, "`{key}` {path}: cannot read: {err}"),
            TlsError::Pem { key, path, what } => write!(f, "`{key}` {path}: {what}"),
            TlsError::Rejected { cert, err } => write!(
                f,
                "`tls_cert` {cert} and `tls_key` do not make a usable pair: {err}"
            ),
        }
    }
}

impl std::error::Error for TlsError {}

/// The certificate files and the rustls config built from them; new connections take the
/// current config, connections already open keep the one they started with.
pub struct TlsFiles {
    cert: String,
    key: String,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsFiles {
    /// Read and check both files (at start-up: an error here stops the server).
    pub fn load(cert: &str, key: &str) -> Result<TlsFiles, TlsError> {
        Ok(TlsFiles {
            current: RwLock::new(server_config(cert, key)?),
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
    }

    /// Read both files again (on SIGHUP). On error the config in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = server_config(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// The config for a connection opening now.
    pub fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn cert_path(&self) -> &str {
        &self.cert
    }
}

fn server_config(cert_path: &str, key_path: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let read = |key: &'static str, path: &str| {
        std::fs::read(path).map_err(|err| TlsError::Read {
            key,
            path: path.to_owned(),
            err,
        })
    };
    let pem_err = |key: &'static str, path: &str, what: String| TlsError::Pem {
        key,
        path: path.to_owned(),
        what,
    };
    let cert_pem = read("tls_cert", cert_path)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err("tls_cert", cert_path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(pem_err(
            "tls_cert",
            cert_path,
            "no CERTIFICATE section found".into(),
        ));
    }
    let key_pem = read("tls_key", key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        pem_err(
            "tls_key",
            key_path,
            format!("no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
        )
    })?;
    let provider = Arc::new(crypto_provider());
    let rejected = |err| TlsError::Rejected {
        cert: cert_path.to_owned(),
        err,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(rejected)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(rejected)?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// rustls with the `ring` provider, key exchange groups in the order browsers send them.
///
/// rustls 0.23.48 lists P-384 first for `ring`; on this box a P-384 handshake costs the server
/// about ten times an X25519 one (docs/benchmarks.md), and browsers send an X25519 share, so
/// X25519 goes first. rustls also marks the `ring` provider deprecated because it lacks
/// post-quantum key exchange (X25519MLKEM768, which `aws-lc-rs` has); `ring` is chosen for its
/// build (docs/decisions.md).
pub fn crypto_provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::kx_group;
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    provider
}

/// One connection's TLS state.
pub(super) struct Session {
    gen: u32,
    pub tls: ServerConnection,
    /// Decrypted bytes the server has not consumed yet; empty (no allocation) when idle.
    pub pending: Vec<u8>,
    /// The handshake completed (counted once).
    pub established: bool,
}

/// One worker's TLS sessions, by engine slot. Fan-out reaches a subscriber by its `ConnId`
/// alone (its `Conn` is not at hand there), so the sessions live here and not in `Conn`.
#[derive(Default)]
pub(super) struct Sessions {
    slots: Vec<Option<Box<Session>>>,
}

impl Sessions {
    /// Start a session for a connection that just opened.
    pub fn open(&mut self, id: ConnId, config: Arc<ServerConfig>) -> Result<(), rustls::Error> {
        let mut tls = ServerConnection::new(config)?;
        tls.set_buffer_limit(Some(RUSTLS_BUFFER_LIMIT));
        let slot = id.slot as usize;
        if self.slots.len() <= slot {
            self.slots.resize_with(slot + 1, || None);
        }
        self.slots[slot] = Some(Box::new(Session {
            gen: id.gen,
            tls,
            pending: Vec::new(),
            established: false,
        }));
        Ok(())
    }

    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Session> {
        match self.slots.get_mut(id.slot as usize) {
            Some(Some(s)) if s.gen == id.gen => Some(s),
            _ => None,
        }
    }

    pub fn remove(&mut self, id: ConnId) {
        if let Some(slot) = self.slots.get_mut(id.slot as usize) {
            if slot.as_ref().is_some_and(|s| s.gen == id.gen) {
                *slot = None;
            }
        }
    }
}

/// Encrypt `plain` and queue the records. False if the engine refused them (the connection is
/// gone, closing, or past its queue bound and now aborted), or if rustls could not take the
/// data (it is closed for writing).
pub(super) fn send<H: Handler>(
    ctx: &mut Ctx<'_, H>,
    id: ConnId,
    tls: &mut ServerConnection,
    plain: &[u8],
) -> bool {
    // Records add 22 bytes each (TLS 1.3 AES-GCM: header 5, type 1, tag 16) per 16 KiB.
    let mut wire = Vec::with_capacity(plain.len() + 32 + plain.len() / 16_384 * 32);
    let mut rest = plain;
    while !rest.is_empty() {
        let n = match tls.writer().write(rest) {
            Ok(n) => n,
            Err(_) => return false,
        };
        rest = &rest[n..];
        drain(tls, &mut wire);
        if n == 0 {
            // Nothing taken and nothing to drain: rustls will not write (closed, or its
            // pre-handshake buffer is full).
            return false;
        }
    }
    ctx.send(id, Bytes::from(wire))
}

/// Queue what rustls has to send by itself: handshake messages, alerts, session tickets,
/// close_notify. True if there was nothing or the engine took it.
pub(super) fn flush<H: Handler>(
    ctx: &mut Ctx<'_, H>,
    id: ConnId,
    tls: &mut ServerConnection,
) -> bool {
    if !tls.wants_write() {
        return true;
    }
    let mut wire = Vec::new();
    drain(tls, &mut wire);
    ctx.send(id, Bytes::from(wire))
}

/// Move every TLS record rustls holds into `wire` (writing to a `Vec` cannot fail).
fn drain(tls: &mut ServerConnection, wire: &mut Vec<u8>) {
    while tls.wants_write() {
        if tls.write_tls(wire).is_err() {
            break;
        }
    }
}

/// Queue a close_notify alert (before the engine's flush-and-close).
pub(super) fn close_notify<H: Handler>(
    ctx: &mut Ctx<'_, H>,
    id: ConnId,
    tls: &mut ServerConnection,
) {
    tls.send_close_notify();
    flush(ctx, id, tls);
}

/// What feeding ciphertext to a session gave.
pub(super) enum Fed {
    /// `consumed` ciphertext bytes taken; the plaintext they held is appended to `pending`.
    Ok { consumed: usize, peer_closed: bool },
    /// A TLS error: the alert (if any) is queued; the connection must close.
    Failed(rustls::Error),
}

/// Feed `ciphertext` to the session: decrypt what it can, queue handshake answers and
/// alerts, and append the plaintext to `pending`. Takes at most one read's worth; the caller
/// serves `pending` and calls again for the rest.
pub(super) fn feed<H: Handler>(
    ctx: &mut Ctx<'_, H>,
    id: ConnId,
    s: &mut Session,
    mut ciphertext: &[u8],
) -> Fed {
    let before = ciphertext.len();
    if let Err(e) = s.tls.read_tls(&mut ciphertext) {
        // Only when rustls's plaintext buffer is full; we empty it after every call, so this
        // is a broken invariant, reported as an internal error rather than a panic.
        return Fed::Failed(rustls::Error::General(e.to_string()));
    }
    let consumed = before - ciphertext.len();
    let state = match s.tls.process_new_packets() {
        Ok(state) => state,
        Err(e) => {
            flush(ctx, id, &mut s.tls);
            return Fed::Failed(e);
        }
    };
    flush(ctx, id, &mut s.tls);
    let n = state.plaintext_bytes_to_read();
    if n > 0 {
        let start = s.pending.len();
        s.pending.resize(start + n, 0);
        if s.tls.reader().read_exact(&mut s.pending[start..]).is_err() {
            s.pending.truncate(start);
        }
    }
    Fed::Ok {
        consumed,
        peer_closed: state.peer_has_closed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_size() {
        // Printed for docs/benchmarks.md; the heap behind it is measured there.
        println!(
            "size_of::<Session>() = {}, of ServerConnection = {}",
            std::mem::size_of::<Session>(),
            std::mem::size_of::<ServerConnection>()
        );
    }
}
