//! STARTTLS: one connection that starts in plaintext and is upgraded to TLS in place.
//!
//! Run it with:
//!
//! ```text
//! cargo run -p kamaelia --features tls --example starttls
//! ```
//!
//! (It also runs as a test: `cargo test -p kamaelia --features tls --example starttls`.)
//!
//! A [`ServerCore`] runs one `StarttlsHandler` per connection. The handler greets with
//! `220 ready`, and on the line `STARTTLS` asks its connection's adapter to upgrade: it sends a
//! [`MakeSsl`] on its `makessl` outbox carrying the plaintext go-ahead (`220 go ahead`, sent before
//! the handshake, [`MakeSsl::send_first`]) and whatever followed the command in the same chunk
//! ([`MakeSsl::with_read_ahead`]). Once its `sslready` inbox says [`SslReady::Ready`] it echoes
//! lines, now protected.
//!
//! The client is a [`TcpClient`] driven by a `StarttlsClient`: it reads the greeting, sends
//! `STARTTLS`, waits for the go-ahead, sends a [`MakeSsl`] in the client role (verifying the
//! server against this example's own CA) to the `TcpClient`'s `makessl`, waits for
//! [`SslReady::Ready`] on its `sslready`, sends `hello over tls`, checks the echo and half-closes
//! with `producerFinished` (close_notify, then FIN). Both sides must end cleanly.
//!
//! The client reaches the server through a small wiretap (two threads copying bytes, and keeping
//! a copy): afterwards the example checks that what crossed the wire before the upgrade was the
//! plaintext conversation and that `hello over tls` never appeared on the wire.
//!
//! The CA and the server's certificate (for `localhost` and 127.0.0.1) are made at run time with
//! rcgen and written as PEM to a temporary directory, then loaded with
//! [`tls::server_config`] and [`tls::client_config`].

use std::cell::RefCell;
use std::error::Error;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::rc::Rc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use axon::ipc::CloseReason;
use axon::{Component, Core, Inbox, Ipc, Outbox, Scheduler};
use bytes::{Bytes, BytesMut};
use kamaelia::chassis::{ServerConfig, ServerCore};
use kamaelia::internet::tls::{self, TlsRole};
use kamaelia::internet::{MakeSsl, SslReady, TcpClient, TcpClientConfig};

/// How long the whole exchange may take before the example gives up (a hang guard).
const GIVE_UP: Duration = Duration::from_secs(30);

const GREETING: &[u8] = b"220 ready\r\n";
const GO_AHEAD: &[u8] = b"220 go ahead\r\n";
const SECRET: &[u8] = b"hello over tls";

fn main() -> Result<(), Box<dyn Error>> {
    run()
}

