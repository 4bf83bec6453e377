//! [`ConnectedSocketAdapter`]: one connected socket as a component (Kamaelia's
//! `Kamaelia.Internet.ConnectedSocketAdapter`).

use std::cell::{Cell, OnceCell};
use std::fmt;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use axon::ipc::{
    CloseReason, ConnectionId, ConnectionInfo, ProducerFinished, SelectorRequest, ShutdownCsa,
    SocketShutdown,
};
use axon::{BoxDecl, Component, Core, DeliveryFlag, Inbox, Ipc, Outbox};
use bytes::{Buf, Bytes, BytesMut};
use mio::net::TcpStream;
use mio::Token;

use super::selector::{Readiness, SelectorHandle, SelectorMsg};

mod arena;
#[cfg(feature = "tls")]
mod tls_io;

use arena::{read_chunk, read_into_zeroed, Chunk};

/// A request on `makessl` to upgrade the connection to TLS in place.
///
/// It carries the role (client with server name and roots, or server with certificate chain and
/// key; with the `tls` feature) and any bytes the sender already received past the upgrade point
/// ([`MakeSsl::with_read_ahead`]): a STARTTLS handler that got `STARTTLS\r\n` followed by the
/// start of the peer's handshake in one chunk passes that start back, so it is fed to TLS, not lost.
/// Without the `tls` feature every request is answered on `sslready` with [`SslReady::Failed`].
///
/// Data already queued on the adapter's `inbox` is sent *protected*, after the handshake (so a
/// client that upgrades at once never leaks its first bytes). A STARTTLS server whose last
/// plaintext reply must go out before the handshake puts it in the request with
/// [`MakeSsl::send_first`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct MakeSsl {
    #[cfg(feature = "tls")]
    role: Option<super::tls::TlsRole>,
    read_ahead: Bytes,
    send_first: Bytes,
}

impl MakeSsl {
    /// A request to upgrade in `role`.
    #[cfg(feature = "tls")]
    pub fn new(role: super::tls::TlsRole) -> Self {
        Self {
            role: Some(role),
            read_ahead: Bytes::new(),
            send_first: Bytes::new(),
        }
    }

    /// Bytes to send in plaintext before the handshake starts, e.g. STARTTLS's "go ahead" reply.
    pub fn send_first(mut self, bytes: Bytes) -> Self {
        self.send_first = bytes;
        self
    }

    /// Bytes already received past the upgrade point, to be fed to TLS before anything read later.
    pub fn with_read_ahead(mut self, bytes: Bytes) -> Self {
        self.read_ahead = bytes;
        self
    }
}

/// What `sslready` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SslReady {
    /// The handshake finished; the connection is now protected.
    Ready,
    /// The upgrade failed; why.
    Failed(String),
}

/// A connection's live traffic counters (bytes on the wire, so TLS records under TLS; chunks are
/// the `Bytes` messages that went out of `outbox` or were taken from `inbox`).
#[derive(Debug, Clone)]
pub struct ConnectionCounters {
    connection: ConnectionInfo,
    opened: Instant,
    bytes_in: Cell<u64>,
    bytes_out: Cell<u64>,
    chunks_in: Cell<u64>,
    chunks_out: Cell<u64>,
}

impl ConnectionCounters {
    fn new(connection: ConnectionInfo) -> Self {
        Self {
            connection,
            opened: Instant::now(),
            bytes_in: Cell::new(0),
            bytes_out: Cell::new(0),
            chunks_in: Cell::new(0),
            chunks_out: Cell::new(0),
        }
    }

    fn add_in(&self, n: usize) {
        self.bytes_in.set(self.bytes_in.get() + n as u64);
    }

    fn add_out(&self, n: usize) {
        self.bytes_out.set(self.bytes_out.get() + n as u64);
    }

    /// The connection these count.
    pub fn connection(&self) -> ConnectionInfo {
        self.connection
    }

    /// Bytes read from the socket so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.get()
    }

    /// Bytes written to the socket so far.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.get()
    }

    /// A snapshot.
    pub fn snapshot(&self) -> ConnectionStats {
        ConnectionStats {
            connection: self.connection,
            age: self.opened.elapsed(),
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out.get(),
            chunks_in: self.chunks_in.get(),
            chunks_out: self.chunks_out.get(),
        }
    }
}

/// A snapshot of one connection's traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// Which connection.
    pub connection: ConnectionInfo,
    /// How long it has been open.
    pub age: Duration,
    /// Bytes read from the socket.
    pub bytes_in: u64,
    /// Bytes written to the socket.
    pub bytes_out: u64,
    /// Chunks sent out of `outbox`.
    pub chunks_in: u64,
    /// Messages taken from `inbox` to send.
    pub chunks_out: u64,
}

/// Tuning for a [`ConnectedSocketAdapter`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CsaConfig {
    /// Most bytes one read asks for (Kamaelia: 32768).
    pub read_size: usize,
    /// Reads per wake-up before the adapter lets other components run (fairness): with the
    /// defaults, at most 8 × 256 KiB = 2 MiB from one connection before the others get a turn.
    /// A hand-off (below) ends the wake-up early.
    pub reads_per_wake: usize,
    /// A chunk read of at least this many bytes is handed off ([`axon::hand_off`]) and the
    /// component on the other end of `outbox` runs at once, inside the adapter's poll
    /// ([`axon::run_handed_off`]); the adapter then writes whatever it sent back before reading
    /// more. So an echoed or relayed chunk is written while it is still in the processor's cache,
    /// not after every other connection's read of the same round has pushed it out (at 512
    /// connections × 64 KiB, 32 MiB), and a round trip through the handler costs the adapter one
    /// poll, not two. Smaller chunks are run the same way while that brings an answer back at
    /// once (an echo); when it does not (a relay, whose answers come from its other peer), they go
    /// the ordinary way, first come, first served, and the adapter tries again every 32 chunks.
    /// `None`: never hand off. Default 16 KiB.
    pub hand_off_bytes: Option<usize>,
    /// Size limit of `inbox`, in messages: a producer sending faster than the socket drains waits
    /// (or gets `NoSpaceInBox`) once this many messages are queued.
    pub inbox_size: usize,
    /// How long a TLS handshake may take before the connection is ended.
    pub tls_handshake_timeout: Duration,
    /// How long the connect of an adapter made by [`ConnectedSocketAdapter::connect`] may take
    /// before the adapter ends with reason `Timeout("connect")`.
    pub connect_timeout: Duration,
    /// End the connection after this long with no byte either way (reason `Timeout("idle")`).
    pub idle_timeout: Option<Duration>,
    /// Slow-loris guard: in each window of this length in which the peer sends anything at all,
    /// it must send at least [`read_min_bytes`](Self::read_min_bytes), or the connection ends
    /// (reason `Timeout("read")`). Silence is the idle timeout's business; time spent held back by
    /// our own consumer does not count against the peer.
    pub read_timeout: Option<Duration>,
    /// The least a peer must send per [`read_timeout`](Self::read_timeout) window once it sends.
    pub read_min_bytes: usize,
    /// End the connection when data is queued for the peer but no byte could be written for this
    /// long: the peer does not read (reason `Timeout("write stall")`).
    pub write_stall_timeout: Option<Duration>,
    /// Hibernation, for connections whose protocol handler keeps no state between messages (echo,
    /// discard): after this long with no byte either way and nothing in flight, the adapter hands
    /// its socket back to the [`TcpServer`](super::TcpServer) that made it and ends, and the
    /// connection costs only its socket until it next becomes readable, when a new adapter (and
    /// handler) takes over. Only adapters a `TcpServer` makes hibernate, and never under TLS.
    /// Set it through [`ServerConfig::hibernate_after`](crate::chassis::ServerConfig::hibernate_after),
    /// which knows whether the handler allows it.
    pub hibernate_after: Option<Duration>,
}

impl Default for CsaConfig {
    fn default() -> Self {
        Self {
            read_size: 256 * 1024,
            reads_per_wake: 8,
            hand_off_bytes: Some(16 * 1024),
            inbox_size: 64,
            tls_handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: None,
            read_timeout: None,
            read_min_bytes: 1,
            write_stall_timeout: None,
            hibernate_after: None,
        }
    }
}

impl CsaConfig {
    /// Sets the size limit of `inbox`, in messages (at least 1).
    pub fn inbox_size(mut self, n: usize) -> Self {
        self.inbox_size = n.max(1);
        self
    }

    /// Sets the most bytes one read asks for (at least 1).
    pub fn read_size(mut self, n: usize) -> Self {
        self.read_size = n.max(1);
        self
    }

