//! Helpers shared by the networking tests: collectors, loopback socket pairs, byte patterns, and
//! bounded ways to run a scheduler.
//!
//! Every wait here is bounded twice, in cycles and in time ([`LIMIT`]): a test that would hang
//! fails instead, naming what it was waiting for.
#![allow(dead_code)] // each test file uses a subset

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use axon::ipc::SelectorRequest;
use axon::{Core, FnComponent, Inbox, Ipc, Scheduler};
use bytes::Bytes;
use kamaelia::internet::{Readiness, SelectorMsg};
use socket2::{Domain, SockRef, Socket, Type};

/// The longest any test waits for anything.
pub(crate) const LIMIT: Duration = Duration::from_secs(10);

/// The most scheduler cycles any test runs while waiting for one thing.
const MAX_CYCLES: u64 = 5_000_000;

/// A test-side sink: an inbox on a component that is never activated. What arrives stays there
/// for the test to inspect.
pub(crate) fn collector<T: 'static>(what: &'static str) -> Inbox<T> {
    Core::new("Collector").inbox("inbox", what)
}

/// Everything waiting in `inbox`, oldest first.
pub(crate) fn take_all<T: 'static>(inbox: &Inbox<T>) -> Vec<T> {
    inbox.drain().collect()
}

/// Moves every chunk waiting in `inbox` onto the end of `into`.
pub(crate) fn drain_bytes(inbox: &Inbox<Bytes>, into: &mut Vec<u8>) {
    for chunk in inbox.drain() {
        into.extend_from_slice(&chunk);
    }
}

/// Steps `sched` until at least `n` bytes have come out into `inbox`, appending them to `into`.
/// Fails after [`LIMIT`], naming `what` it was waiting for.
pub(crate) fn receive_at_least(
    sched: &Scheduler,
    inbox: &Inbox<Bytes>,
    into: &mut Vec<u8>,
    n: usize,
    what: &str,
) {
    run_until(sched, what, || {
        drain_bytes(inbox, into);
        into.len() >= n
    });
}

/// Runs `sched` until every non-daemon component has finished, on the test thread. A watchdog
/// daemon stops every component after [`LIMIT`]; the test then fails.
pub(crate) fn run(sched: &Scheduler) {
    let fired = Rc::new(Cell::new(false));
    let flag = fired.clone();
    let dog = FnComponent::<(), (), _>::new("Watchdog", move |b| async move {
        axon::sleep(LIMIT).await;
        flag.set(true);
        if let Some(s) = Scheduler::current() {
            for id in s.components() {
                if id != b.core.id() {
                    s.stop(id);
                }
            }
        }
    });
    dog.core().set_daemon(true);
    sched.activate(dog);
    sched.run();
    assert!(
        !fired.get(),
        "watchdog: the scheduler was still running after {LIMIT:?}"
    );
}

/// Steps `sched` (without blocking in it) until `done` holds. Fails after [`LIMIT`] or too many
/// cycles, naming `what` it was waiting for.
pub(crate) fn run_until(sched: &Scheduler, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut cycles = 0u64;
    while !done() {
        assert!(
            start.elapsed() < LIMIT && cycles < MAX_CYCLES,
            "timed out after {cycles} cycles and {:?} waiting for {what}",
            start.elapsed()
        );
        if !sched.try_tick() {
            // Nothing was runnable: give the kernel (and helper threads) a moment.
            std::thread::sleep(Duration::from_micros(200));
        }
        cycles += 1;
    }
}