fn run() -> Result<(), Box<dyn Error>> {
    let pki = Pki::generate()?;
    let server_role = TlsRole::server(tls::server_config(&pki.cert, &pki.key)?);
    let client_role = TlsRole::client(tls::client_config(Some(&pki.ca))?, "localhost")?;

    let sched = Scheduler::new();
    let server_seen: Rc<RefCell<ServerSeen>> = Rc::default();
    let seen = server_seen.clone();
    let server = ServerCore::new(
        "127.0.0.1:0".parse()?,
        move |_conn| Box::new(StarttlsHandler::new(server_role.clone(), seen.clone())),
        ServerConfig::default().drain_deadline(Duration::from_secs(5)),
    )?;
    let tap = Wiretap::start(server.local_addr())?;

    let client = TcpClient::new("127.0.0.1", tap.port, TcpClientConfig::default());
    let client_seen: Rc<RefCell<ClientSeen>> = Rc::default();
    let driver = StarttlsClient::new(client_role, server.control().clone(), client_seen.clone());
    axon::link(client.outbox(), &driver.inbox)?;
    axon::link(client.signal(), &driver.control)?;
    axon::link(client.sslready(), &driver.sslready)?;
    axon::link(&driver.outbox, client.inbox())?;
    axon::link(&driver.signal, client.control())?;
    axon::link(&driver.makessl, client.makessl())?;

    sched.activate(server);
    sched.activate(client);
    sched.activate(driver);
    sched.run();
    let wire = tap.finish()?;

    let client = client_seen.borrow();
    let server = server_seen.borrow();
    if let Some(e) = &client.error {
        return Err(format!("client: {e}").into());
    }
    if let Some(e) = &server.error {
        return Err(format!("server: {e}").into());
    }
    println!("client: {}", client.transcript.join("\n        "));
    println!("server: {}", server.transcript.join("\n        "));

    // Both sides upgraded, exchanged the line protected (the handler echoes only after its
    // sslready said Ready), and ended cleanly.
    if server.echoed != [SECRET.to_vec()] {
        return Err(format!("the server echoed {:?}", server.echoed).into());
    }
    match (&client.end, &server.end) {
        (Some(c), Some(s)) if c.is_clean() && s.is_clean() => {
            println!("closed cleanly: client {c}, server {s}");
        }
        (c, s) => return Err(format!("unclean close: client {c:?}, server {s:?}").into()),
    }

    // What an eavesdropper saw: the plaintext phase in the clear, then only TLS records.
    check_wire("client to server", &wire.to_server, b"STARTTLS\r\n")?;
    let mut plain_from_server = GREETING.to_vec();
    plain_from_server.extend_from_slice(GO_AHEAD);
    check_wire("server to client", &wire.to_client, &plain_from_server)?;
    println!(
        "on the wire: {} bytes to the server and {} to the client, `{}` never in the clear",
        wire.to_server.len(),
        wire.to_client.len(),
        String::from_utf8_lossy(SECRET)
    );
    Ok(())
}

/// Checks that `seen` starts with the plaintext phase `plain`, continues with a TLS handshake
/// record (content type 22), and never holds the protected line in the clear.
fn check_wire(direction: &str, seen: &[u8], plain: &[u8]) -> Result<(), Box<dyn Error>> {
    if !seen.starts_with(plain) {
        return Err(format!(
            "{direction}: the plaintext phase was {:?}",
            String::from_utf8_lossy(&seen[..seen.len().min(plain.len())])
        )
        .into());
    }
    if seen.get(plain.len()) != Some(&0x16) {
        return Err(format!("{direction}: no TLS handshake record after the plaintext").into());
    }
    if seen.windows(SECRET.len()).any(|w| w == SECRET) {
        return Err(
            format!("{direction}: the protected line crossed the wire in the clear").into(),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Lines

/// Bytes received, cut into `\r\n`-terminated lines.
#[derive(Debug, Default)]
struct Lines(BytesMut);

impl Lines {
    fn push(&mut self, chunk: &[u8]) {
        self.0.extend_from_slice(chunk);
    }

    /// The next whole line, without its `\r\n`.
    fn next_line(&mut self) -> Option<Bytes> {
        let end = self.0.windows(2).position(|w| w == b"\r\n")?;
        let mut line = self.0.split_to(end + 2);
        line.truncate(end);
        Some(line.freeze())
    }

    /// Everything after the lines taken so far.
    fn take_rest(&mut self) -> Bytes {
        self.0.split().freeze()
    }
}

// ---------------------------------------------------------------------------------------------
// The server's protocol handler

/// What the server's handler saw.
#[derive(Debug, Default)]
struct ServerSeen {
    transcript: Vec<String>,
    /// Lines echoed under TLS, i.e. after `sslready` said Ready.
    echoed: Vec<Vec<u8>>,
    end: Option<CloseReason>,
    error: Option<String>,
}

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Plain,
    Upgrading,
    Protected,
}

/// Greets, waits for `STARTTLS`, upgrades, then echoes lines.
struct StarttlsHandler {
    core: Core,
    inbox: Inbox<Bytes>,
    control: Inbox<Ipc>,
    sslready: Inbox<SslReady>,
    outbox: Outbox<Bytes>,
    signal: Outbox<Ipc>,
    makessl: Outbox<MakeSsl>,
    role: TlsRole,
    seen: Rc<RefCell<ServerSeen>>,
}

impl StarttlsHandler {
    fn new(role: TlsRole, seen: Rc<RefCell<ServerSeen>>) -> Self {
        let core = Core::new("StarttlsHandler");
        Self {
            inbox: core.inbox("inbox", "bytes from the client"),
            control: core.inbox("control", "the client finished; the connection ended"),
            sslready: core.inbox("sslready", "the upgrade's outcome"),
            outbox: core.outbox("outbox", "bytes to the client"),
            signal: core.outbox("signal", "producerFinished: close our side"),
            makessl: core.outbox("makessl", "upgrade this connection to TLS"),
            core,
            role,
            seen,
        }
    }

    fn note(&self, what: String) {
        self.seen.borrow_mut().transcript.push(what);
    }
}

impl std::fmt::Debug for StarttlsHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StarttlsHandler").finish_non_exhaustive()
    }
}