    /// Sets the size from which a chunk read is handed off to the component reading `outbox`, which
    /// then runs inside the adapter's poll (`None`: never; see
    /// [`hand_off_bytes`](Self::hand_off_bytes)).
    pub fn hand_off_bytes(mut self, n: Option<usize>) -> Self {
        self.hand_off_bytes = n;
        self
    }

    /// Sets how long a TLS handshake may take before the connection is ended.
    pub fn tls_handshake_timeout(mut self, d: Duration) -> Self {
        self.tls_handshake_timeout = d;
        self
    }

    /// Sets how long the connect of an adapter made by [`ConnectedSocketAdapter::connect`] may take.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Sets the idle timeout (`None`: never).
    pub fn idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Sets the slow-loris guard: at least `min_bytes` per `window` once the peer sends anything
    /// (`None`: off).
    pub fn read_timeout(mut self, window: Option<Duration>, min_bytes: usize) -> Self {
        self.read_timeout = window;
        self.read_min_bytes = min_bytes.max(1);
        self
    }

    /// Sets the write-stall timeout (`None`: never).
    pub fn write_stall_timeout(mut self, d: Option<Duration>) -> Self {
        self.write_stall_timeout = d;
        self
    }

    /// Sets hibernation (`None`: never); see [`CsaConfig::hibernate_after`].
    pub fn hibernate_after(mut self, d: Option<Duration>) -> Self {
        self.hibernate_after = d;
        self
    }

    /// Whether any timeout can end the connection.
    fn times_out(&self) -> bool {
        self.idle_timeout.is_some()
            || self.read_timeout.is_some()
            || self.write_stall_timeout.is_some()
    }

    /// Whether the adapter keeps clocks: for a timeout or for hibernation.
    fn has_timeouts(&self) -> bool {
        self.hibernate_after.is_some() || self.times_out()
    }
}

/// Waits for `pause` or `timer`, whichever is first; true if the timer fired.
///
/// The pause is polled first: a wake by a delivery, by far the most common, then costs no clock
/// read. A timer that expired meanwhile is seen on the next wait (the caller re-checks its real
/// deadlines on every pass anyway). A plain `poll_fn`, not an `async fn`, so the adapter's
/// future holds one copy of the pause, not two.
fn race<'a>(
    mut pause: axon::Pause<'a>,
    timer: &'a mut axon::Sleep,
) -> impl Future<Output = bool> + 'a {
    std::future::poll_fn(move |cx| {
        if Pin::new(&mut pause).poll(cx).is_ready() {
            return Poll::Ready(false);
        }
        Pin::new(&mut *timer).poll(cx).map(|()| true)
    })
}

/// What the adapter's loop does after one pass ([`ConnectedSocketAdapter::step`]).
enum Next {
    /// The handler ran inside this pass: go round again at once, for what it sent back.
    Again,
    /// Reading stopped at the per-wake budget: let other components run, then go on.
    Yield,
    /// Nothing more to do until something wakes the adapter, or a deadline.
    Wait,
    /// The adapter has ended, for this reason.
    End(CloseReason),
    /// Idle for [`CsaConfig::hibernate_after`] with nothing in flight: hand the socket back.
    Hibernate,
}

/// The clocks behind the idle, read and write-stall timeouts and hibernation.
///
/// Every clock only moves forward, so each deadline derived from one only moves later. That lets
/// a busy connection skip the deadline arithmetic: `due` is a lower bound on the earliest
/// timeout, computed when it passes, and each pass of the adapter's loop only moves the clocks and
/// compares the time with `due` (one clock read, no sums). The same goes for `hibernate_check`.
struct Clocks {
    /// The scheduler's clock at the last pass.
    now: Instant,
    activity: Instant,
    seen_total: u64,
    window_start: Instant,
    window_in: u64,
    stall_since: Instant,
    stall_out: u64,
    /// No timeout can run out before this.
    due: Instant,
    /// Whether `due` counts the write-stall deadline (the stall clock was running when it was set).
    stall_in_due: bool,
    /// The connection cannot be due to hibernate before this.
    hibernate_check: Instant,
}

impl Clocks {
    fn new(now: Instant, cfg: &CsaConfig) -> Self {
        let earliest = [cfg.idle_timeout, cfg.read_timeout]
            .into_iter()
            .flatten()
            .min();
        Self {
            now,
            activity: now,
            seen_total: 0,
            window_start: now,
            window_in: 0,
            stall_since: now,
            stall_out: 0,
            due: earliest.map_or(now, |t| now + t),
            stall_in_due: false,
            hibernate_check: now + cfg.hibernate_after.unwrap_or_default(),
        }
    }

    /// Makes `due` count the write-stall deadline (stall timeout `t`), if it does not yet: the
    /// stall clock has just started.
    fn count_stall(&mut self, t: Duration) {
        if !self.stall_in_due {
            self.due = self.due.min(self.stall_since + t);
            self.stall_in_due = true;
        }
    }
}

/// How many chunks smaller than [`CsaConfig::hand_off_bytes`] go the ordinary way after running
/// the handler at once brought nothing back, before the adapter tries again.
const SMALL_CHUNK_RETRY: u8 = 32;

/// How many times in one poll the adapter's loop goes round again at once (`Next::Again`, after
/// the handler ran inside a pass) before it yields: a peer that never stops sending would
/// otherwise keep it going without end.
const MAX_AGAIN_PER_POLL: u8 = 4;

/// The soonest the adapter looks at its deadlines again after a pass (see
/// `ConnectedSocketAdapter::next_deadline`).
const MIN_RECHECK: Duration = Duration::from_millis(1);

/// A new process-unique connection id.
pub(crate) fn next_connection_id() -> ConnectionId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    ConnectionId(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// What a [`ConnectedSocketAdapter`] needs of its socket: non-blocking reads and writes, readiness
/// registration (`mio`), shutdown and addresses. Implemented for `mio`'s `TcpStream`; tests
/// implement it for fault-injecting doubles (partial writes, `WouldBlock` at every step, resets).
pub trait Socket: Read + Write + mio::event::Source + 'static {
    /// Shuts down one or both directions.
    ///
    /// # Errors
    ///
    /// As `shutdown(2)`.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;

    /// The remote address.
    ///
    /// # Errors
    ///
    /// `NotConnected` if the socket is not connected.
    fn peer_addr(&self) -> io::Result<std::net::SocketAddr>;

    /// The local address.
    ///
    /// # Errors
    ///
    /// As `getsockname(2)`.
    fn local_addr(&self) -> io::Result<std::net::SocketAddr>;

    /// Sends small writes at once (`TCP_NODELAY`); a no-op where that means nothing.
    ///
    /// # Errors
    ///
    /// As `setsockopt(2)`.
    fn set_nodelay(&self, nodelay: bool) -> io::Result<()>;

    /// Makes closing the socket reset the connection (`SO_LINGER` 0), for an abort. Best effort.
    fn set_reset_on_close(&self);

    /// The socket's pending error (`SO_ERROR`), cleared by asking: how a non-blocking connect
    /// failed. `Ok(None)` by default, for sockets that never connect in the background.
    ///
    /// # Errors
    ///
    /// As `getsockopt(2)`.
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        Ok(None)
    }

    /// Reads up to `want` bytes (one read), appending them to `buf`, which has room for them.
    /// Returns the count; 0 at end of stream. The default reads through [`Read`] into zeroed
    /// space; `TcpStream` receives straight into the spare capacity.
    ///
    /// # Errors
    ///
    /// As the read, including `WouldBlock`; `buf` is unchanged then.
    fn read_into(&mut self, buf: &mut BytesMut, want: usize) -> io::Result<usize> {
        read_into_zeroed(self, buf, want)
    }

    /// Whether a read that returns less than it asked for has emptied the socket, as with TCP on
    /// Linux, so the adapter may wait for the next readiness edge instead of reading again to
    /// hear `WouldBlock`. False (always read until `WouldBlock`) unless the socket says so.
    fn short_read_drains(&self) -> bool {
        false
    }

    /// Whether dropping the socket closes the one descriptor it registered with the selector,
    /// which takes it out of the `epoll` set by itself. The adapter then ends without an
    /// `epoll_ctl(EPOLL_CTL_DEL)`, one system call per connection. False (deregister first)
    /// unless the socket says so.
    fn drop_leaves_epoll(&self) -> bool {
        false
    }
}

