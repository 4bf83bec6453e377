//! [`TcpServer`]: a listening socket that makes a socket adapter per connection (Kamaelia's
//! `Kamaelia.Internet.TCPServer`).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use axon::ipc::{
    CloseReason, ConnectionId, ConnectionInfo, SelectorRequest, ShutdownCsa, SocketShutdown,
};
use axon::{Component, Core, Inbox, Ipc, Outbox};
use mio::net::TcpListener;
use mio::Token;
use rustc_hash::FxHashMap;

use super::connected_socket_adapter::{
    ConnectedSocketAdapter, ConnectionStats, CsaConfig, Hibernating, OWN_LINKS,
};
use super::selector::{Readiness, SelectorHandle, SelectorMsg};

/// How many connections one wake-up accepts before letting other components run.
const ACCEPTS_PER_WAKE: usize = 64;

/// The memory of hibernated connections' adapters and handlers is handed back to the OS (see
/// [`crate::sys::release_free_memory`]) once no connection has hibernated for this long (their
/// handlers end a little after the server hears of them)...
const TRIM_QUIET: Duration = Duration::from_millis(250);
/// ...or at the latest this long after the first hibernation not yet handed back.
const TRIM_AT_LATEST: Duration = Duration::from_secs(2);

/// Settings for a [`TcpServer`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TcpServerConfig {
    /// Most connections open at once; at the limit the server stops accepting (the kernel's backlog
    /// holds newcomers) until one closes.
    pub max_connections: usize,
    /// The listen backlog.
    pub backlog: i32,
    /// How long to pause accepting after "too many open files" and similar errors.
    pub accept_backoff: Duration,
    /// Settings for each connection's adapter.
    pub csa: CsaConfig,
}

impl Default for TcpServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            backlog: 1024,
            accept_backoff: Duration::from_millis(100),
            csa: CsaConfig::default(),
        }
    }
}

impl TcpServerConfig {
    /// Sets the connection limit (at least 1).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Sets the back-off after accept errors such as "too many open files".
    pub fn accept_backoff(mut self, d: Duration) -> Self {
        self.accept_backoff = d;
        self
    }

    /// Sets each connection adapter's settings.
    pub fn csa(mut self, csa: CsaConfig) -> Self {
        self.csa = csa;
        self
    }
}

/// What a [`TcpServer`] tells its owner on `protocolHandlerSignal`.
#[non_exhaustive]
pub enum ServerEvent {
    /// A connection was accepted (Kamaelia's `newCSA`): here is its adapter, a child of the server,
    /// not yet activated: the receiver wires and activates it.
    NewCsa {
        /// The adapter.
        csa: Box<ConnectedSocketAdapter>,
        /// The connection it wraps.
        connection: ConnectionInfo,
    },
    /// A connection's adapter ended (Kamaelia's `shutdownCSA`), with why.
    ShutdownCsa(ShutdownCsa),
    /// A connection hibernated ([`CsaConfig::hibernate_after`]): its adapter has ended and the
    /// server holds its socket; the receiver ends the connection's handler. The connection is still
    /// open: when it next becomes readable a `NewCsa` with the same connection id follows, or a
    /// `ShutdownCsa` if the server closes it first (idle timeout, shutdown).
    Hibernated {
        /// The connection.
        connection: ConnectionInfo,
    },
}

impl fmt::Debug for ServerEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NewCsa { connection, .. } => write!(f, "NewCsa({connection})"),
            Self::ShutdownCsa(s) => write!(f, "ShutdownCsa({s:?})"),
            Self::Hibernated { connection } => write!(f, "Hibernated({connection})"),
        }
    }
}