impl Component for StarttlsHandler {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn main(self) {
        let _ = self.outbox.send(Bytes::from_static(GREETING));
        self.note("sent `220 ready` in plaintext".into());
        let mut phase = Phase::Plain;
        let mut lines = Lines::default();
        loop {
            while let Some(r) = self.sslready.recv_now() {
                match r {
                    SslReady::Ready if phase == Phase::Upgrading => {
                        phase = Phase::Protected;
                        self.note("sslready: Ready, now protected".into());
                    }
                    other => {
                        self.seen.borrow_mut().error = Some(format!("sslready said {other:?}"));
                        let _ = self.signal.send(Ipc::shutdown_microprocess());
                    }
                }
            }
            // Until the handshake is done, nothing more is read from the client.
            if phase != Phase::Upgrading {
                if let Some(chunk) = self.inbox.recv_now() {
                    lines.push(&chunk);
                    while let Some(line) = lines.next_line() {
                        match phase {
                            Phase::Plain if &line[..] == b"STARTTLS" => {
                                self.note("got `STARTTLS` in plaintext: upgrading".into());
                                let request = MakeSsl::new(self.role.clone())
                                    .send_first(Bytes::from_static(GO_AHEAD))
                                    .with_read_ahead(lines.take_rest());
                                let _ = self.makessl.send(request);
                                phase = Phase::Upgrading;
                                break;
                            }
                            Phase::Plain => {
                                let _ = self
                                    .outbox
                                    .send(Bytes::from_static(b"530 say STARTTLS first\r\n"));
                            }
                            Phase::Protected => {
                                self.note(format!(
                                    "echoing `{}` under TLS",
                                    String::from_utf8_lossy(&line)
                                ));
                                self.seen.borrow_mut().echoed.push(line.to_vec());
                                let mut reply = BytesMut::from(&line[..]);
                                reply.extend_from_slice(b"\r\n");
                                self.outbox.send_wait(reply.freeze()).await;
                            }
                            // Not read while upgrading.
                            Phase::Upgrading => {}
                        }
                    }
                    continue;
                }
            }
            if let Some(c) = self.control.recv_now() {
                match c {
                    Ipc::ProducerFinished(_) => {
                        // The client's close_notify: finish our side too (close_notify, FIN).
                        self.note("the client finished: closing our side".into());
                        let _ = self.signal.send(Ipc::producer_finished());
                    }
                    Ipc::ShutdownCsa(s) => {
                        self.seen.borrow_mut().end = s.reason;
                        return;
                    }
                    Ipc::SocketShutdown(s) => {
                        self.seen.borrow_mut().end = Some(s.reason);
                        return;
                    }
                    _ => {}
                }
                continue;
            }
            self.core.pause().await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The client

/// What the client saw.
#[derive(Debug, Default)]
struct ClientSeen {
    transcript: Vec<String>,
    end: Option<CloseReason>,
    error: Option<String>,
}

/// Drives a `TcpClient` through the STARTTLS conversation, then stops the server.
struct StarttlsClient {
    core: Core,
    /// The `TcpClient`'s `outbox`.
    inbox: Inbox<Bytes>,
    /// The `TcpClient`'s `signal`.
    control: Inbox<Ipc>,
    /// The `TcpClient`'s `sslready`.
    sslready: Inbox<SslReady>,
    /// To the `TcpClient`'s `inbox`.
    outbox: Outbox<Bytes>,
    /// To the `TcpClient`'s `control`.
    signal: Outbox<Ipc>,
    /// To the `TcpClient`'s `makessl`.
    makessl: Outbox<MakeSsl>,
    role: TlsRole,
    server_control: Inbox<Ipc>,
    seen: Rc<RefCell<ClientSeen>>,
}

impl std::fmt::Debug for StarttlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StarttlsClient").finish_non_exhaustive()
    }
}

impl StarttlsClient {
    fn new(role: TlsRole, server_control: Inbox<Ipc>, seen: Rc<RefCell<ClientSeen>>) -> Self {
        let core = Core::new("StarttlsClient");
        Self {
            inbox: core.inbox("inbox", "bytes from the server"),
            control: core.inbox("control", "the TcpClient's signal"),
            sslready: core.inbox("sslready", "the upgrade's outcome"),
            outbox: core.outbox("outbox", "bytes to the server"),
            signal: core.outbox("signal", "producerFinished: half-close"),
            makessl: core.outbox("makessl", "upgrade the connection to TLS"),
            core,
            role,
            server_control,
            seen,
        }
    }

