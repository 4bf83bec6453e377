//! TLS configuration for `makessl` (the `tls` feature): building rustls client and server
//! configurations from PEM files, and the role a [`MakeSsl`](super::MakeSsl) request carries.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

pub use rustls;

/// Which side of the handshake this end plays, with its configuration.
#[derive(Clone)]
#[non_exhaustive]
pub enum TlsRole {
    /// We connect: verify the server's certificate against `config`'s roots for `server_name`,
    /// which is also sent as SNI.
    Client {
        /// The client configuration (roots, protocol versions).
        config: Arc<ClientConfig>,
        /// The name the server's certificate must carry.
        server_name: ServerName<'static>,
    },
    /// We accept: present `config`'s certificate chain.
    Server {
        /// The server configuration (certificate chain and key).
        config: Arc<ServerConfig>,
    },
}

impl fmt::Debug for TlsRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Client { server_name, .. } => write!(f, "Client({server_name:?})"),
            Self::Server { .. } => write!(f, "Server"),
        }
    }
}

impl TlsRole {
    /// A client role verifying `host` (a DNS name or an IP address).
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `host` is neither a valid DNS name nor an IP address.
    pub fn client(config: Arc<ClientConfig>, host: &str) -> io::Result<Self> {
        let server_name = ServerName::try_from(host.to_owned()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid TLS server name {host:?}: {e}"),
            )
        })?;
        Ok(Self::Client {
            config,
            server_name,
        })
    }

    /// A server role.
    pub fn server(config: Arc<ServerConfig>) -> Self {
        Self::Server { config }
    }

    pub(crate) fn connect(&self) -> Result<rustls::Connection, rustls::Error> {
        Ok(match self {
            Self::Client {
                config,
                server_name,
            } => rustls::ClientConnection::new(config.clone(), server_name.clone())?.into(),
            Self::Server { config } => rustls::ServerConnection::new(config.clone())?.into(),
        })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Reads every certificate in a PEM file.
///
/// # Errors
///
/// The file cannot be read, is not PEM, or holds no certificate.
pub fn load_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(format!("{}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!("{}: no certificate found", path.display())));
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
///
/// # Errors
///
/// The file cannot be read or holds no private key.
pub fn load_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| invalid(format!("{}: no usable private key: {e}", path.display())))
}

/// A server configuration presenting the certificate chain in `cert` with the key in `key`.
///
/// # Errors
///
/// The files cannot be read or parsed, or the key does not match the certificate.
pub fn server_config(cert: &Path, key: &Path) -> io::Result<Arc<ServerConfig>> {
    let certs = load_certs(cert)?;
    let key_der = load_key(key)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| invalid(format!("{} / {}: {e}", cert.display(), key.display())))?;
    Ok(Arc::new(config))
}

/// A client configuration that verifies servers against the CA certificates in `ca` or, if
/// `None`, against the Mozilla roots built in (webpki-roots).
///
/// # Errors
///
/// The CA file cannot be read or holds no usable certificate.
pub fn client_config(ca: Option<&Path>) -> io::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in load_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client configuration that accepts **any** server certificate. For tests only: it gives no
/// protection against an attacker on the path, and says so in the log every time it is made.
pub fn insecure_client_config() -> Arc<ClientConfig> {
    tracing::warn!("TLS certificate verification is DISABLED: insecure, for testing only");
    let provider = provider();
    let verifier = Arc::new(NoVerification(provider.clone()));
    // The provider's defaults are always valid protocol versions.
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| ClientConfig::builder());
    Arc::new(
        builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    )
}

#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
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
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
