//! A non-blocking client connection, plain TCP or TLS (rustls driven by hand over a mio socket), with
//! one `read`/`write` interface whose `WouldBlock` means "wait for the next readiness event".

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown};
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::common::Error;

/// What a TLS client needs: the configuration (roots from the CA file) and the server's name.
#[derive(Debug, Clone)]
pub(crate) struct TlsClient {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl TlsClient {
    /// Trusts the certificates in `ca` and expects the server to prove the identity `ip` (the
    /// benchmark's certificates name 127.0.0.1, ::1 and localhost).
    pub(crate) fn new(ca: &Path, ip: IpAddr) -> Result<Self, Error> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("cannot read {}: {e}", ca.display()))?
        {
            roots.add(cert.map_err(|e| format!("bad certificate in {}: {e}", ca.display()))?)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
            name: ServerName::IpAddress(ip.into()),
        })
    }
}

/// One connection of the load generator.
pub(crate) enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsConn>),
}

/// The TLS state beside its socket.
pub(crate) struct TlsConn {
    tcp: TcpStream,
    tls: rustls::ClientConnection,
    /// close_notify is queued: shut the TCP write side once it is on the wire.
    fin_pending: bool,
}

fn would_block() -> io::Error {
    io::ErrorKind::WouldBlock.into()
}

impl Conn {
    /// Wraps a connected non-blocking socket, starting a TLS client handshake if `tls` is given.
    pub(crate) fn new(tcp: TcpStream, tls: Option<&TlsClient>) -> Result<Self, Error> {
        Ok(match tls {
            None => Conn::Plain(tcp),
            Some(t) => Conn::Tls(Box::new(TlsConn {
                tcp,
                tls: rustls::ClientConnection::new(t.config.clone(), t.name.clone())?,
                fin_pending: false,
            })),
        })
    }

    /// Whether this is a TLS connection.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }

    /// The socket, for registration with mio.
    pub(crate) fn socket(&mut self) -> &mut TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(t) => &mut t.tcp,
        }
    }

    /// Reads plaintext: `Ok(0)` at a clean end of stream (under TLS: close_notify).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(t) => t.read(buf),
        }
    }

    /// Writes plaintext; under TLS it is encrypted and pushed to the socket as far as it takes it.
    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(t) => {
                let n = t.tls.writer().write(buf)?;
                t.flush()?;
                if n == 0 && !buf.is_empty() {
                    // rustls's buffer is full (or the handshake is still going on).
                    return Err(would_block());
                }
                Ok(n)
            }
        }
    }

    /// Under TLS, pushes queued records to the socket (call on every writable event); plain TCP has
    /// nothing queued.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(_) => Ok(()),
            Conn::Tls(t) => t.flush(),
        }
    }

    /// Half-closes: FIN (under TLS, close_notify first, then FIN once it is sent).
    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.shutdown(Shutdown::Write),
            Conn::Tls(t) => {
                t.tls.send_close_notify();
                t.fin_pending = true;
                t.flush()
            }
        }
    }
}

impl TlsConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Bounded: each round either returns or reads more records from the socket, which ends in
        // WouldBlock, EOF or an error.
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let eof = match self.tls.read_tls(&mut self.tcp) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => return Err(e),
            };
            if let Err(e) = self.tls.process_new_packets() {
                let _ = self.flush(); // the alert, if the socket takes it
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // A handshake step may need an answer.
            self.flush()?;
            if eof {
                return match self.tls.reader().read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed TCP without close_notify",
                    )),
                    r => r,
                };
            }
        }
    }

    /// Writes queued TLS records until none is left or the socket would block; then, if a
    /// half-close is pending, the FIN.
    fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.fin_pending {
            self.fin_pending = false;
            match self.tcp.shutdown(Shutdown::Write) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