impl Socket for TcpStream {
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        TcpStream::shutdown(self, how)
    }

    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        TcpStream::peer_addr(self)
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        TcpStream::local_addr(self)
    }

    fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        TcpStream::set_nodelay(self, nodelay)
    }

    fn set_reset_on_close(&self) {
        // Failing leaves an orderly close, which still ends the connection.
        let _ = socket2::SockRef::from(self).set_linger(Some(Duration::ZERO));
    }

    fn take_error(&self) -> io::Result<Option<io::Error>> {
        TcpStream::take_error(self)
    }

    fn read_into(&mut self, buf: &mut BytesMut, want: usize) -> io::Result<usize> {
        crate::sys::recv_into_spare(self, buf, want)
    }

    fn short_read_drains(&self) -> bool {
        // A TCP receive returns everything queued, up to the buffer: less means empty.
        cfg!(target_os = "linux")
    }

    fn drop_leaves_epoll(&self) -> bool {
        true
    }
}

/// A connection whose adapter hibernated: its socket, still registered with the selector under
/// `token` (no system call to hand it over), and its counts, on their way to the
/// [`TcpServer`](super::TcpServer), which owns the registration from then on.
pub(crate) struct Hibernating {
    pub(crate) stream: TcpStream,
    pub(crate) token: Token,
    pub(crate) counters: ConnectionCounters,
    /// The last time a byte moved either way, for the idle timeout.
    pub(crate) idle_since: Instant,
}

/// The socket, its registration, and cleanup that happens however the adapter ends.
struct Conn<S: Socket> {
    /// `None` only once the socket went to the server with its registration (hibernation), as
    /// the adapter ends.
    stream: Option<S>,
    token: Token,
    selector: SelectorHandle,
}

impl<S: Socket> Conn<S> {
    /// The socket. Taken only as the adapter hibernates, which is its end: nothing uses it after.
    #[inline]
    fn stream(&self) -> &S {
        match &self.stream {
            Some(s) => s,
            None => unreachable!("the socket is used after it went to the server"),
        }
    }

    /// The socket, to read and write.
    #[inline]
    fn stream_mut(&mut self) -> &mut S {
        match &mut self.stream {
            Some(s) => s,
            None => unreachable!("the socket is used after it went to the server"),
        }
    }
}

impl<S: Socket> Drop for Conn<S> {
    fn drop(&mut self) {
        let Some(stream) = &mut self.stream else {
            return; // hibernated: the server has the socket and its registration
        };
        if stream.drop_leaves_epoll() {
            // Closing the only descriptor, as dropping `stream` does next, leaves the epoll set.
            self.selector.forget(self.token);
        } else {
            // Deregistering a socket that is about to close can only fail harmlessly.
            let _ = self.selector.deregister(stream, self.token);
        }
    }
}

/// Moves the socket out of `slot` if it is a TCP stream (the only kind that hibernates).
fn take_tcp<S: 'static>(slot: &mut Option<S>) -> Option<TcpStream> {
    (slot as &mut dyn std::any::Any)
        .downcast_mut::<Option<TcpStream>>()?
        .take()
}

/// Puts a TCP stream that [`take_tcp`] took back into `slot`.
fn put_tcp<S: 'static>(slot: &mut Option<S>, stream: TcpStream) {
    if let Some(slot) = (slot as &mut dyn std::any::Any).downcast_mut::<Option<TcpStream>>() {
        *slot = Some(stream);
    }
}

/// Where the adapter is in its life.
struct Flags {
    can_read: bool,
    can_write: bool,
    read_armed: bool,
    write_armed: bool,
    read_open: bool,
    write_open: bool,
    /// `producerFinished` arrived: drain, then close the write side.
    finishing: bool,
    /// EOF seen and not yet reported downstream.
    eof_unreported: bool,
    /// A chunk the full `outbox` refused, sent first once there is room.
    held: Option<Bytes>,
    /// The unsent tail of the message being written.
    pending: Option<Bytes>,
    /// Which side closed first, i.e. why the connection ends cleanly.
    first_close: Option<CloseReason>,
    /// The TCP stream has ended (under TLS: rustls has been told).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    tcp_eof: bool,
    /// Under TLS: close_notify has been queued.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    close_notify_sent: bool,
    /// Under TLS: the part of a message rustls has not taken yet (its buffer was full).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    tls_unsent: Option<Bytes>,
    /// Under TLS: records read from the socket that rustls has not taken yet (the outbox was full).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    tls_in: Option<Bytes>,
    /// Under TLS: when the handshake must be done by.
    handshake_deadline: Option<Instant>,
    /// The socket is still connecting ([`ConnectedSocketAdapter::connect`]), by
    /// [`ConnectedSocketAdapter::connect_deadline`]. Nothing is read or written meanwhile: bytes
    /// and a `producerFinished` wait.
    connecting: bool,
    /// A chunk passed on in this pass was handed off ([`CsaConfig::hand_off_bytes`]): stop
    /// reading and write what the handler sent back first.
    handed_off: bool,
    /// The handler ran inside this pass ([`axon::run_handed_off`]) and sent something back,
    /// which is not announced by a wake: the next pass follows at once.
    ran_handler: bool,
    /// Chunks smaller than [`CsaConfig::hand_off_bytes`]: 0 while running the handler at once
    /// brings an answer back (an echo); else how many more go the ordinary way before the next
    /// try (a relay's other side answers later, from its own peer).
    small_wait: u8,
}

impl Flags {
    fn new() -> Self {
        Self {
            can_read: true,
            can_write: true,
            read_armed: false,
            write_armed: false,
            read_open: true,
            write_open: true,
            finishing: false,
            eof_unreported: false,
            held: None,
            pending: None,
            first_close: None,
            tcp_eof: false,
            close_notify_sent: false,
            tls_unsent: None,
            tls_in: None,
            handshake_deadline: None,
            connecting: false,
            handed_off: false,
            ran_handler: false,
            small_wait: 0,
        }
    }
}

/// The linkages an adapter's postoffice is made for: the one its creator records there (a
/// `TcpServer` links `CreatorFeedback` to itself). Growing the list later costs a `realloc`, a few
/// hundred instructions per connection in glibc. (Its own `_selectorSignal` is linked only if a
/// request finds the selector not running: rare enough to grow the list for.)
pub(crate) const OWN_LINKS: usize = 1;

/// The same for an adapter that is itself a connection's handler (a relay's target side): the
/// four linkages a chassis makes between a connection's adapter and its handler.
pub(crate) const HANDLER_LINKS: usize = 4;

/// The boxes an adapter makes when it is made: `inbox`, `control`, `ReadReady`, `outbox`,
/// `CreatorFeedback`, `signal`. Deliveries past them are to boxes of [`LATER`].
const MADE_AT_ONCE: usize = 6;

/// The adapter's boxes made on first use ([`BoxDecl`]), by their place in this list.
static LATER: &[BoxDecl] = &[
    BoxDecl::inbox::<Readiness>("SendReady", "readiness notices: the socket may be writable"),
    BoxDecl::inbox::<MakeSsl>("makessl", "upgrade this connection to TLS in place"),
    BoxDecl::outbox::<SslReady>("sslready", "the TLS handshake finished, or failed"),
    BoxDecl::outbox::<SelectorMsg>("_selectorSignal", "registrations to the selector"),
];
const SEND_READY: usize = 0;
const MAKESSL: usize = 1;
const SSLREADY: usize = 2;
const SELECTOR_SIGNAL: usize = 3;