/// Steps `sched` for a while so that whatever is already in flight (loopback segments, readiness,
/// messages) has been handled. Used before asserting that something did *not* happen; every such
/// assertion in these tests is paired with a positive check that the event it waits for is real.
pub(crate) fn settle(sched: &Scheduler) {
    for _ in 0..40 {
        if !sched.try_tick() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Deterministic, non-repeating test bytes (xorshift), so reordering or loss cannot go unseen.
pub(crate) fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Socket buffer sizes for a [`tcp_pair_with`]: `None` keeps the system's.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Buffers {
    /// `SO_RCVBUF` / `SO_SNDBUF` of the component's side.
    pub(crate) component: Option<usize>,
    /// `SO_RCVBUF` / `SO_SNDBUF` of the peer's side.
    pub(crate) peer: Option<usize>,
}

impl Buffers {
    /// Small buffers on both sides, so a few hundred KiB fill the connection.
    pub(crate) fn small() -> Self {
        Self {
            component: Some(8 * 1024),
            peer: Some(8 * 1024),
        }
    }
}

fn sized_socket(addr: SocketAddr, size: Option<usize>) -> Socket {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("socket");
    if let Some(n) = size {
        s.set_recv_buffer_size(n).expect("SO_RCVBUF");
        s.set_send_buffer_size(n).expect("SO_SNDBUF");
    }
    s
}

/// A connected loopback pair on 127.0.0.1: the component's side (non-blocking, for mio) and the
/// peer's side (a blocking std socket with [`LIMIT`] as read and write timeout).
pub(crate) fn tcp_pair() -> (mio::net::TcpStream, TcpStream) {
    tcp_pair_with(Buffers::default())
}

/// As [`tcp_pair`], with chosen socket buffer sizes (set before the handshake).
pub(crate) fn tcp_pair_with(bufs: Buffers) -> (mio::net::TcpStream, TcpStream) {
    let (ours, peer) = std_pair_with(bufs);
    (mio::net::TcpStream::from_std(ours), peer)
}

/// As [`tcp_pair_with`], with the component's side still a (non-blocking) std socket, so a test
/// can keep a clone of it to watch what has arrived.
pub(crate) fn std_pair_with(bufs: Buffers) -> (TcpStream, TcpStream) {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let listener = sized_socket(addr, bufs.component);
    listener.bind(&addr.into()).expect("bind");
    listener.listen(8).expect("listen");
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let peer = sized_socket(addr, bufs.peer);
    peer.connect(&addr.into()).expect("connect");
    let (ours, _) = listener.accept().expect("accept");
    let ours: TcpStream = ours.into();
    ours.set_nonblocking(true).unwrap();
    let peer: TcpStream = peer.into();
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    peer.set_write_timeout(Some(LIMIT)).unwrap();
    (ours, peer)
}

/// A listener on `addr` (port 0) with the given `listen` backlog.
pub(crate) fn listener_with_backlog(addr: &str, backlog: i32) -> TcpListener {
    let addr: SocketAddr = addr.parse().unwrap();
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    s.bind(&addr.into()).unwrap();
    s.listen(backlog).unwrap();
    s.into()
}

/// A loopback listener that accepts nothing more: backlog 0 and one connection already queued,
/// which the returned stream keeps there. A connect to it waits: the kernel drops its SYN.
pub(crate) fn full_listener() -> (TcpListener, TcpStream, SocketAddr) {
    let listener = listener_with_backlog("127.0.0.1:0", 0);
    let addr = listener.local_addr().unwrap();
    let filler = TcpStream::connect_timeout(&addr, LIMIT).expect("the first connection fits");
    (listener, filler, addr)
}

/// Steps `sched` until `listener` accepts a connection, which gets [`LIMIT`] as read and write
/// timeout.
pub(crate) fn accept_stepping(sched: &Scheduler, listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let mut accepted = None;
    run_until(sched, "a connection to the listener", || {
        match listener.accept() {
            Ok((s, _)) => accepted = Some(s),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept failed: {e}"),
        }
        accepted.is_some()
    });
    let s = accepted.unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s.set_write_timeout(Some(LIMIT)).unwrap();
    s
}

/// Connects a blocking client with [`LIMIT`] as read and write timeout.
pub(crate) fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, LIMIT).expect("connect");
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s.set_write_timeout(Some(LIMIT)).unwrap();
    s
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
pub(crate) fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

/// What a non-blocking read of everything available found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadState {
    /// More may come.
    Open,
    /// The peer closed its sending side (FIN).
    Eof,
}

/// Sends `msg` to an echo server that `sched` runs and steps it until the same bytes came back.
pub(crate) fn echo_round_trip(sched: &Scheduler, s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    let mut got = Vec::new();
    run_until(sched, "the echo", || {
        read_available(s, &mut got);
        got.len() >= msg.len()
    });
    assert_eq!(got, msg);
}

/// Reads everything `s` has right now onto the end of `into` (switching `s` to non-blocking).
///
/// # Panics
///
/// On any error other than `WouldBlock` (a reset, for example).
pub(crate) fn read_available(s: &mut TcpStream, into: &mut Vec<u8>) -> ReadState {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return ReadState::Eof,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadState::Open,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("peer read failed: {e}"),
        }
    }
}

