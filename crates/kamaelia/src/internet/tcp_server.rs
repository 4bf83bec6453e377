//! [`TcpServer`]: a listening socket that makes a socket adapter per connection (Kamaelia's
//! `Kamaelia.Internet.TCPServer`).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use axon::ipc::{ConnectionId, ConnectionInfo, SelectorRequest, ShutdownCsa, SocketShutdown};
use axon::{Component, Core, Inbox, Ipc, Outbox};
use mio::net::TcpListener;
use mio::Token;

use super::connected_socket_adapter::{ConnectedSocketAdapter, CsaConfig};
use super::selector::{Readiness, SelectorHandle, SelectorMsg};

/// How many connections one wake-up accepts before letting other components run.
const ACCEPTS_PER_WAKE: usize = 64;

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
}

impl fmt::Debug for ServerEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NewCsa { connection, .. } => write!(f, "NewCsa({connection})"),
            Self::ShutdownCsa(s) => write!(f, "ShutdownCsa({s:?})"),
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
/// * `control` — `serverShutdown` or `shutdownMicroprocess` stops accepting and ends the server.
///
/// # Outboxes
///
/// * `protocolHandlerSignal` — [`ServerEvent`]: `NewCsa` for each accepted connection, `ShutdownCsa`
///   when one ends (with its reason).
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
/// # Shutdown
///
/// `serverShutdown` or `shutdownMicroprocess` on `control`: the listener is closed at once (new
/// connections are refused), then the server keeps reporting `ShutdownCsa` for its open connections
/// until the last has closed (their owner decides when: see
/// [`ServerCore`](crate::chassis::ServerCore)'s drain), sends `serverShutdown` on `signal`, and ends.
pub struct TcpServer {
    core: Core,
    newconnection: Inbox<Readiness>,
    feedback: Inbox<Ipc>,
    control: Inbox<Ipc>,
    protocol_handler_signal: Outbox<ServerEvent>,
    signal: Outbox<Ipc>,
    selector_signal: Outbox<SelectorMsg>,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    config: TcpServerConfig,
    /// `config.csa`, shared by every adapter this server makes.
    csa_config: Rc<CsaConfig>,
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
            config,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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
        open: &mut HashMap<ConnectionId, Core>,
    ) -> io::Result<()> {
        let Some(listener) = &self.listener else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let (stream, peer) = listener.accept()?;
        let csa = match ConnectedSocketAdapter::new(stream, selector, self.csa_config.clone()) {
            Ok(csa) => csa,
            Err(e) => {
                // The connection is dropped (closed); the server carries on.
                tracing::warn!(%peer, error = %e, "could not set up an accepted connection");
                return Ok(());
            }
        };
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

    fn closed(&self, msg: Ipc, open: &mut HashMap<ConnectionId, Core>) {
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
        let mut open: HashMap<ConnectionId, Core> = HashMap::new();
        let mut can_accept = true;
        let mut armed = false;
        let mut backoff_until: Option<Instant> = None;
        let mut warned_exhaustion = false;
        loop {
            while let Some(c) = self.control.recv_now() {
                if c.is_shutdown_microprocess() {
                    if let Some(mut listener) = self.listener.take() {
                        let _ = self.selector_signal.send(SelectorRequest::RemoveReader {
                            caller: self.core.id(),
                            selectable: token,
                        });
                        let _ = selector.deregister(&mut listener, token);
                        // Dropping the listener closes it: new connections are refused.
                    }
                }
            }
            while let Some(m) = self.feedback.recv_now() {
                self.closed(m, &mut open);
                // A slot freed up: try accepting again (the backlog may hold connections).
                can_accept = true;
            }
            if self.newconnection.recv_now().is_some() {
                while self.newconnection.recv_now().is_some() {}
                can_accept = true;
                armed = false;
            }
            if self.listener.is_none() {
                if open.is_empty() {
                    break;
                }
                self.core.pause_for_delivery().await;
                continue;
            }
            if backoff_until.is_some_and(|t| Instant::now() >= t) {
                backoff_until = None;
                can_accept = true;
            }
            let mut more = false;
            if can_accept && backoff_until.is_none() {
                let mut accepted = 0;
                while open.len() < self.config.max_connections {
                    if accepted == ACCEPTS_PER_WAKE {
                        more = true;
                        break;
                    }
                    match self.accept_one(&selector, &mut open) {
                        Ok(()) => {
                            accepted += 1;
                            warned_exhaustion = false;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            can_accept = false;
                            break;
                        }
                        Err(e) if is_resource_exhaustion(&e) => {
                            if !warned_exhaustion {
                                tracing::warn!(error = %e, backoff = ?self.config.accept_backoff, "accept failed; backing off");
                                warned_exhaustion = true;
                            }
                            backoff_until = Some(Instant::now() + self.config.accept_backoff);
                            break;
                        }
                        Err(e) => {
                            // ECONNABORTED and friends: that connection is gone, try the next.
                            tracing::debug!(error = %e, "accept error");
                        }
                    }
                }
            }
            if !can_accept && !armed {
                armed = true;
                let _ = self.selector_signal.send(SelectorRequest::NewReader {
                    caller: self.core.id(),
                    reply: self.newconnection.clone(),
                    selectable: token,
                });
            }
            if more {
                axon::yield_now().await;
            } else if let Some(t) = backoff_until {
                let wait = t.saturating_duration_since(Instant::now());
                let _ = axon::timeout(wait, self.core.pause_for_delivery()).await;
            } else {
                self.core.pause_for_delivery().await;
            }
        }
        let _ = self
            .signal
            .send(Ipc::ServerShutdown(axon::ipc::ServerShutdown {
                caller: Some(self.core.id()),
            }));
    }
}