    fn note(&self, what: &str) {
        self.seen.borrow_mut().transcript.push(what.to_owned());
    }

    /// The next line from the server.
    async fn line(&self, lines: &mut Lines) -> Result<Bytes, String> {
        loop {
            if let Some(line) = lines.next_line() {
                return Ok(line);
            }
            if let Some(chunk) = self.inbox.recv_now() {
                lines.push(&chunk);
                continue;
            }
            if let Some(c) = self.control.recv_now() {
                return Err(format!(
                    "the connection ended while waiting for a line: {c:?}"
                ));
            }
            self.core.pause().await;
        }
    }

    async fn expect_line(&self, lines: &mut Lines, want: &[u8]) -> Result<(), String> {
        let line = self.line(lines).await?;
        if line != want {
            return Err(format!(
                "expected {:?}, got {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&line)
            ));
        }
        self.note(&format!("got `{}`", String::from_utf8_lossy(&line)));
        Ok(())
    }

    /// The whole conversation; returns how the connection ended.
    async fn converse(&self) -> Result<CloseReason, String> {
        let mut lines = Lines::default();
        self.expect_line(&mut lines, &GREETING[..GREETING.len() - 2])
            .await?;
        let _ = self.outbox.send(Bytes::from_static(b"STARTTLS\r\n"));
        self.note("sent `STARTTLS` in plaintext");
        self.expect_line(&mut lines, &GO_AHEAD[..GO_AHEAD.len() - 2])
            .await?;
        if !lines.take_rest().is_empty() {
            return Err("the server sent more plaintext after its go-ahead".into());
        }
        let _ = self.makessl.send(MakeSsl::new(self.role.clone()));
        loop {
            if let Some(r) = self.sslready.recv_now() {
                match r {
                    SslReady::Ready => break,
                    other => return Err(format!("the upgrade failed: {other:?}")),
                }
            }
            if let Some(c) = self.control.recv_now() {
                return Err(format!("the connection ended during the handshake: {c:?}"));
            }
            self.core.pause().await;
        }
        self.note("sslready: Ready, the server's certificate verified");
        let mut line = SECRET.to_vec();
        line.extend_from_slice(b"\r\n");
        let _ = self.outbox.send(Bytes::from(line));
        self.note("sent `hello over tls` under TLS");
        self.expect_line(&mut lines, SECRET).await?;
        // Half-close: close_notify, then FIN; the server then finishes its side.
        let _ = self.signal.send(Ipc::producer_finished());
        self.note("half-closed");
        loop {
            if let Some(chunk) = self.inbox.recv_now() {
                return Err(format!("unexpected bytes after the echo: {chunk:?}"));
            }
            match self.control.recv_now() {
                Some(Ipc::SocketShutdown(s)) => return Ok(s.reason),
                Some(_) => {} // producerFinished: the server finished sending
                None => self.core.pause().await,
            }
        }
    }
}

impl Component for StarttlsClient {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn main(self) {
        let outcome = axon::timeout(GIVE_UP, self.converse()).await;
        match outcome {
            Ok(Ok(reason)) => {
                self.seen.borrow_mut().end = Some(reason);
                // Graceful: the server lets its connection finish, then stops.
                let _ = self.server_control.deliver(Ipc::producer_finished());
            }
            Ok(Err(e)) => self.fail(e),
            Err(_) => self.fail(format!("gave up after {GIVE_UP:?}")),
        }
    }
}

impl StarttlsClient {
    fn fail(&self, e: String) {
        self.seen.borrow_mut().error = Some(e);
        let _ = self.signal.send(Ipc::shutdown_microprocess());
        let _ = self.server_control.deliver(Ipc::shutdown_microprocess());
    }
}

// ---------------------------------------------------------------------------------------------
// The wiretap

/// What crossed the wire, each way.
#[derive(Debug)]
struct Wire {
    to_server: Vec<u8>,
    to_client: Vec<u8>,
}

/// A one-connection TCP relay on 127.0.0.1 that keeps a copy of everything it passes on.
struct Wiretap {
    port: u16,
    thread: JoinHandle<Result<Wire, String>>,
}

impl Wiretap {
    fn start(server: SocketAddr) -> std::io::Result<Wiretap> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let thread = thread::spawn(move || {
            let deadline = Instant::now() + GIVE_UP;
            let client = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            return Err("wiretap: no client came".to_owned());
                        }
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(format!("wiretap: accept: {e}")),
                }
            };
            let setup = || -> std::io::Result<(TcpStream, TcpStream)> {
                client.set_nonblocking(false)?;
                let upstream = TcpStream::connect_timeout(&server, GIVE_UP)?;
                for s in [&client, &upstream] {
                    s.set_read_timeout(Some(GIVE_UP))?;
                    s.set_write_timeout(Some(GIVE_UP))?;
                }
                Ok((client.try_clone()?, upstream))
            };
            let (client2, upstream) = setup().map_err(|e| format!("wiretap: {e}"))?;
            let upstream2 = upstream.try_clone().map_err(|e| e.to_string())?;
            let up = thread::spawn(move || copy(client2, upstream2));
            let to_client = copy(upstream, client);
            let to_server = up
                .join()
                .map_err(|_| "wiretap thread panicked".to_owned())?;
            Ok(Wire {
                to_server: to_server?,
                to_client: to_client?,
            })
        });
        Ok(Wiretap { port, thread })
    }

    /// Waits (bounded) for both directions to end; returns what crossed.
    fn finish(self) -> Result<Wire, Box<dyn Error>> {
        let deadline = Instant::now() + GIVE_UP;
        while !self.thread.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        if !self.thread.is_finished() {
            return Err("wiretap: the connection did not end".into());
        }
        let wire = self
            .thread
            .join()
            .map_err(|_| "wiretap thread panicked")??;
        Ok(wire)
    }
}