/// Wraps one connected socket: bytes on `inbox` go to the wire, bytes from the wire come out of
/// `outbox` (Kamaelia's `ConnectedSocketAdapter`, "CSA").
///
/// Most programs never make one directly: [`TcpClient`](super::TcpClient) and
/// [`TcpServer`](super::TcpServer) do, and [`ServerCore`](crate::chassis::ServerCore) wires one to a
/// protocol handler per connection. [`ConnectedSocketAdapter::connect`] makes one that finishes a
/// connect of its own first (a relay's side towards its target).
///
/// # Inboxes
///
/// * `inbox` — `Bytes` to send, written in order, one message at a time, never reordered or mixed
///   with other streams. Bounded ([`CsaConfig::inbox_size`]): producers wait while the socket is slow.
/// * `control` — `producerFinished` (or a kind of it), or `shutdownCSA` (the adapter feeding this
///   one has ended, as when a relay's other side closes): send everything already queued, then
///   close the write side (FIN); `shutdownMicroprocess` (or `serverShutdown`): close now, dropping
///   what is queued; `abort`: the same, but the peer gets a reset (RST). Other messages are
///   ignored.
/// * `ReadReady` — readiness notices from the [`Selector`](super::Selector): the socket may be readable.
/// * `SendReady` — readiness notices: the socket may be writable.
/// * `makessl` — [`MakeSsl`]: upgrade to TLS in place.
///
/// # Outboxes
///
/// * `outbox` — `Bytes` received, in order, as they arrive (chunking is arbitrary).
/// * `CreatorFeedback` — `socketShutdown` when the adapter ends, with the connection and the reason.
/// * `sslready` — [`SslReady`] after a `makessl` request.
/// * `signal` — `producerFinished` when the peer has finished sending (EOF: half-close), after
///   every byte read has gone out of `outbox`; `shutdownCSA` when the adapter ends.
/// * `_selectorSignal` — `newReader` / `newWriter` / `removeReader` / `removeWriter` to the selector.
///   A running selector takes them directly instead, after any requests already queued in its
///   `notify` (the same change to its registrations, at the moment it would have made it), so on a
///   live server this outbox stays quiet; before the selector runs they go out here in order.
///
/// `SendReady`, `makessl`, `sslready` and `_selectorSignal` are made on first use
/// ([`axon::BoxDecl`]): by the adapter, by their accessors, or by a lookup or link by name. They
/// are listed with the rest all along; most connections never make them.
///
/// # How it works
///
/// The adapter reads until the socket would block, then asks the selector for one readiness notice
/// (`newReader`), and likewise for writing (`newWriter` only after a write would block). Readiness
/// is a hint; `WouldBlock` is never an error. Each read is cut from a buffer shared by every
/// adapter of the scheduler and sent on as a `Bytes` chunk without copying, so an idle connection
/// holds no buffer. Under TLS one read takes every record the socket holds into a per-thread
/// buffer and rustls is fed from memory; records it cannot take yet (the consumer is full) wait
/// in the adapter. After [`CsaConfig::reads_per_wake`] reads it yields so other connections are
/// served. A chunk is handed off ([`axon::hand_off`]) and the component reading `outbox` runs at
/// once, inside the adapter's poll ([`axon::run_handed_off`]), when it is large (from
/// [`CsaConfig::hand_off_bytes`], 16 KiB) or when doing so brings an answer back at once (an
/// echo); the adapter then writes that answer before reading more. So a chunk is echoed or relayed
/// while it is still in the processor's cache, and a round trip through the handler costs the
/// adapter one poll.
///
/// Back-pressure both ways: when the component fed by `outbox` has a full inbox, the adapter keeps
/// the refused chunk, stops reading (TCP then slows the peer) and resumes when the consumer collects;
/// when the socket is slow, `inbox` fills and producers wait.
///
/// Half-close: when the peer finishes sending, the adapter reports it on `signal` and keeps its
/// write side open until its own producer finishes, so `printf hi | client` against an echo server
/// gets `hi` back. A reset or other I/O error ends both sides at once.
///
/// # Shutdown
///
/// The adapter ends when both directions are closed (peer EOF and our `producerFinished`, in either
/// order), on `shutdownMicroprocess`, on an I/O error, or when its own connect
/// ([`ConnectedSocketAdapter::connect`]) fails or times out. It then closes the socket and sends, in
/// order, `socketShutdown` on `CreatorFeedback`, `shutdownCSA` on `signal` (both carrying the
/// connection id, the peer and local addresses, and the [`CloseReason`]), and `removeReader` /
/// `removeWriter` to the selector (see `_selectorSignal`) — exactly once.
///
/// The one exception is hibernation ([`CsaConfig::hibernate_after`], only for adapters a
/// [`TcpServer`](super::TcpServer) makes for a handler that allows it): an adapter idle that long
/// with nothing in flight hands a second handle to its socket, and its counters, to the server and
/// ends without closing the connection and without `socketShutdown` or `shutdownCSA` (the
/// connection has not ended); it sends only `removeReader` / `removeWriter`. The server makes a new
/// adapter for the connection when it next becomes readable.
pub struct ConnectedSocketAdapter<S: Socket = TcpStream> {
    core: Core,
    inbox: Inbox<Bytes>,
    control: Inbox<Ipc>,
    read_ready: Inbox<Readiness>,
    outbox: Outbox<Bytes>,
    creator_feedback: Outbox<Ipc>,
    signal: Outbox<Ipc>,
    /// The flags of the inboxes every pass asks about, kept here so that asking reads no box.
    watched: Watched,
    // Made on first use ([`LATER`]): most adapters never block on a write, upgrade to TLS or
    // meet a selector that is not running.
    send_ready: OnceCell<Inbox<Readiness>>,
    makessl: OnceCell<Inbox<MakeSsl>>,
    sslready: OnceCell<Outbox<SslReady>>,
    selector_signal: OnceCell<Outbox<SelectorMsg>>,
    conn: Conn<S>,
    /// Shared by every adapter a server makes: one copy, not one per connection.
    config: Rc<CsaConfig>,
    #[cfg(feature = "tls")]
    tls: Option<Box<rustls::Connection>>,
    /// Also holds the connection's id and addresses ([`ConnectedSocketAdapter::info`]).
    counters: Rc<ConnectionCounters>,
    /// Where to hand the socket when the connection hibernates (set by the `TcpServer`).
    hibernate_to: Option<Inbox<Hibernating>>,
    /// What the adapter does first.
    start: Start,
}

/// The delivery flags of the inboxes an adapter looks at on every pass ([`axon::DeliveryFlag`]):
/// with a few hundred connections, reading a box only to learn that nothing came is a cache miss
/// per box per pass.
#[derive(Debug, Clone, Copy)]
struct Watched {
    inbox: DeliveryFlag,
    control: DeliveryFlag,
    read_ready: DeliveryFlag,
}

/// How an adapter begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Read before the first readiness notice: an accepted connection's first bytes are usually
    /// there already.
    ReadFirst,
    /// A connection we made has not been sent anything yet: its first read waits for the selector
    /// (which remembers readiness that came before the request), saving a read that would only
    /// say `WouldBlock`.
    AwaitReadable,
    /// The socket is still connecting: wait for it to become writable (the handshake is done) or
    /// report an error, within [`CsaConfig::connect_timeout`].
    Connecting,
}

impl<S: Socket> ConnectedSocketAdapter<S> {
    /// Wraps a connected, non-blocking socket and registers it with `selector`.
    ///
    /// `config` is a [`CsaConfig`], or an `Rc<CsaConfig>` that many adapters share (as a
    /// [`TcpServer`](super::TcpServer)'s do).
    ///
    /// # Errors
    ///
    /// The OS error if the socket's addresses cannot be read (it is not connected) or it cannot be
    /// registered.
    pub fn new(
        stream: S,
        selector: &SelectorHandle,
        config: impl Into<Rc<CsaConfig>>,
    ) -> io::Result<Self> {
        let (peer, local) = (stream.peer_addr()?, stream.local_addr()?);
        Self::accepted(stream, peer, local, selector, config)
    }

    /// As [`ConnectedSocketAdapter::new`], with the addresses already known (`accept(2)` gives
    /// the peer's; a listener on a specific address gives ours), saving two system calls.
    pub(crate) fn accepted(
        mut stream: S,
        peer: std::net::SocketAddr,
        local: std::net::SocketAddr,
        selector: &SelectorHandle,
        config: impl Into<Rc<CsaConfig>>,
    ) -> io::Result<Self> {
        let info = ConnectionInfo {
            id: next_connection_id(),
            peer,
            local,
        };
        // Small messages go out at once; the adapter never waits to coalesce.
        stream.set_nodelay(true)?;
        let token = selector.register(&mut stream)?;
        Self::adopt(
            stream,
            token,
            ConnectionCounters::new(info),
            selector,
            config.into(),
            OWN_LINKS,
        )
    }

    /// Wraps a connected socket already registered with `selector` under `token` (a
    /// [`TcpClient`](super::TcpClient)'s, which waited for the connect there), whose peer is
    /// known. On error the registration is withdrawn.
    pub(crate) fn registered(
        mut stream: S,
        token: Token,
        peer: std::net::SocketAddr,
        selector: &SelectorHandle,
        config: impl Into<Rc<CsaConfig>>,
        links: usize,
    ) -> io::Result<Self> {
        let local = stream.local_addr().and_then(|local| {
            stream.set_nodelay(true)?;
            Ok(local)
        });
        let local = match local {
            Ok(local) => local,
            Err(e) => {
                let _ = selector.deregister(&mut stream, token);
                return Err(e);
            }
        };
        let info = ConnectionInfo {
            id: next_connection_id(),
            peer,
            local,
        };
        let mut csa = Self::adopt(
            stream,
            token,
            ConnectionCounters::new(info),
            selector,
            config.into(),
            links,
        )?;
        csa.start = Start::AwaitReadable;
        Ok(csa)
    }

    /// Wraps a socket whose non-blocking connect to `peer` is under way, and registers it with
    /// `selector` (see [`ConnectedSocketAdapter::connect`]).
    pub(crate) fn connecting(
        mut stream: S,
        peer: std::net::SocketAddr,
        selector: &SelectorHandle,
        config: impl Into<Rc<CsaConfig>>,
    ) -> io::Result<Self> {
        let token = selector.register(&mut stream)?;
        let mut csa = Self::registered(stream, token, peer, selector, config, HANDLER_LINKS)?;
        csa.start = Start::Connecting;
        Ok(csa)
    }