/// Binds a listening socket with `SO_REUSEADDR` (and `IPV6_V6ONLY` for IPv6 addresses).
pub(crate) fn bind_listener(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Whether an accept error means "out of resources": back off instead of retrying at once.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM on Linux.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// Listens on a TCP port and makes a [`ConnectedSocketAdapter`] for each connection (Kamaelia's
/// `TCPServer`).
///
/// The listener is bound when the server is made, so a busy port or a bad address is an error
/// value from [`TcpServer::bind`], and [`TcpServer::local_addr`] gives the real address (port 0
/// picks a free one). `SO_REUSEADDR` is on.
///
/// # Inboxes
///
/// * `newconnection` — readiness notices for the listener from the selector.
/// * `_feedbackFromCSA` — `socketShutdown` from the adapters this server made.
/// * `_hibernating` — the sockets of adapters that hibernated.
/// * `_wake` — readiness notices for hibernating connections.
/// * `control` — `serverShutdown` or `shutdownMicroprocess` stops accepting and ends the server.
///
/// # Outboxes
///
/// * `protocolHandlerSignal` — [`ServerEvent`]: `NewCsa` for each accepted connection, `ShutdownCsa`
///   when one ends (with its reason), `Hibernated` when one hibernates (and `NewCsa` again when it
///   wakes).
/// * `signal` — `serverShutdown` when the server ends; `errorInformation` if it could not start.
/// * `_selectorSignal` — registrations to the selector.
///
/// # How it works
///
/// Each readiness notice lets the server accept until the listener would block (at most 64 per
/// wake-up, then it yields), then it asks for the next notice. "Too many open files" and similar
/// errors pause accepting for [`TcpServerConfig::accept_backoff`] instead of spinning or dying;
/// existing connections are unaffected. At [`TcpServerConfig::max_connections`] the server stops
/// accepting until a connection closes. Each adapter is a child of the server, not activated:
/// whoever receives `NewCsa` wires and activates it.
///
/// With [`CsaConfig::hibernate_after`] set, an adapter idle that long hands its socket back and
/// ends. The server registers the socket for readability only, keeps it with the connection's
/// counts (about 150 bytes), and makes a new adapter when it becomes readable (data, EOF or an
/// error). While it sleeps the connection's idle timeout still runs. After a batch of
/// hibernations the server returns freed memory to the OS, so resident memory falls too.
///
/// # Shutdown
///
/// `serverShutdown` or `shutdownMicroprocess` on `control`: the listener is closed at once (new
/// connections are refused), hibernating connections (nothing in flight) are closed and reported
/// with reason `shutdown microprocess`, then the server keeps reporting `ShutdownCsa` for its open
/// connections until the last has closed (their owner decides when: see
/// [`ServerCore`](crate::chassis::ServerCore)'s drain), sends `serverShutdown` on `signal`, and ends.
pub struct TcpServer {
    core: Core,
    newconnection: Inbox<Readiness>,
    feedback: Inbox<Ipc>,
    hibernating: Inbox<Hibernating>,
    wake: Inbox<Readiness>,
    control: Inbox<Ipc>,
    protocol_handler_signal: Outbox<ServerEvent>,
    signal: Outbox<Ipc>,
    selector_signal: Outbox<SelectorMsg>,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    config: TcpServerConfig,
    /// `config.csa`, shared by every adapter this server makes.
    csa_config: Rc<CsaConfig>,
    /// The hibernating connections, shared with whoever asks for [`TcpServer::sleeping`].
    dorm: Rc<RefCell<Dormitory>>,
}

impl TcpServer {
    /// Binds `addr` and makes a server for it.
    ///
    /// # Errors
    ///
    /// The OS error from `bind` / `listen` (e.g. `AddrInUse`, `AddrNotAvailable`,
    /// `PermissionDenied`).
    pub fn bind(addr: SocketAddr, config: TcpServerConfig) -> io::Result<Self> {
        let std_listener = bind_listener(addr, config.backlog)?;
        let local_addr = std_listener.local_addr()?;
        let listener = TcpListener::from_std(std_listener);
        let core = Core::new("TcpServer");
        Ok(Self {
            newconnection: core.inbox("newconnection", "readiness notices for the listener"),
            feedback: core.inbox(
                "_feedbackFromCSA",
                "socketShutdown from this server's adapters",
            ),
            hibernating: core.inbox("_hibernating", "sockets of adapters that hibernated"),
            wake: core.inbox("_wake", "readiness notices for hibernating connections"),
            control: core.inbox("control", "serverShutdown / shutdownMicroprocess: stop"),
            protocol_handler_signal: core.outbox(
                "protocolHandlerSignal",
                "NewCsa for each connection, ShutdownCsa when one ends",
            ),
            signal: core.outbox("signal", "serverShutdown when the server ends"),
            selector_signal: core.outbox("_selectorSignal", "registrations to the selector"),
            core,
            listener: Some(listener),
            local_addr,
            csa_config: Rc::new(config.csa.clone()),
            dorm: Rc::default(),
            config,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A view of the connections hibernating in this server, for stats.
    pub(crate) fn sleeping(&self) -> Sleeping {
        Sleeping(self.dorm.clone())
    }

    /// `protocolHandlerSignal`: new and closed connections.
    pub fn protocol_handler_signal(&self) -> &Outbox<ServerEvent> {
        &self.protocol_handler_signal
    }

    /// `control`: stop requests.
    pub fn control(&self) -> &Inbox<Ipc> {
        &self.control
    }

    /// `signal`: `serverShutdown` at the end.
    pub fn signal(&self) -> &Outbox<Ipc> {
        &self.signal
    }

    fn accept_one(
        &mut self,
        selector: &SelectorHandle,
        open: &mut FxHashMap<ConnectionId, Core>,
    ) -> io::Result<()> {
        let Some(listener) = &self.listener else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let (stream, peer) = listener.accept()?;
        // A listener on a specific address accepts on that address; on a wildcard, ask.
        let local = if self.local_addr.ip().is_unspecified() {
            match stream.local_addr() {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "could not set up an accepted connection");
                    return Ok(());
                }
            }
        } else {
            self.local_addr
        };
        let made = ConnectedSocketAdapter::accepted(
            stream,
            peer,
            local,
            selector,
            self.csa_config.clone(),
        );
        let csa = match made {
            Ok(csa) => csa,
            Err(e) => {
                // The connection is dropped (closed); the server carries on.
                tracing::warn!(%peer, error = %e, "could not set up an accepted connection");
                return Ok(());
            }
        };
        self.hand_out(csa, open)
    }

    /// Makes `csa` a child, records it, and sends it on in a `NewCsa`.
    fn hand_out(
        &mut self,
        mut csa: ConnectedSocketAdapter,
        open: &mut FxHashMap<ConnectionId, Core>,
    ) -> io::Result<()> {
        if self.config.csa.hibernate_after.is_some() {
            csa.set_hibernate_to(self.hibernating.clone());
        }
        let connection = csa.info();
        self.core.add_child(csa.core());
        // Recorded by the adapter, so it goes when the adapter ends; in our postoffice it would make
        // every close scan every open connection's link.
        csa.core()
            .link(csa.creator_feedback(), &self.feedback)
            .map_err(io::Error::other)?;
        open.insert(connection.id, csa.core().clone());
        let _ = self.protocol_handler_signal.send(ServerEvent::NewCsa {
            csa: Box::new(csa),
            connection,
        });
        Ok(())
    }

    /// Takes the socket of an adapter that hibernated and waits for it to become readable.
    fn put_to_sleep(
        &self,
        h: Hibernating,
        selector: &SelectorHandle,
        open: &mut FxHashMap<ConnectionId, Core>,
        dorm: &mut Dormitory,
    ) {
        let connection = h.counters.connection();
        if let Some(core) = open.remove(&connection.id) {
            self.core.remove_child(&core);
            if open.capacity() > 4 * open.len().max(64) {
                open.shrink_to_fit();
            }
        }
        let token = h.token;
        if self.listener.is_none() {
            // Shutting down: a connection with nothing in flight closes now (its only
            // descriptor, so it leaves the `epoll` set as `h` is dropped).
            selector.forget(token);
            self.report_closed(connection, CloseReason::Shutdown);
            return;
        }
        // The socket is still registered under the adapter's token, which is the server's now.
        // Through the selector's queue, so it follows the old adapter's removal requests.
        let _ = self.selector_signal.send(SelectorRequest::NewReader {
            caller: self.core.id(),
            reply: self.wake.clone(),
            selectable: token,
        });
        let idle_deadline = self.config.csa.idle_timeout.map(|t| h.idle_since + t);
        dorm.insert(token, h, idle_deadline);
        let _ = self
            .protocol_handler_signal
            .send(ServerEvent::Hibernated { connection });
    }

    /// A hibernating connection became readable: a new adapter takes over its socket.
    fn wake_up(
        &mut self,
        token: Token,
        selector: &SelectorHandle,
        open: &mut FxHashMap<ConnectionId, Core>,
        dorm: &mut Dormitory,
    ) {
        let Some(h) = dorm.remove(token) else {
            return; // closed meanwhile
        };
        let connection = h.counters.connection();
        let adopted = ConnectedSocketAdapter::adopt(
            h.stream,
            token,
            h.counters,
            selector,
            self.csa_config.clone(),
            OWN_LINKS,
        );
        let result = adopted.and_then(|csa| self.hand_out(csa, open));
        if let Err(e) = result {
            tracing::warn!(%connection, error = %e, "could not wake a hibernating connection");
            self.report_closed(connection, CloseReason::io(e));
        }
    }

    /// Closes a hibernating connection and reports it.
    fn close_sleeper(
        &self,
        token: Token,
        h: Hibernating,
        reason: CloseReason,
        selector: &SelectorHandle,
    ) {
        let _ = self.selector_signal.send(SelectorRequest::RemoveReader {
            caller: self.core.id(),
            selectable: token,
        });
        // The socket has one descriptor, the one the adapter handed over: closing it takes the
        // socket out of the `epoll` set, no `EPOLL_CTL_DEL` needed (as for an adapter's socket,
        // `Socket::drop_leaves_epoll`).
        selector.forget(token);
        let _ = h.stream.shutdown(std::net::Shutdown::Both);
        self.report_closed(h.counters.connection(), reason);
        drop(h);
    }

    /// Reports a connection closed by the server itself (it has no adapter to do so).
    fn report_closed(&self, connection: ConnectionInfo, reason: CloseReason) {
        tracing::debug!(%connection, %reason, "connection closed");
        let _ = self
            .protocol_handler_signal
            .send(ServerEvent::ShutdownCsa(ShutdownCsa {
                caller: self.core.id(),
                csa: self.core.id(),
                connection: Some(connection),
                reason: Some(reason),
            }));
    }

    /// One pass of the server's loop: handles what arrived, accepts what it can, and says what
    /// to wait for.
    fn turn(&mut self, run: &mut Accepting, dorm: &mut Dormitory) -> Then {
        let selector = run.selector.clone();
        while let Some(c) = self.control.recv_now() {
            if c.is_shutdown_microprocess() {
                if let Some(mut listener) = self.listener.take() {
                    let _ = self.selector_signal.send(SelectorRequest::RemoveReader {
                        caller: self.core.id(),
                        selectable: run.token,
                    });
                    let _ = selector.deregister(&mut listener, run.token);
                    // Dropping the listener closes it: new connections are refused.
                }
            }
        }
        while let Some(m) = self.feedback.recv_now() {
            self.closed(m, &mut run.open);
            // A slot freed up: try accepting again (the backlog may hold connections).
            run.can_accept = true;
        }
        while let Some(h) = self.hibernating.recv_now() {
            self.put_to_sleep(h, &selector, &mut run.open, dorm);
        }
        while let Some(r) = self.wake.recv_now() {
            self.wake_up(r.token, &selector, &mut run.open, dorm);
        }
        let now = Instant::now();
        for (token, h) in dorm.expired(now) {
            self.close_sleeper(token, h, CloseReason::Timeout("idle"), &selector);
            run.can_accept = true;
        }
        dorm.trim_if_due(now);
        if self.newconnection.recv_now().is_some() {
            while self.newconnection.recv_now().is_some() {}
            run.can_accept = true;
            run.armed = false;
        }
        if self.listener.is_none() {
            for (token, h) in dorm.take_all() {
                self.close_sleeper(token, h, CloseReason::Shutdown, &selector);
            }
            return if run.open.is_empty() {
                Then::End
            } else {
                Then::Wait(None)
            };
        }
        if run.backoff_until.is_some_and(|t| now >= t) {
            run.backoff_until = None;
            run.can_accept = true;
        }
        let mut more = false;
        if run.can_accept && run.backoff_until.is_none() {
            let mut accepted = 0;
            while run.open.len() + dorm.len() < self.config.max_connections {
                if accepted == ACCEPTS_PER_WAKE {
                    more = true;
                    break;
                }
                match self.accept_one(&selector, &mut run.open) {
                    Ok(()) => {
                        accepted += 1;
                        run.warned_exhaustion = false;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        run.can_accept = false;
                        break;
                    }
                    Err(e) if is_resource_exhaustion(&e) => {
                        if !run.warned_exhaustion {
                            tracing::warn!(error = %e, backoff = ?self.config.accept_backoff, "accept failed; backing off");
                            run.warned_exhaustion = true;
                        }
                        run.backoff_until = Some(Instant::now() + self.config.accept_backoff);
                        break;
                    }
                    Err(e) => {
                        // ECONNABORTED and friends: that connection is gone, try the next.
                        tracing::debug!(error = %e, "accept error");
                    }
                }
            }
        }
        if !run.can_accept && !run.armed {
            run.armed = true;
            let _ = self.selector_signal.send(SelectorRequest::NewReader {
                caller: self.core.id(),
                reply: self.newconnection.clone(),
                selectable: run.token,
            });
        }
        if more {
            return Then::Yield;
        }
        Then::Wait(earliest(run.backoff_until, dorm.next_deadline()))
    }

    fn closed(&self, msg: Ipc, open: &mut FxHashMap<ConnectionId, Core>) {
        let Ipc::SocketShutdown(SocketShutdown {
            caller,
            connection,
            reason,
        }) = msg
        else {
            return; // other messages on this inbox are dropped, as in Kamaelia
        };
        let Some(core) = connection.and_then(|c| open.remove(&c.id)) else {
            return;
        };
        self.core.remove_child(&core);
        let _ = self
            .protocol_handler_signal
            .send(ServerEvent::ShutdownCsa(ShutdownCsa {
                caller: self.core.id(),
                csa: caller.unwrap_or(core.id()),
                connection,
                reason: Some(reason),
            }));
    }
}

impl fmt::Debug for TcpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpServer")
            .field("core", &self.core)
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl Component for TcpServer {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn main(mut self) {
        let setup = SelectorHandle::current().and_then(|sel| {
            let listener = self.listener.as_mut().ok_or(io::ErrorKind::NotConnected)?;
            let token = sel.register(listener)?;
            Ok((sel, token))
        });
        let (selector, token): (SelectorHandle, Token) = match setup {
            Ok(s) => s,
            Err(e) => {
                let _ = self
                    .signal
                    .send(Ipc::ErrorInformation(axon::ipc::ErrorInformation {
                        caller: Some(self.core.id()),
                        message: format!("TcpServer on {}: {e}", self.local_addr),
                    }));
                return;
            }
        };
        let _ = self.core.link(&self.selector_signal, selector.notify());
        let mut run = Accepting {
            selector,
            token,
            open: FxHashMap::default(),
            can_accept: true,
            armed: false,
            backoff_until: None,
            warned_exhaustion: false,
        };
        let dorm = self.dorm.clone();
        loop {
            // The dormitory is borrowed only for the turn: others (the owner's stats) may look at
            // it while this server waits.
            let next = self.turn(&mut run, &mut dorm.borrow_mut());
            match next {
                Then::End => break,
                Then::Yield => axon::yield_now().await,
                Then::Wait(None) => self.core.pause_for_delivery().await,
                Then::Wait(Some(t)) => {
                    let wait = t.saturating_duration_since(Instant::now());
                    let _ = axon::timeout(wait, self.core.pause_for_delivery()).await;
                }
            }
        }
        let _ = self
            .signal
            .send(Ipc::ServerShutdown(axon::ipc::ServerShutdown {
                caller: Some(self.core.id()),
            }));
    }
}

/// The accepting side of a running [`TcpServer`]: its registration and the adapters it made.
struct Accepting {
    selector: SelectorHandle,
    token: Token,
    open: FxHashMap<ConnectionId, Core>,
    can_accept: bool,
    /// A readiness notice for the listener has been asked for.
    armed: bool,
    backoff_until: Option<Instant>,
    warned_exhaustion: bool,
}

/// What a [`TcpServer`] does after a turn.
enum Then {
    End,
    Yield,
    /// Wait for a delivery, or until the deadline.
    Wait(Option<Instant>),
}

/// The earlier of two optional moments.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A view of the connections hibernating in a [`TcpServer`].
pub(crate) struct Sleeping(Rc<RefCell<Dormitory>>);

impl Sleeping {
    /// Each hibernating connection's traffic so far.
    pub(crate) fn snapshots(&self) -> Vec<ConnectionStats> {
        self.0
            .try_borrow()
            .map(|d| d.sleeping.values().map(|h| h.counters.snapshot()).collect())
            .unwrap_or_default()
    }
}

/// The hibernating connections of a [`TcpServer`]: their sockets and counts, by selector token,
/// with their idle deadlines in order.
#[derive(Default)]
pub(crate) struct Dormitory {
    sleeping: FxHashMap<Token, Hibernating>,
    /// (idle deadline, token, connection id); an entry whose connection has woken or closed is
    /// skipped when it comes up (the id tells a reused token apart).
    deadlines: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// The first hibernation since freed memory was last handed back, and when to do it next.
    trim_pending_since: Option<Instant>,
    trim_at: Option<Instant>,
}

impl Dormitory {
    fn len(&self) -> usize {
        self.sleeping.len()
    }

    fn insert(&mut self, token: Token, h: Hibernating, idle_deadline: Option<Instant>) {
        if let Some(d) = idle_deadline {
            self.deadlines
                .push(Reverse((d, token.0, h.counters.connection().id.0)));
        }
        self.sleeping.insert(token, h);
        let now = Instant::now();
        let first = *self.trim_pending_since.get_or_insert(now);
        self.trim_at = Some((now + TRIM_QUIET).min(first + TRIM_AT_LATEST));
    }

    fn remove(&mut self, token: Token) -> Option<Hibernating> {
        self.sleeping.remove(&token)
    }

    /// Removes and returns the connections whose idle timeout has run out.
    fn expired(&mut self, now: Instant) -> Vec<(Token, Hibernating)> {
        let mut out = Vec::new();
        while let Some(Reverse((deadline, token, id))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let token = Token(token);
            if self
                .sleeping
                .get(&token)
                .is_some_and(|h| h.counters.connection().id.0 == id)
            {
                if let Some(h) = self.sleeping.remove(&token) {
                    out.push((token, h));
                }
            }
        }
        out
    }

    /// Removes and returns every hibernating connection.
    fn take_all(&mut self) -> Vec<(Token, Hibernating)> {
        self.deadlines.clear();
        self.sleeping.drain().collect()
    }

    /// The next moment something is due: an idle deadline or handing memory back.
    fn next_deadline(&self) -> Option<Instant> {
        earliest(
            self.deadlines.peek().map(|Reverse((d, ..))| *d),
            self.trim_at,
        )
    }

    /// Hands freed memory back to the OS once hibernations have quietened down.
    fn trim_if_due(&mut self, now: Instant) {
        if self.trim_at.is_some_and(|t| now >= t) {
            self.trim_at = None;
            self.trim_pending_since = None;
            crate::sys::release_free_memory();
        }
    }
}