/// Copies `from` to `to` until EOF, passing the half-close on; returns a copy of the bytes.
fn copy(mut from: TcpStream, mut to: TcpStream) -> Result<Vec<u8>, String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = from
            .read(&mut buf)
            .map_err(|e| format!("wiretap read: {e}"))?;
        if n == 0 {
            let _ = to.shutdown(Shutdown::Write);
            break;
        }
        to.write_all(&buf[..n])
            .map_err(|e| format!("wiretap write: {e}"))?;
        seen.extend_from_slice(&buf[..n]);
    }
    Ok(seen)
}

// ---------------------------------------------------------------------------------------------
// A throwaway PKI

/// A CA and a server certificate for `localhost` and 127.0.0.1 signed by it, as PEM files in a
/// temporary directory that is removed on drop.
struct Pki {
    dir: PathBuf,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn generate() -> Result<Pki, Box<dyn Error>> {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair, KeyUsagePurpose,
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "starttls example CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;

        let dir = std::env::temp_dir().join(format!(
            "kamaelia-starttls-{}-{:?}",
            std::process::id(),
            thread::current().id()
        ));
        std::fs::create_dir_all(&dir)?;
        let pki = Pki {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            dir,
        };
        std::fs::write(&pki.ca, ca.pem())?;
        std::fs::write(&pki.cert, cert.pem())?;
        std::fs::write(&pki.key, key.serialize_pem())?;
        Ok(pki)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn starttls_exchange() {
        super::run().unwrap();
    }
}