    /// Wraps a socket already registered with `selector` under `token`, continuing `counters`
    /// (a hibernated connection waking up). `links`: the room its postoffice is made with
    /// ([`OWN_LINKS`] or [`HANDLER_LINKS`]).
    pub(crate) fn adopt(
        stream: S,
        token: Token,
        counters: ConnectionCounters,
        selector: &SelectorHandle,
        config: Rc<CsaConfig>,
        links: usize,
    ) -> io::Result<Self> {
        // Room for the six boxes made now and one made on first use (`SendReady`, which a
        // connecting adapter and a blocked write make).
        let core = Core::with_capacity("ConnectedSocketAdapter", MADE_AT_ONCE + 1);
        let inbox: Inbox<Bytes> = core.inbox("inbox", "bytes to send, in order");
        inbox.set_size(Some(config.inbox_size));
        let control: Inbox<Ipc> = core.inbox(
            "control",
            "producerFinished: drain then close the write side; shutdownMicroprocess: close now",
        );
        let read_ready: Inbox<Readiness> =
            core.inbox("ReadReady", "readiness notices: the socket may be readable");
        let csa = Self {
            watched: Watched {
                inbox: inbox.delivery_flag(),
                control: control.delivery_flag(),
                read_ready: read_ready.delivery_flag(),
            },
            inbox,
            control,
            read_ready,
            outbox: core.outbox("outbox", "bytes received, as they arrive"),
            creator_feedback: core.outbox(
                "CreatorFeedback",
                "socketShutdown: this connection has closed, and why",
            ),
            signal: core.outbox(
                "signal",
                "producerFinished when the peer finished sending; shutdownCSA when this ends",
            ),
            send_ready: OnceCell::new(),
            makessl: OnceCell::new(),
            sslready: OnceCell::new(),
            selector_signal: OnceCell::new(),
            core,
            conn: Conn {
                stream: Some(stream),
                token,
                selector: selector.clone(),
            },
            config,
            #[cfg(feature = "tls")]
            tls: None,
            counters: Rc::new(counters),
            hibernate_to: None,
            start: Start::ReadFirst,
        };
        csa.core.declare_boxes(&LATER);
        // Its postoffice allocated at once for the linkages it will hold (see `OWN_LINKS`).
        csa.core.reserve_links(links);
        Ok(csa)
    }

    /// Lets the adapter hibernate (see [`CsaConfig::hibernate_after`]) by handing its socket to
    /// `to`.
    pub(crate) fn set_hibernate_to(&mut self, to: Inbox<Hibernating>) {
        self.hibernate_to = Some(to);
    }

    /// The connection's id and addresses.
    pub fn info(&self) -> ConnectionInfo {
        self.counters.connection
    }

    /// The connection's live counters, shared: whoever holds them can take a
    /// [`ConnectionStats`] snapshot at any time, also after the adapter has ended.
    pub fn counters(&self) -> Rc<ConnectionCounters> {
        self.counters.clone()
    }

    /// `inbox`: bytes to send.
    pub fn inbox(&self) -> &Inbox<Bytes> {
        &self.inbox
    }

    /// `control`: `producerFinished` / `shutdownMicroprocess`.
    pub fn control(&self) -> &Inbox<Ipc> {
        &self.control
    }

    /// `ReadReady`: readiness notices.
    pub fn read_ready(&self) -> &Inbox<Readiness> {
        &self.read_ready
    }

    /// `SendReady`: readiness notices (made on first use).
    pub fn send_ready(&self) -> &Inbox<Readiness> {
        self.send_ready
            .get_or_init(|| self.core.declared_inbox(SEND_READY))
    }

    /// `makessl`: TLS upgrade requests (made on first use).
    pub fn makessl(&self) -> &Inbox<MakeSsl> {
        self.makessl
            .get_or_init(|| self.core.declared_inbox(MAKESSL))
    }

    /// `outbox`: bytes received.
    pub fn outbox(&self) -> &Outbox<Bytes> {
        &self.outbox
    }

    /// `CreatorFeedback`: `socketShutdown`.
    pub fn creator_feedback(&self) -> &Outbox<Ipc> {
        &self.creator_feedback
    }

    /// `sslready`: the TLS upgrade's outcome (made on first use).
    pub fn sslready(&self) -> &Outbox<SslReady> {
        self.sslready
            .get_or_init(|| self.core.declared_outbox(SSLREADY))
    }

    /// Takes up the boxes made on first use that a lookup elsewhere made (a `makessl` linked by
    /// name, say), so the pass looks into them: called when a delivery went past the boxes made
    /// at once. Boxes nobody made stay unmade, and the adapter's own `SendReady` is already taken
    /// up, so this costs two flag tests then.
    fn take_up_declared(&self) {
        if self.send_ready.get().is_none() && self.core.declared_is_made(SEND_READY) {
            self.send_ready();
        }
        if self.makessl.get().is_none() && self.core.declared_is_made(MAKESSL) {
            self.makessl();
        }
    }

    /// `signal`: `producerFinished` on peer EOF, `shutdownCSA` at the end.
    pub fn signal(&self) -> &Outbox<Ipc> {
        &self.signal
    }

    /// Hands a request to the selector: applied at once, after any requests waiting in its
    /// `notify`, when it is running (as it would apply them on reading them, minus the message and
    /// its poll); else sent on `_selectorSignal`.
    fn to_selector(&self, msg: SelectorMsg) {
        if let Err(msg) = self.conn.selector.apply_now(msg) {
            // The selector is not running: the request waits in its `notify`, linked on first
            // use (most adapters never need it).
            let out = self.selector_signal.get_or_init(|| {
                let out = self.core.declared_outbox(SELECTOR_SIGNAL);
                if !out.is_linked() {
                    if let Err(e) = self.core.link(&out, self.conn.selector.notify()) {
                        tracing::warn!(error = %e, "cannot link to the selector");
                    }
                }
                out
            });
            let _ = out.send(msg);
        }
    }

    fn arm_reader(&self, flags: &mut Flags) {
        if !flags.read_armed {
            flags.read_armed = true;
            self.to_selector(SelectorRequest::NewReader {
                caller: self.core.id(),
                reply: self.read_ready.clone(),
                selectable: self.conn.token,
            });
        }
    }

    fn arm_writer(&self, flags: &mut Flags) {
        if !flags.write_armed {
            flags.write_armed = true;
            self.to_selector(SelectorRequest::NewWriter {
                caller: self.core.id(),
                reply: self.send_ready().clone(),
                selectable: self.conn.token,
            });
        }
    }

    /// Writes queued messages until the queue is empty or the socket would block.
    fn flush(&mut self, flags: &mut Flags) -> io::Result<()> {
        loop {
            if flags.pending.is_none() {
                match self.inbox.recv_now() {
                    Some(b) if b.is_empty() => continue,
                    Some(b) => {
                        self.counters
                            .chunks_out
                            .set(self.counters.chunks_out.get() + 1);
                        flags.pending = Some(b);
                    }
                    None => {
                        if flags.finishing {
                            // Everything queued before producerFinished is on the wire.
                            self.send_fin(flags)?;
                        }
                        return Ok(());
                    }
                }
            }
            if !self.write_pending(flags)? {
                return Ok(());
            }
        }
    }