/// Like [`read_available`], but an error ends the stream too and is returned.
pub(crate) fn read_available_or_error(
    s: &mut TcpStream,
    into: &mut Vec<u8>,
) -> Result<ReadState, io::Error> {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(ReadState::Eof),
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadState::Open),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes as much of `data[*sent..]` as `s` takes without blocking; returns how much it took.
pub(crate) fn write_available(s: &mut TcpStream, data: &[u8], sent: &mut usize) -> usize {
    s.set_nonblocking(true).unwrap();
    let before = *sent;
    while *sent < data.len() {
        match s.write(&data[*sent..]) {
            Ok(0) => break,
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("peer write failed: {e}"),
        }
    }
    *sent - before
}

/// Closes the peer's sending side (FIN); the peer can still read.
pub(crate) fn half_close(s: &TcpStream) {
    s.shutdown(Shutdown::Write).unwrap();
}

/// Drops `s` with `SO_LINGER` 0, so the other side gets a reset (RST) instead of a FIN.
pub(crate) fn reset(s: TcpStream) {
    SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(s);
}

/// The `Ipc` messages as short names, for asserting on sequences.
pub(crate) fn kinds(msgs: &[Ipc]) -> Vec<&'static str> {
    msgs.iter()
        .map(|m| match m {
            Ipc::ProducerFinished(_) => "producerFinished",
            Ipc::ShutdownMicroprocess(_) => "shutdownMicroprocess",
            Ipc::SocketShutdown(_) => "socketShutdown",
            Ipc::ServerShutdown(_) => "serverShutdown",
            Ipc::NewCsa(_) => "newCSA",
            Ipc::ShutdownCsa(_) => "shutdownCSA",
            Ipc::Status(_) => "status",
            Ipc::Notify(_) => "notify",
            Ipc::ErrorInformation(_) => "errorInformation",
            _ => "other",
        })
        .collect()
}

/// A selector request in a comparable form: `(kind, token, reply box name)`.
pub(crate) fn describe_request(msg: &SelectorMsg) -> (&'static str, usize, String) {
    match msg {
        SelectorRequest::NewReader {
            reply, selectable, ..
        } => ("newReader", selectable.0, reply.name().to_owned()),
        SelectorRequest::NewWriter {
            reply, selectable, ..
        } => ("newWriter", selectable.0, reply.name().to_owned()),
        SelectorRequest::RemoveReader { selectable, .. } => {
            ("removeReader", selectable.0, String::new())
        }
        SelectorRequest::RemoveWriter { selectable, .. } => {
            ("removeWriter", selectable.0, String::new())
        }
        _ => ("other", usize::MAX, String::new()),
    }
}

/// The caller recorded in a selector request.
pub(crate) fn request_caller(msg: &SelectorMsg) -> Option<axon::ComponentId> {
    match msg {
        SelectorRequest::NewReader { caller, .. }
        | SelectorRequest::NewWriter { caller, .. }
        | SelectorRequest::RemoveReader { caller, .. }
        | SelectorRequest::RemoveWriter { caller, .. } => Some(*caller),
        _ => None,
    }
}

/// The tokens of the readiness notices waiting in `inbox`, oldest first.
pub(crate) fn tokens(inbox: &Inbox<Readiness>) -> Vec<usize> {
    inbox.drain().map(|r| r.token.0).collect()
}

/// Reads everything a component-side (mio) socket has right now.
pub(crate) fn read_mio(s: &mut mio::net::TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return out,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

/// Waits (bounded) until the component-side socket has at least `n` bytes to read, or EOF when
/// `n` is 0, without taking them: the loopback may deliver asynchronously.
pub(crate) fn wait_for_bytes(s: &mio::net::TcpStream, n: usize) {
    wait_for_peek(|buf| s.peek(buf), n);
}

/// As [`wait_for_bytes`], for a (non-blocking) std socket.
pub(crate) fn wait_for_bytes_std(s: &TcpStream, n: usize) {
    wait_for_peek(|buf| s.peek(buf), n);
}

fn wait_for_peek(mut peek: impl FnMut(&mut [u8]) -> io::Result<usize>, n: usize) {
    let start = Instant::now();
    let mut buf = vec![0u8; n.max(1)];
    loop {
        match peek(&mut buf) {
            Ok(got) if (n == 0 && got == 0) || (n > 0 && got >= n) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("peek failed: {e}"),
        }
        assert!(
            start.elapsed() < LIMIT,
            "timed out waiting for {n} bytes to arrive"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Whether this host can listen on the IPv6 loopback (`::1`); some containers have IPv6 off.
/// The IPv6 tests return early, saying so, when it cannot.
pub(crate) fn ipv6_loopback_available() -> bool {
    match TcpListener::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipped: this host has no IPv6 loopback (::1): {e}");
            false
        }
    }
}
