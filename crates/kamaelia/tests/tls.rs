//! TLS at component level (the `tls` feature): a [`ServerCore`] speaking TLS on every connection
//! against clients that misbehave — garbage instead of a ClientHello, a handshake that stops half
//! way, a client that says nothing, one that disconnects without close_notify — each of which
//! must end only its own connection, with the reason reported, while a good TLS [`TcpClient`]
//! keeps being served. Handshakes that never finish are ended by the handshake deadline.
//!
//! The misbehaving clients are std sockets (some driving a rustls client by hand) on threads; the
//! server and the good clients run on an axon scheduler stepped by the test. Each test makes its
//! own throwaway PKI with rcgen, written as PEM to a temporary directory.
#![cfg(feature = "tls")]

mod util;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use axon::ipc::CloseReason;
use axon::{Component, Core, Inbox, Ipc, Outbox, Scheduler};
use bytes::Bytes;
use kamaelia::chassis::{ServerConfig, ServerCore};
use kamaelia::internet::tls::rustls::pki_types::ServerName;
use kamaelia::internet::tls::rustls::{self, ClientConfig};
use kamaelia::internet::tls::{client_config, server_config, TlsRole};
use kamaelia::internet::{CsaConfig, SslReady, TcpClient, TcpClientConfig, TcpServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use util::{collector, drain_bytes, pattern, run_until, settle, LIMIT};

// ---------------------------------------------------------------------------------------------
// A throwaway PKI

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kamaelia-tls-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// The PKI of one test: a server role for `localhost` / 127.0.0.1 signed by a test CA, a client
/// configuration trusting that CA, and one trusting an unrelated CA.
struct Pki {
    _dir: TempDir,
    server: TlsRole,
    trusting: Arc<ClientConfig>,
    distrusting: Arc<ClientConfig>,
}

impl Pki {
    fn new(test: &str) -> Pki {
        let dir = TempDir::new(test);
        let write = |name: &str, pem: &str| -> PathBuf {
            let path = dir.0.join(name);
            std::fs::write(&path, pem).expect("write a PEM file");
            path
        };
        let ca = make_ca("kamaelia test CA");
        let other = make_ca("unrelated test CA");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        let cert = write("server.pem", &cert.pem());
        let key = write("server.key", &key.serialize_pem());
        let ca = write("ca.pem", &ca.pem());
        let other = write("other-ca.pem", &other.pem());
        Pki {
            server: TlsRole::server(server_config(&cert, &key).unwrap()),
            trusting: client_config(Some(&ca)).unwrap(),
            distrusting: client_config(Some(&other)).unwrap(),
            _dir: dir,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A recording echo handler

/// What one connection's handler saw.
#[derive(Debug, Default)]
struct Seen {
    /// Every `sslready` answer.
    sslready: Vec<SslReady>,
    /// The reason in the adapter's `shutdownCSA` (on `control`, from the adapter's `signal`).
    shutdown_csa: Option<CloseReason>,
    /// The reason in the server's `socketShutdown` (on `control`).
    socket_shutdown: Option<CloseReason>,
}

/// Per connection, by the client's address.
type Log = Rc<RefCell<HashMap<SocketAddr, Seen>>>;

/// Echoes like `Echo`, and records into the log what arrives on `sslready` and the reasons on
/// `control`; ends on `socketShutdown`.
struct Recorder {
    core: Core,
    inbox: Inbox<Bytes>,
    control: Inbox<Ipc>,
    sslready: Inbox<SslReady>,
    outbox: Outbox<Bytes>,
    signal: Outbox<Ipc>,
    peer: SocketAddr,
    log: Log,
}

impl Recorder {
    fn new(peer: SocketAddr, log: Log) -> Self {
        let core = Core::new("Recorder");
        log.borrow_mut().entry(peer).or_default();
        Self {
            inbox: core.inbox("inbox", "bytes from the peer"),
            control: core.inbox("control", "the end of the connection"),
            sslready: core.inbox("sslready", "the TLS handshake's outcome"),
            outbox: core.outbox("outbox", "bytes back"),
            signal: core.outbox("signal", "producerFinished after the peer's"),
            core,
            peer,
            log,
        }
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("peer", &self.peer)
            .finish()
    }
}

impl Component for Recorder {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn main(self) {
        loop {
            while let Some(r) = self.sslready.recv_now() {
                self.log
                    .borrow_mut()
                    .get_mut(&self.peer)
                    .unwrap()
                    .sslready
                    .push(r);
            }
            if let Some(chunk) = self.inbox.recv_now() {
                self.outbox.send_wait(chunk).await;
                continue;
            }
            if let Some(c) = self.control.recv_now() {
                let mut log = self.log.borrow_mut();
                let seen = log.get_mut(&self.peer).unwrap();
                match c {
                    Ipc::ProducerFinished(_) => {
                        let _ = self.signal.send(Ipc::producer_finished());
                    }
                    Ipc::ShutdownCsa(s) => {
                        assert!(seen.shutdown_csa.is_none(), "shutdownCSA twice");
                        seen.shutdown_csa = s.reason;
                    }
                    Ipc::SocketShutdown(s) => {
                        assert!(seen.socket_shutdown.is_none(), "socketShutdown twice");
                        seen.socket_shutdown = Some(s.reason);
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

/// How long a handshake may take in these tests: short, so stalled handshakes end soon, and still
/// far more than a loopback handshake needs.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(2);

/// A TLS echo server on 127.0.0.1 with a short handshake deadline, recording into `log`.
fn tls_server(sched: &Scheduler, pki: &Pki, log: &Log) -> (SocketAddr, Inbox<Ipc>) {
    tls_server_with(sched, pki, log, 64)
}

/// As [`tls_server`], with each handler's `inbox` limited to `inbox_size` messages (64 there).
fn tls_server_with(
    sched: &Scheduler,
    pki: &Pki,
    log: &Log,
    inbox_size: usize,
) -> (SocketAddr, Inbox<Ipc>) {
    let csa = CsaConfig::default().tls_handshake_timeout(HANDSHAKE_DEADLINE);
    let mut config = ServerConfig::default()
        .tcp(TcpServerConfig::default().csa(csa))
        .tls(pki.server.clone());
    config.handler_inbox_size = inbox_size;
    let log = log.clone();
    let server = ServerCore::new(
        "127.0.0.1:0".parse().unwrap(),
        move |conn| Box::new(Recorder::new(conn.peer, log.clone())),
        config,
    )
    .unwrap();
    let addr = server.local_addr();
    let control = server.control().clone();
    sched.activate(server);
    (addr, control)
}

/// The reason the server's handler got for `peer`'s connection, once both reports are in;
/// checks they agree.
fn reason_for(log: &Log, peer: SocketAddr) -> Option<CloseReason> {
    let log = log.borrow();
    let seen = log.get(&peer)?;
    let reason = seen.socket_shutdown.clone()?;
    let csa = seen
        .shutdown_csa
        .clone()
        .expect("shutdownCSA before socketShutdown");
    assert_eq!(
        format!("{csa:?}"),
        format!("{reason:?}"),
        "shutdownCSA and socketShutdown disagree for {peer}"
    );
    Some(reason)
}

fn io_reason(reason: &CloseReason) -> &io::Error {
    match reason {
        CloseReason::Io(e) => e,
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

/// A good TLS client on the scheduler: a `TcpClient` that sends `messages`, then half-closes.
struct GoodClient {
    received: Inbox<Bytes>,
    signal: Inbox<Ipc>,
    sslready: Inbox<SslReady>,
    expected: Vec<u8>,
    got: RefCell<Vec<u8>>,
}

impl GoodClient {
    fn start(
        sched: &Scheduler,
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        messages: Vec<Bytes>,
    ) -> GoodClient {
        let role = TlsRole::client(config, "localhost").unwrap();
        let client = TcpClient::new(
            "127.0.0.1",
            addr.port(),
            TcpClientConfig::default().tls(role),
        );
        let c = GoodClient {
            received: collector("echoed bytes"),
            signal: collector("client signal"),
            sslready: collector("client sslready"),
            expected: messages.iter().flat_map(|m| m.to_vec()).collect(),
            got: RefCell::default(),
        };
        client.outbox().link_to(&c.received).unwrap();
        client.signal().link_to(&c.signal).unwrap();
        client.sslready().link_to(&c.sslready).unwrap();
        for m in messages {
            client.inbox().deliver(m).unwrap();
        }
        client.control().deliver(Ipc::producer_finished()).unwrap();
        sched.activate(client);
        c
    }

    /// The client's final `socketShutdown` reason, once it has ended.
    fn finished(&self, signals: &mut Vec<Ipc>) -> Option<CloseReason> {
        drain_bytes(&self.received, &mut self.got.borrow_mut());
        signals.extend(self.signal.drain());
        signals.iter().find_map(|m| match m {
            Ipc::SocketShutdown(s) => Some(s.reason.clone()),
            _ => None,
        })
    }

    /// Checks it got every byte back and ended cleanly after a good handshake.
    fn assert_echoed(&self, reason: &CloseReason) {
        drain_bytes(&self.received, &mut self.got.borrow_mut());
        assert!(reason.is_clean(), "the good client ended with {reason:?}");
        let got = self.got.borrow();
        assert_eq!(got.len(), self.expected.len(), "echo length");
        assert!(*got == self.expected, "the echoed bytes differ");
        let ready: Vec<SslReady> = self.sslready.drain().collect();
        assert_eq!(ready, vec![SslReady::Ready]);
    }
}

/// Runs the scheduler until `client` has ended; returns its reason.
fn run_client(sched: &Scheduler, client: &GoodClient, what: &str) -> CloseReason {
    let mut signals = Vec::new();
    let mut reason = None;
    run_until(sched, what, || {
        reason = client.finished(&mut signals);
        reason.is_some()
    });
    reason.unwrap()
}

/// A blocking client socket with [`LIMIT`] as its read and write timeout.
fn raw_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, LIMIT).expect("connect");
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s.set_write_timeout(Some(LIMIT)).unwrap();
    s
}

/// Reads until the server closes the connection (EOF or a reset). Panics if it does not within
/// [`LIMIT`].
fn wait_for_close(mut s: TcpStream, what: &str) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!("{what}: the server did not close the connection within {LIMIT:?}")
            }
            // A reset is the server closing too.
            Err(_) => return,
        }
    }
}

/// The first bytes a rustls client sends: its ClientHello record.
fn client_hello(config: Arc<ClientConfig>) -> Vec<u8> {
    let mut conn =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    assert!(hello.len() > 100, "a ClientHello is longer than that");
    hello
}

/// A misbehaving client on a thread; returns its local address and its thread.
fn spawn_client(
    addr: SocketAddr,
    what: &'static str,
    body: impl FnOnce(TcpStream) + Send + 'static,
) -> (SocketAddr, JoinHandle<()>) {
    let s = raw_connect(addr);
    let local = s.local_addr().unwrap();
    let h = thread::Builder::new()
        .name(what.to_owned())
        .spawn(move || body(s))
        .unwrap();
    (local, h)
}

/// Joins a client thread (bounded), re-raising its panic.
fn join(h: JoinHandle<()>) {
    for _ in 0..(LIMIT.as_millis() / 5) {
        if h.is_finished() {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    assert!(h.is_finished(), "a client thread is still running");
    if let Err(p) = h.join() {
        std::panic::resume_unwind(p);
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn bad_tls_clients_each_end_only_their_own_connection_with_the_reason_reported() {
    let pki = Pki::new("bad-clients");
    let sched = Scheduler::new();
    let log: Log = Rc::default();
    let (addr, server_control) = tls_server(&sched, &pki, &log);

    // Garbage instead of a ClientHello.
    let garbage = spawn_client(addr, "garbage", |mut s| {
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        wait_for_close(s, "garbage");
    });
    // Half a ClientHello, then nothing: only the deadline ends it.
    let hello = client_hello(pki.trusting.clone());
    let partial = spawn_client(addr, "partial hello", move |mut s| {
        s.write_all(&hello[..hello.len() / 2]).unwrap();
        wait_for_close(s, "partial hello");
    });
    // Connects and says nothing at all.
    let silent = spawn_client(addr, "silent", |s| wait_for_close(s, "silent"));
    // A whole ClientHello, then FIN in the middle of the handshake.
    let hello = client_hello(pki.trusting.clone());
    let quits = spawn_client(addr, "quits mid-handshake", move |mut s| {
        s.write_all(&hello).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        wait_for_close(s, "quits mid-handshake");
    });
    // A full handshake and an echo, then the TCP connection closes without close_notify.
    let config = pki.trusting.clone();
    let no_notify = spawn_client(addr, "no close_notify", move |s| {
        let conn =
            rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap())
                .unwrap();
        let mut tls = rustls::StreamOwned::new(conn, s);
        tls.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        tls.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping");
        // FIN without close_notify.
        tls.sock.shutdown(Shutdown::Write).unwrap();
        wait_for_close(tls.sock, "no close_notify");
    });

    // Every bad client is connected (and handled) before the good one starts.
    run_until(&sched, "five connections accepted", || {
        log.borrow().len() == 5
    });
    let good = GoodClient::start(
        &sched,
        addr,
        pki.trusting.clone(),
        (0..64).map(|i| Bytes::from(pattern(4096, i))).collect(),
    );
    let reason = run_client(&sched, &good, "the good client, alongside the bad ones");
    good.assert_echoed(&reason);

    let (garbage, partial, silent, quits, no_notify) = {
        let clients = [garbage, partial, silent, quits, no_notify];
        let peers: Vec<SocketAddr> = clients.iter().map(|(peer, _)| *peer).collect();
        run_until(&sched, "every bad connection ended", || {
            peers.iter().all(|peer| reason_for(&log, *peer).is_some())
        });
        for (_, h) in clients {
            join(h);
        }
        (peers[0], peers[1], peers[2], peers[3], peers[4])
    };

    let r = reason_for(&log, garbage).unwrap();
    let e = io_reason(&r);
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "garbage: {e}");
    assert!(
        e.to_string().contains("TLS handshake failed"),
        "garbage: {e}"
    );

    for (peer, what) in [(partial, "partial hello"), (silent, "silent")] {
        let r = reason_for(&log, peer).unwrap();
        assert!(
            matches!(r, CloseReason::Timeout("TLS handshake")),
            "{what}: {r:?}"
        );
    }

    let r = reason_for(&log, quits).unwrap();
    assert_eq!(io_reason(&r).kind(), io::ErrorKind::UnexpectedEof, "{r:?}");

    let r = reason_for(&log, no_notify).unwrap();
    let e = io_reason(&r);
    assert_eq!(
        e.kind(),
        io::ErrorKind::UnexpectedEof,
        "no close_notify: {e}"
    );
    assert!(
        e.to_string().contains("close_notify"),
        "no close_notify: {e}"
    );

    // Every makessl got exactly one answer: Ready for the handshake that finished, Failed for
    // the others.
    {
        let log = log.borrow();
        assert_eq!(log[&no_notify].sslready, vec![SslReady::Ready]);
        for (peer, what) in [
            (garbage, "garbage"),
            (partial, "partial hello"),
            (silent, "silent"),
            (quits, "quits mid-handshake"),
        ] {
            let answers = &log[&peer].sslready;
            assert!(
                matches!(answers.as_slice(), [SslReady::Failed(_)]),
                "{what}: sslready said {answers:?}"
            );
        }
    }

    // The server still serves after all that.
    let after = GoodClient::start(
        &sched,
        addr,
        pki.trusting.clone(),
        vec![Bytes::from_static(b"still here")],
    );
    let reason = run_client(&sched, &after, "a good client after the bad ones");
    after.assert_echoed(&reason);

    let _ = server_control.deliver(Ipc::shutdown_microprocess());
    util::run(&sched);
}

#[test]
fn a_message_larger_than_rustls_buffers_crosses_whole() {
    // One `Bytes` of 1 MiB on the client's inbox: far more than rustls buffers at once.
    let pki = Pki::new("big-message");
    let sched = Scheduler::new();
    let log: Log = Rc::default();
    let (addr, server_control) = tls_server(&sched, &pki, &log);
    let good = GoodClient::start(
        &sched,
        addr,
        pki.trusting.clone(),
        vec![
            Bytes::from(pattern(1 << 20, 5)),
            Bytes::from_static(b"tail"),
        ],
    );
    let reason = run_client(&sched, &good, "a 1 MiB message echoed");
    good.assert_echoed(&reason);
    let _ = server_control.deliver(Ipc::shutdown_microprocess());
    util::run(&sched);
}

#[test]
fn records_read_behind_a_full_handler_wait_and_cross_whole() {
    // The handler takes one chunk at a time: the server's adapter holds decrypted chunks and the
    // records it read but could not yet hand to rustls, and must lose none of them.
    let pki = Pki::new("full-handler");
    let sched = Scheduler::new();
    let log: Log = Rc::default();
    let (addr, server_control) = tls_server_with(&sched, &pki, &log, 1);
    let good = GoodClient::start(
        &sched,
        addr,
        pki.trusting.clone(),
        vec![
            Bytes::from(pattern(1 << 20, 7)),
            Bytes::from(pattern(3000, 11)),
            Bytes::from_static(b"tail"),
        ],
    );
    let reason = run_client(
        &sched,
        &good,
        "1 MiB echoed through a one-message handler inbox",
    );
    good.assert_echoed(&reason);
    let _ = server_control.deliver(Ipc::shutdown_microprocess());
    util::run(&sched);
}

#[test]
fn a_client_that_does_not_trust_the_server_fails_and_reports_why() {
    let pki = Pki::new("distrust");
    let sched = Scheduler::new();
    let log: Log = Rc::default();
    let (addr, server_control) = tls_server(&sched, &pki, &log);
    let client = GoodClient::start(
        &sched,
        addr,
        pki.distrusting.clone(),
        vec![Bytes::from_static(b"secret")],
    );
    let reason = run_client(&sched, &client, "the distrusting client to end");
    assert!(!reason.is_clean(), "{reason:?}");
    assert!(
        reason.to_string().contains("certificate"),
        "the reason should name the certificate problem: {reason}"
    );
    let answers: Vec<SslReady> = client.sslready.drain().collect();
    assert!(
        matches!(answers.as_slice(), [SslReady::Failed(why)] if why.contains("certificate")),
        "{answers:?}"
    );
    settle(&sched);
    assert!(
        client.received.is_empty(),
        "nothing may be delivered from an unverified server"
    );
    // The server saw the client's alert (or its close) and ended only that connection.
    run_until(&sched, "the server side of it to end", || {
        log.borrow()
            .values()
            .all(|seen| seen.socket_shutdown.is_some())
    });
    let _ = server_control.deliver(Ipc::shutdown_microprocess());
    util::run(&sched);
}