    /// Closes the write side (FIN) once our producer has finished and everything is sent.
    fn send_fin(&self, flags: &mut Flags) -> io::Result<()> {
        match self.conn.stream().shutdown(Shutdown::Write) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
            Err(e) => return Err(e),
        }
        flags.write_open = false;
        flags
            .first_close
            .get_or_insert(CloseReason::ProducerFinished);
        Ok(())
    }

    /// Interprets one write attempt: `Some(n)` bytes went out (0 after an interruption), `None`
    /// means the socket would block (a writer notice is requested), errors are fatal.
    fn wrote(&self, attempt: io::Result<usize>, flags: &mut Flags) -> io::Result<Option<usize>> {
        match attempt {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                self.counters.add_out(n);
                Ok(Some(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                flags.can_write = false;
                self.arm_writer(flags);
                Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Some(0)),
            Err(e) => Err(e),
        }
    }

    /// Writes `flags.pending` to the socket as it is: true once all of it is out, false if the
    /// socket would block first.
    fn write_pending(&mut self, flags: &mut Flags) -> io::Result<bool> {
        loop {
            if !flags.can_write {
                self.arm_writer(flags);
                return Ok(false);
            }
            let attempt = match flags.pending.as_ref() {
                Some(buf) => self.conn.stream_mut().write(buf),
                None => return Ok(true),
            };
            let Some(n) = self.wrote(attempt, flags)? else {
                return Ok(false);
            };
            if let Some(buf) = flags.pending.as_mut() {
                if n >= buf.len() {
                    flags.pending = None;
                } else {
                    buf.advance(n);
                }
            }
        }
    }

    /// Counts a chunk just read and passes it on to `outbox`, handing it off and running its
    /// consumer at once when that pays (see [`CsaConfig::hand_off_bytes`]): false when the outbox
    /// is full (the chunk is held in `flags` until there is room).
    #[inline]
    fn pass_on(&self, chunk: Bytes, flags: &mut Flags) -> bool {
        let big = self.config.hand_off_bytes.map(|n| chunk.len() >= n);
        let inline = match big {
            None => false,
            Some(true) => true,
            Some(false) if flags.small_wait == 0 => true,
            Some(false) => {
                flags.small_wait -= 1;
                false
            }
        };
        let hand_off = inline && axon::hand_off();
        flags.handed_off |= hand_off;
        self.counters
            .chunks_in
            .set(self.counters.chunks_in.get() + 1);
        let sent = self.send_or_hold(chunk, flags);
        if sent && hand_off {
            let answered = axon::run_handed_off();
            flags.ran_handler |= answered;
            if big == Some(false) {
                flags.small_wait = if answered { 0 } else { SMALL_CHUNK_RETRY };
            }
        }
        sent
    }

    /// Passes a chunk on to `outbox`, or holds it in `flags` if the outbox is full (returns false).
    fn send_or_hold(&self, chunk: Bytes, flags: &mut Flags) -> bool {
        match self.outbox.send(chunk) {
            Ok(()) => true,
            Err(full) => {
                flags.held = Some(full.message);
                false
            }
        }
    }

    /// Reads until the socket would block, the outbox is full, EOF, or the per-wake budget is
    /// spent. Returns whether the budget ran out (there may be more to read).
    fn fill(&mut self, flags: &mut Flags) -> io::Result<bool> {
        flags.handed_off = false;
        for _ in 0..self.config.reads_per_wake {
            match read_chunk(self.conn.stream_mut(), self.config.read_size) {
                Ok(Chunk::Data {
                    bytes: chunk,
                    short,
                }) => {
                    self.counters.add_in(chunk.len());
                    if !self.pass_on(chunk, flags) {
                        return Ok(false);
                    }
                    if short
                        && self.conn.stream().short_read_drains()
                        && !self.conn.selector.read_closed(self.conn.token)
                    {
                        // Drained: skip the read that would only say WouldBlock (see
                        // `SelectorHandle::read_closed`).
                        flags.can_read = false;
                        self.arm_reader(flags);
                        return Ok(false);
                    }
                    if flags.handed_off {
                        // Let the handler have this chunk, and its reply be written, before
                        // reading more.
                        return Ok(true);
                    }
                }
                Ok(Chunk::Eof) => {
                    flags.read_open = false;
                    flags.eof_unreported = true;
                    flags.first_close.get_or_insert(CloseReason::Eof);
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    flags.can_read = false;
                    self.arm_reader(flags);
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Writes through TLS if the connection has been upgraded, else in plaintext.
    fn flush_any(&mut self, flags: &mut Flags) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return self.flush_tls(flags);
        }
        self.flush(flags)
    }

    /// Writes what is queued while the write side is open (or TLS has records to send), once
    /// connected.
    fn write_out(&mut self, flags: &mut Flags) -> io::Result<()> {
        if flags.connecting {
            Ok(())
        } else if flags.write_open || self.tls_wants_write() {
            self.flush_any(flags)
        } else {
            Ok(())
        }
    }

    /// Reads through TLS if the connection has been upgraded, else in plaintext.
    fn fill_any(&mut self, flags: &mut Flags) -> io::Result<bool> {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return self.fill_tls(flags);
        }
        self.fill(flags)
    }

    fn tls_wants_write(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.wants_write();
        }
        false
    }

    /// When the connect must have finished: [`CsaConfig::connect_timeout`] after the adapter was
    /// made (kept in the counters, so the adapter's state does not grow by a deadline).
    fn connect_deadline(&self) -> Instant {
        self.counters.opened + self.config.connect_timeout
    }

    /// While connecting: whether the connect has finished, given the readiness notices so far.
    /// Errors with the connect's failure, or `Timeout("connect")` once its deadline has passed.
    fn check_connect(&self, flags: &mut Flags, now: Instant) -> Result<(), CloseReason> {
        if flags.can_read || flags.can_write {
            // A notice came: a failure shows as the socket's pending error.
            if let Ok(Some(e)) | Err(e) = self.conn.stream().take_error() {
                return Err(CloseReason::io(e));
            }
        }
        if flags.can_write {
            // Linux reports a connecting socket writable only once the handshake is done.
            flags.connecting = false;
            if flags.handshake_deadline.is_some() {
                // A `makessl` that came while connecting: its handshake starts only now.
                flags.handshake_deadline = Some(now + self.config.tls_handshake_timeout);
            }
            return Ok(());
        }
        if now >= self.connect_deadline() {
            Err(CloseReason::Timeout("connect"))
        } else {
            Ok(())
        }
    }

    fn handshake_expired(&self, flags: &mut Flags, now: Instant) -> Option<CloseReason> {
        let deadline = flags.handshake_deadline?;
        (now >= deadline).then(|| {
            flags.handshake_deadline = None;
            let _ = self
                .sslready()
                .send(SslReady::Failed("TLS handshake timed out".to_owned()));
            CloseReason::Timeout("TLS handshake")
        })
    }

    #[cfg(not(feature = "tls"))]
    fn start_tls(&mut self, _req: MakeSsl, _flags: &mut Flags) -> Result<(), CloseReason> {
        let _ = self.sslready().send(SslReady::Failed(
            "TLS is not available: built without the `tls` feature".to_owned(),
        ));
        Ok(())
    }

    /// Ends the connection if one of its timeouts has run out. `now` is the scheduler's clock
    /// ([`axon::now`], one read per cycle rather than one per wake-up): it lags the real time by at
    /// most one scheduler cycle, far below any timeout's resolution.
    ///
    /// Moves the clocks on every pass; compares them with their timeouts only once `now` reaches
    /// [`Clocks::due`], the earliest any of them could run out, and then sets `due` again.
    fn check_timeouts(&self, f: &Flags, c: &mut Clocks, now: Instant) -> Option<CloseReason> {
        let cfg = &self.config;
        let (bytes_in, bytes_out) = (self.counters.bytes_in(), self.counters.bytes_out());
        c.now = now;
        let total = bytes_in + bytes_out;
        if total != c.seen_total {
            c.seen_total = total;
            c.activity = now;
        }
        // Closed, or held back by our own consumer: not the peer's fault.
        let reading = f.read_open && f.held.is_none();
        if cfg.read_timeout.is_some() && !reading {
            c.window_start = now;
            c.window_in = bytes_in;
        }
        // The stall clock runs only while something is queued and nothing gets written.
        let mut stalling = false;
        if let Some(t) = cfg.write_stall_timeout {
            if bytes_out != c.stall_out || !self.has_queued(f) {
                c.stall_since = now;
                c.stall_out = bytes_out;
            } else {
                stalling = true;
                c.count_stall(t);
            }
        }
        if now < c.due {
            return None;
        }
        if cfg.idle_timeout.is_some_and(|t| now >= c.activity + t) {
            return Some(CloseReason::Timeout("idle"));
        }
        if let Some(t) = cfg.read_timeout.filter(|_| reading) {
            if now >= c.window_start + t {
                let got = bytes_in - c.window_in;
                if got > 0 && got < cfg.read_min_bytes as u64 {
                    return Some(CloseReason::Timeout("read"));
                }
                c.window_start = now;
                c.window_in = bytes_in;
            }
        }
        if stalling
            && cfg
                .write_stall_timeout
                .is_some_and(|t| now >= c.stall_since + t)
        {
            return Some(CloseReason::Timeout("write stall"));
        }
        // Each deadline as its clock stands now; a clock that moves only makes its deadline later.
        c.stall_in_due = stalling;
        let deadlines = [
            cfg.idle_timeout.map(|t| c.activity + t),
            cfg.read_timeout.map(|t| c.window_start + t),
            cfg.write_stall_timeout
                .filter(|_| stalling)
                .map(|t| c.stall_since + t),
        ];
        c.due = deadlines
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + Duration::from_secs(24 * 3600));
        None
    }

    /// Whether anything waits to be written to the peer.
    fn has_queued(&self, f: &Flags) -> bool {
        f.pending.is_some()
            || f.tls_unsent.is_some()
            || !self.inbox.is_empty()
            || self.tls_wants_write()
    }

    /// When to look at the deadlines again if nothing wakes the adapter before: the TLS handshake
    /// deadline, [`Clocks::due`] (lowered if the write-stall clock started during the pass), and
    /// hibernation. No clock read: the clocks were set by the pass that just ended.
    fn next_deadline(&self, f: &Flags, c: Option<&mut Clocks>) -> Option<Instant> {
        let mut next = f.handshake_deadline;
        if f.connecting {
            let c = self.connect_deadline();
            next = Some(next.map_or(c, |n| n.min(c)));
        }
        if let Some(c) = c {
            let cfg = &self.config;
            if let Some(t) = cfg.write_stall_timeout {
                // The pass may have queued what the peer does not take: the stall clock starts
                // from its last reset, at the start of the pass.
                if !c.stall_in_due && self.has_queued(f) {
                    c.count_stall(t);
                }
            }
            if cfg.times_out() {
                next = Some(next.map_or(c.due, |n| n.min(c.due)));
            }
            if let (Some(t), true) = (cfg.hibernate_after, self.hibernate_to.is_some()) {
                // Past due but something was still in flight: look again after another period
                // (a deadline in the past would wake the adapter at once, again and again).
                let h = if c.hibernate_check > c.now {
                    c.hibernate_check
                } else {
                    c.now + t
                };
                next = Some(next.map_or(h, |n| n.min(h)));
            }
            // Zero-length timeouts (allowed: `Some(Duration::ZERO)`) would put the next look at
            // "now" after every pass, and a timer due at once fires inside the same poll, round and
            // round: the scheduler would never get the poll back.
            next = next.map(|n| n.max(c.now + MIN_RECHECK));
        }
        next
    }

    /// One pass of the adapter's loop: handles what arrived, writes and reads what it can, and
    /// says what to do next.
    ///
    /// `fired`: the deadline of the timer that woke the adapter, if one did. The time is at least
    /// that, whatever the scheduler's clock (read once per cycle) still says; without it, a
    /// deadline between that clock and the real time would look not yet due, the timer would fire
    /// again at once, and the adapter would go round without end inside one poll.
    fn step(
        &mut self,
        flags: &mut Flags,
        mut clocks: Option<&mut Clocks>,
        fired: Option<Instant>,
    ) -> Next {
        let now = || {
            let now = axon::now();
            fired.map_or(now, |f| now.max(f))
        };
        // Only the boxes something was delivered to since the last pass are looked into (each
        // is drained below, so one with no delivery is empty): on a busy server most passes
        // bring data or readiness alone, and each box looked into is a cache miss.
        let delivered = self.core.take_deliveries();
        // Anything for a box made on first use (`SendReady`, `makessl`)? Those are looked into
        // only then.
        let later = delivered.any_after(MADE_AT_ONCE);
        if later {
            self.take_up_declared();
        }
        if delivered.contains(self.watched.control) {
            while let Some(c) = self.control.recv_now() {
                if let Ipc::Abort(_) = c {
                    // Linger 0: closing sends RST and drops whatever the kernel still holds.
                    self.conn.stream().set_reset_on_close();
                    return Next::End(CloseReason::Aborted);
                }
                if c.is_shutdown_microprocess() {
                    return Next::End(CloseReason::Shutdown);
                }
                // A `shutdownCSA` is the end of the adapter that fed this one (a relay's other
                // side): nothing more will come, as with `producerFinished`.
                if c.is_producer_finished() || matches!(c, Ipc::ShutdownCsa(_)) {
                    flags.finishing = true;
                }
            }
        }
        if delivered.contains(self.watched.read_ready) && self.read_ready.recv_now().is_some() {
            while self.read_ready.recv_now().is_some() {}
            flags.can_read = true;
            flags.read_armed = false;
        }
        let send_ready = self.send_ready.get().filter(|_| later);
        if let Some(send_ready) = send_ready.filter(|b| b.delivered_in(delivered)) {
            if send_ready.recv_now().is_some() {
                while send_ready.recv_now().is_some() {}
                flags.can_write = true;
                flags.write_armed = false;
            }
        }
        let makessl = self.makessl.get().filter(|_| later);
        if let Some(makessl) = makessl.filter(|b| b.delivered_in(delivered)) {
            let makessl = makessl.clone();
            while let Some(req) = makessl.recv_now() {
                if let Err(reason) = self.start_tls(req, flags) {
                    return Next::End(reason);
                }
            }
        }
        if flags.connecting {
            if let Err(reason) = self.check_connect(flags, now()) {
                return Next::End(reason);
            }
        }
        if flags.handshake_deadline.is_some() {
            if let Some(reason) = self.handshake_expired(flags, now()) {
                return Next::End(reason);
            }
        }
        if let Some(clocks) = clocks.as_deref_mut() {
            if let Some(reason) = self.check_timeouts(flags, clocks, now()) {
                return Next::End(reason);
            }
        }
        // A chunk already read goes on first, so a write error below cannot lose it when the
        // consumer has room.
        if let Some(chunk) = flags.held.take() {
            self.send_or_hold(chunk, flags);
        }
        if let Err(e) = self.write_out(flags) {
            return Next::End(CloseReason::io(e));
        }
        let mut more = false;
        if flags.read_open && flags.can_read && flags.held.is_none() && !flags.connecting {
            match self.fill_any(flags) {
                Ok(m) => more = m,
                Err(e) => return Next::End(CloseReason::io(e)),
            }
            // A handshake step read from the peer may need an answer written at once.
            if self.tls_wants_write() {
                if let Err(e) = self.flush_any(flags) {
                    return Next::End(CloseReason::io(e));
                }
            }
        }
        // The answer to a drained read, from a handler that ran inside this pass: written now,
        // not in a pass of its own, unless the handler's run delivered anything else too.
        if flags.ran_handler
            && !more
            && !self
                .core
                .deliveries()
                .contains_other_than(self.watched.inbox)
        {
            flags.ran_handler = false;
            if let Err(e) = self.write_out(flags) {
                return Next::End(CloseReason::io(e));
            }
        }
        if flags.eof_unreported && flags.held.is_none() {
            flags.eof_unreported = false;
            let _ = self.signal.send(Ipc::ProducerFinished(ProducerFinished {
                caller: Some(self.core.id()),
                message: Some("peer closed".to_owned()),
            }));
        }
        if !flags.read_open && !flags.write_open && flags.held.is_none() {
            return Next::End(flags.first_close.take().unwrap_or(CloseReason::Eof));
        }
        if std::mem::take(&mut flags.ran_handler) {
            Next::Again
        } else if more {
            Next::Yield
        } else if clocks.is_some_and(|c| self.may_hibernate(flags, c)) {
            Next::Hibernate
        } else {
            Next::Wait
        }
    }

    /// Whether the connection has been idle for [`CsaConfig::hibernate_after`] with nothing in
    /// flight anywhere: no byte queued either way, in the adapter, in its inboxes or in the
    /// handler's inbox, no half-close under way, no TLS, and the socket drained with a readiness
    /// notice requested.
    ///
    /// Costs a comparison while [`Clocks::hibernate_check`] is ahead; once it passes, it moves up
    /// to the real deadline if activity put that later, and stays put (so every pass looks again)
    /// while the deadline has passed but something is in flight.
    fn may_hibernate(&self, f: &Flags, c: &mut Clocks) -> bool {
        let Some(after) = self.config.hibernate_after else {
            return false;
        };
        if c.now < c.hibernate_check || self.hibernate_to.is_none() {
            return false;
        }
        let at = c.activity + after;
        if c.now < at {
            c.hibernate_check = at;
            return false;
        }
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return false;
        }
        f.read_open
            && f.write_open
            && !f.finishing
            && !f.eof_unreported
            && !f.can_read
            && f.read_armed
            && f.held.is_none()
            && f.pending.is_none()
            && f.tls_unsent.is_none()
            && f.tls_in.is_none()
            && f.handshake_deadline.is_none()
            && self.inbox.is_empty()
            && self.control.is_empty()
            && self.read_ready.is_empty()
            && self.makessl.get().is_none_or(Inbox::is_empty)
            && self.outbox.all_collected()
    }

    /// Hands the socket, with its registration, and the counts to the server; the adapter then
    /// ends without closing the connection and without reporting a close. No system call: the
    /// socket stays in the `epoll` set under the same token, and the server asks for its
    /// readiness there (readiness that comes meanwhile is kept by the selector).
    ///
    /// # Errors
    ///
    /// `Unsupported` if the socket is not a TCP stream, and an error if the server cannot take
    /// the connection; the adapter then stays, with its socket.
    fn hibernate(&mut self, idle_since: Instant) -> io::Result<()> {
        let Some(to) = &self.hibernate_to else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        let Some(stream) = take_tcp(&mut self.conn.stream) else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        let sleeper = Hibernating {
            stream,
            token: self.conn.token,
            counters: ConnectionCounters::clone(&self.counters),
            idle_since,
        };
        if let Err(refused) = to.deliver(sleeper) {
            put_tcp(&mut self.conn.stream, refused.message.stream);
            return Err(io::Error::other("the server cannot take the connection"));
        }
        // As in `stop`: these go ahead of the server's request under this token.
        self.remove_registrations();
        Ok(())
    }

    /// Asks the selector to drop this adapter's reader and writer registrations, applied before
    /// the token can be reused or queued behind earlier requests (see `to_selector`), so a later
    /// registration under the same token is not touched.
    fn remove_registrations(&self) {
        let id = self.core.id();
        for msg in [
            SelectorRequest::RemoveReader {
                caller: id,
                selectable: self.conn.token,
            },
            SelectorRequest::RemoveWriter {
                caller: id,
                selectable: self.conn.token,
            },
        ] {
            self.to_selector(msg);
        }
    }

    /// What to wait for when there is nothing to do: held back by a full consumer, a collection
    /// from it; otherwise only deliveries (readiness, data, control). Deadlines are the caller's.
    fn pause(&self, flags: &Flags) -> axon::Pause<'_> {
        if flags.held.is_some() {
            self.core.pause_for_collection(&self.outbox)
        } else {
            self.core.pause_for_delivery()
        }
    }

    /// Closes the socket and reports the end, once. `both_closed`: the peer's EOF has been read
    /// and our FIN sent, so a `shutdown(2)` would only fail with `ENOTCONN`.
    fn stop(self, reason: CloseReason, both_closed: bool) {
        // An abort must reach the peer as a reset only: a shutdown here would send a FIN first,
        // and a peer with nothing left to read would see an orderly EOF.
        if reason != CloseReason::Aborted && !both_closed {
            let _ = self.conn.stream().shutdown(Shutdown::Both);
        }
        let id = self.core.id();
        let _ = self
            .creator_feedback
            .send(Ipc::SocketShutdown(SocketShutdown {
                caller: Some(id),
                connection: Some(self.counters.connection),
                reason: reason.clone(),
            }));
        let _ = self.signal.send(Ipc::ShutdownCsa(ShutdownCsa {
            caller: id,
            csa: id,
            connection: Some(self.counters.connection),
            reason: Some(reason),
        }));
        self.remove_registrations();
        // Dropping `conn` deregisters and closes the socket.
    }
}

impl ConnectedSocketAdapter<TcpStream> {
    /// Starts a TCP connection to `addr` and wraps it at once, before the connection exists: the
    /// adapter finishes the connect itself, through the selector.
    ///
    /// While it connects, bytes on `inbox` and a `producerFinished` or `makessl` on its boxes wait,
    /// and are acted on, in order, once it is connected; `shutdownMicroprocess` abandons the
    /// attempt. A connect that fails (refused, unreachable) or takes longer than
    /// [`CsaConfig::connect_timeout`] ends the adapter like any other end of a connection:
    /// `socketShutdown` on `CreatorFeedback` and `shutdownCSA` on `signal`, with the OS error or
    /// `Timeout("connect")` as the reason.
    ///
    /// This is the lighter way to connect to a known address: one component, where a
    /// [`TcpClient`](super::TcpClient) (which resolves names, tries each address in turn and can
    /// wait or upgrade to TLS first) is a component of its own around an adapter. A relay makes one
    /// per accepted connection.
    ///
    /// # Errors
    ///
    /// The OS error if the connect fails at once (for instance "too many open files", or no route
    /// to `addr`), or the socket cannot be registered with `selector`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use axon::Scheduler;
    /// use bytes::Bytes;
    /// use kamaelia::internet::{ConnectedSocketAdapter, CsaConfig, SelectorHandle};
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let sched = Scheduler::new();
    /// let selector = SelectorHandle::on(&sched)?;
    /// let csa = ConnectedSocketAdapter::connect(
    ///     "127.0.0.1:7".parse().unwrap(),
    ///     &selector,
    ///     CsaConfig::default(),
    /// )?;
    /// // Sent once the connection exists; then the write side is closed.
    /// let _ = csa.inbox().deliver(Bytes::from_static(b"hello"));
    /// let _ = csa.control().deliver(axon::Ipc::producer_finished());
    /// sched.activate(csa);
    /// # Ok(())
    /// # }
    /// ```
    pub fn connect(
        addr: std::net::SocketAddr,
        selector: &SelectorHandle,
        config: impl Into<Rc<CsaConfig>>,
    ) -> io::Result<Self> {
        Self::connecting(TcpStream::connect(addr)?, addr, selector, config)
    }
}

impl<S: Socket> fmt::Debug for ConnectedSocketAdapter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectedSocketAdapter")
            .field("core", &self.core)
            .field("connection", &self.counters.connection)
            .finish()
    }
}

impl<S: Socket> Component for ConnectedSocketAdapter<S> {
    fn core(&self) -> &Core {
        &self.core
    }

    fn main(self) -> impl Future<Output = ()> + 'static {
        // The adapter's life. Every piece of state is a plain local of this one future and each
        // pass of the loop is a plain call (`step`): an `async fn` keeps its argument twice (as
        // argument and as local), nested ones each keep their own copies, and this future is most
        // of an idle connection's memory.
        let mut csa = self;
        async move {
            let mut flags = Flags::new();
            match csa.start {
                Start::ReadFirst => {}
                Start::AwaitReadable => {
                    flags.can_read = false;
                    csa.arm_reader(&mut flags);
                }
                Start::Connecting => {
                    // A failed connect is reported to both notices (the selector counts an error
                    // as readable and writable); success, to the writer's.
                    flags.can_read = false;
                    flags.can_write = false;
                    csa.arm_reader(&mut flags);
                    csa.arm_writer(&mut flags);
                    flags.connecting = true;
                }
            }
            let mut clocks = csa
                .config
                .has_timeouts()
                .then(|| Clocks::new(axon::now(), &csa.config));
            let mut timer: Option<axon::Sleep> = None;
            let mut fired = None;
            let mut again = 0;
            let reason = loop {
                match csa.step(&mut flags, clocks.as_mut(), fired.take()) {
                    Next::End(reason) => break reason,
                    // Bounded, so a peer that never stops sending cannot hold the scheduler.
                    Next::Again if again < MAX_AGAIN_PER_POLL => {
                        again += 1;
                        continue;
                    }
                    Next::Again | Next::Yield => axon::yield_now().await,
                    Next::Hibernate => {
                        let since = clocks.as_ref().map_or(axon::now(), |c| c.activity);
                        match csa.hibernate(since) {
                            // The server has the socket now; dropping the adapter leaves it be.
                            Ok(()) => return,
                            Err(e) => {
                                tracing::debug!(connection = %csa.counters.connection, error = %e, "cannot hibernate; staying awake");
                                if let Some(c) = clocks.as_mut() {
                                    c.activity = axon::now();
                                }
                            }
                        }
                    }
                    // One timer for all deadlines, moved only when a deadline comes *earlier*: when
                    // it fires the loop re-checks the real deadlines and re-arms, so busy
                    // connections do not touch the scheduler's timers per message.
                    Next::Wait => match csa.next_deadline(&flags, clocks.as_mut()) {
                        Some(deadline) => {
                            if timer.as_ref().is_none_or(|t| t.deadline() > deadline) {
                                timer = Some(axon::sleep_until(deadline));
                            }
                            if let Some(t) = timer.as_mut() {
                                if race(csa.pause(&flags), t).await {
                                    fired = timer.take().map(|t| t.deadline());
                                }
                            }
                        }
                        None => {
                            timer = None;
                            csa.pause(&flags).await;
                        }
                    },
                }
                again = 0;
            };
            if flags.handshake_deadline.is_some() {
                // The connection ended mid-handshake (EOF, an I/O error, shutdown): the makessl
                // request still gets its answer.
                let _ = csa
                    .sslready()
                    .send(SslReady::Failed(format!("TLS handshake failed: {reason}")));
            }
            if flags.connecting && !reason.is_clean() {
                let to = csa.counters.connection.peer;
                tracing::info!(target: super::CONNECT_FAILURES, "cannot connect to {to}: {reason}");
            }
            tracing::debug!(connection = %csa.counters.connection, %reason, "connection closed");
            csa.stop(reason, !flags.read_open && !flags.write_open);
        }
    }
}
