//! [`TcpClient`]: an outgoing TCP connection as a component (Kamaelia's
//! `Kamaelia.Internet.TCPClient`).

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use axon::ipc::{CloseReason, ConnectionInfo, SelectorRequest, SocketShutdown};
use axon::{Component, Core, Inbox, Ipc, Outbox, Scheduler};
use bytes::Bytes;
use mio::net::TcpStream;
use mio::Token;

use super::connected_socket_adapter::{
    ConnectedSocketAdapter, CsaConfig, MakeSsl, SslReady, OWN_LINKS,
};
use super::resolve::{literal, LookupCache, NameResolver};
use super::selector::{Readiness, SelectorHandle};

/// Settings for a [`TcpClient`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TcpClientConfig {
    /// How long one connection attempt may take (Kamaelia's `connect_timeout`, default 60 s there;
    /// 10 s here). With several addresses, each gets this long; so does a host name's lookup.
    pub connect_timeout: Duration,
    /// Wait this long before connecting (Kamaelia's `delay`).
    pub delay: Duration,
    /// How long the clients of one [`ClientTemplate`] reuse a host name's addresses before
    /// looking it up again (default 1 s; zero looks it up for every client). A failed lookup is
    /// not kept. A [`TcpClient::new`] has a template of its own, so it always looks up.
    pub resolve_ttl: Duration,
    /// How a host name becomes addresses (default: the system's resolver). Runs on a helper
    /// thread.
    pub resolver: NameResolver,
    /// Settings for the connection's adapter.
    pub csa: CsaConfig,
    /// Upgrade to TLS as soon as the connection is made (before any data is sent).
    #[cfg(feature = "tls")]
    pub tls: Option<super::tls::TlsRole>,
}

impl Default for TcpClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            delay: Duration::ZERO,
            resolve_ttl: Duration::from_secs(1),
            resolver: NameResolver::system(),
            csa: CsaConfig::default(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl TcpClientConfig {
    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Sets how long a template's clients reuse a host name's addresses
    /// ([`resolve_ttl`](Self::resolve_ttl)).
    pub fn resolve_ttl(mut self, d: Duration) -> Self {
        self.resolve_ttl = d;
        self
    }

    /// Looks host names up with `resolver` instead of the system's resolver.
    pub fn resolver(mut self, resolver: NameResolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// Upgrades every connection to TLS in `role` as soon as it is made.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, role: super::tls::TlsRole) -> Self {
        self.tls = Some(role);
        self
    }
}

/// Makes an outgoing TCP connection and wraps it in a
/// [`ConnectedSocketAdapter`] (Kamaelia's `TCPClient`).
///
/// # Inboxes
///
/// * `inbox` — `Bytes` to send. Data sent before the connection exists waits and is delivered once
///   it does.
/// * `control` — `producerFinished`: send what is queued, then close the write side (half-close);
///   `shutdownMicroprocess`: close now. Before the connection exists, `producerFinished` is kept
///   and applied once connected; `shutdownMicroprocess` abandons the attempt (during the delay,
///   the lookup or a connect; a lookup other clients wait for goes on for them).
/// * `makessl` — [`MakeSsl`]: upgrade to TLS (passed to the adapter).
/// * `_socketFeedback` — the adapter's `socketShutdown`.
/// * `_csaSignal` — the adapter's `signal`.
///
/// # Outboxes
///
/// * `outbox` — `Bytes` received.
/// * `signal` — `producerFinished` when the peer has finished sending; then exactly one
///   `socketShutdown` when the client ends, with the connection (if one was made) and the reason:
///   the real `io::Error` of a failed connect or lookup (e.g. connection refused),
///   `Timeout("connect")`, `Timeout("lookup")`, or how the connection ended.
/// * `sslready` — the adapter's [`SslReady`].
///
/// # How it works
///
/// The host is resolved without blocking the scheduler (names on a helper thread; the clients of
/// one [`ClientTemplate`] share lookups, see [`TcpClientConfig::resolve_ttl`]). Each address
/// (IPv6 and IPv4) is tried in turn, the one that last connected for the template first, with a non-blocking connect, waiting for writability through
/// the selector, each bounded by [`TcpClientConfig::connect_timeout`]. Once connected, the adapter
/// becomes a child: `inbox`, `control` and `makessl` pass through to it, its `outbox` and `sslready`
/// pass through out.
///
/// # Shutdown
///
/// Ends when its adapter ends, or when connecting fails or is abandoned; `signal` says why.
pub struct TcpClient {
    core: Core,
    inbox: Inbox<Bytes>,
    control: Inbox<Ipc>,
    makessl: Inbox<MakeSsl>,
    socket_feedback: Inbox<Ipc>,
    csa_signal: Inbox<Ipc>,
    connect_ready: Inbox<Readiness>,
    outbox: Outbox<Bytes>,
    signal: Outbox<Ipc>,
    sslready: Outbox<SslReady>,
    target: ClientTemplate,
}

/// A target and settings that many [`TcpClient`]s share: made once, each client made from it
/// costs reference counts rather than copies and allocations (a relay makes one client per
/// accepted connection).
///
/// The clients share lookups of a host name too: those that need it while a lookup runs wait for
/// that one, its answer serves the clients after them for [`TcpClientConfig::resolve_ttl`], and
/// the address that last connected is tried first.
///
/// # Examples
///
/// ```
/// use kamaelia::internet::{ClientTemplate, TcpClientConfig};
///
/// let template = ClientTemplate::new("127.0.0.1", 8080, TcpClientConfig::default());
/// let (first, second) = (template.client(), template.client());
/// # drop((first, second));
/// ```
#[derive(Debug, Clone)]
pub struct ClientTemplate {
    host: Rc<str>,
    port: u16,
    config: Rc<TcpClientConfig>,
    /// `config.csa`, shared by every adapter the clients make.
    csa: Rc<CsaConfig>,
    /// The host as an address, when it is one.
    literal: Option<SocketAddr>,
    lookups: Rc<LookupCache>,
}

impl ClientTemplate {
    /// Clients for `host:port` with `config` (see [`TcpClient::new`]).
    pub fn new(host: &str, port: u16, config: TcpClientConfig) -> Self {
        Self {
            host: host.into(),
            port,
            csa: Rc::new(config.csa.clone()),
            config: Rc::new(config),
            literal: literal(host, port),
            lookups: Rc::new(LookupCache::new()),
        }
    }

    /// A new client to the template's target. Nothing happens until it is activated.
    pub fn client(&self) -> TcpClient {
        TcpClient::from_template(self.clone())
    }

    /// The adapter settings for a bare adapter to connect to the template's target
    /// ([`ConnectedSocketAdapter::connect`]), when a client would add nothing to one at a known
    /// address ([`direct_addr`](Self::direct_addr)): there is no delay and no TLS. The settings
    /// carry the client's connect timeout.
    pub(crate) fn direct(&self) -> Option<Rc<CsaConfig>> {
        let config = &self.config;
        #[cfg(feature = "tls")]
        if config.tls.is_some() {
            return None;
        }
        if !config.delay.is_zero() {
            return None;
        }
        let csa = CsaConfig::clone(&self.csa).connect_timeout(config.connect_timeout);
        Some(Rc::new(csa))
    }

    /// The one address a client would try now, if there is just one and it is known without a
    /// lookup: the host as an address, or a name whose last lookup (still younger than the
    /// template's time to live) gave a single address.
    pub(crate) fn direct_addr(&self) -> Option<SocketAddr> {
        self.literal
            .or_else(|| self.lookups.single(self.config.resolve_ttl))
    }
}

impl TcpClient {
    /// A client for `host:port`; `host` may be a name, an IPv4 or an IPv6 address (with or without
    /// brackets). Nothing happens until it is activated. To make many clients to one target, use a
    /// [`ClientTemplate`].
    pub fn new(host: &str, port: u16, config: TcpClientConfig) -> Self {
        Self::from_template(ClientTemplate::new(host, port, config))
    }

    fn from_template(target: ClientTemplate) -> Self {
        let core = Core::with_capacity("TcpClient", 9); // its nine boxes
        Self {
            inbox: core.inbox("inbox", "bytes to send"),
            control: core.inbox(
                "control",
                "producerFinished: half-close after sending; shutdownMicroprocess: close now",
            ),
            makessl: core.inbox("makessl", "upgrade the connection to TLS"),
            socket_feedback: core.inbox("_socketFeedback", "the adapter's socketShutdown"),
            csa_signal: core.inbox("_csaSignal", "the adapter's signal"),
            connect_ready: core.inbox("_connectReady", "writability while connecting"),
            outbox: core.outbox("outbox", "bytes received"),
            signal: core.outbox(
                "signal",
                "producerFinished when the peer finished; socketShutdown at the end",
            ),
            sslready: core.outbox("sslready", "the TLS upgrade's outcome"),
            core,
            target,
        }
    }

    /// `inbox`: bytes to send.
    pub fn inbox(&self) -> &Inbox<Bytes> {
        &self.inbox
    }

    /// `control`: `producerFinished` / `shutdownMicroprocess`.
    pub fn control(&self) -> &Inbox<Ipc> {
        &self.control
    }

    /// `outbox`: bytes received.
    pub fn outbox(&self) -> &Outbox<Bytes> {
        &self.outbox
    }

    /// `signal`: `producerFinished` on peer EOF, then `socketShutdown`.
    pub fn signal(&self) -> &Outbox<Ipc> {
        &self.signal
    }

    /// `makessl`: TLS upgrade requests.
    pub fn makessl(&self) -> &Inbox<MakeSsl> {
        &self.makessl
    }

    /// `sslready`: the TLS upgrade's outcome.
    pub fn sslready(&self) -> &Outbox<SslReady> {
        &self.sslready
    }

    fn finish(&self, connection: Option<ConnectionInfo>, reason: CloseReason) {
        if connection.is_none() && !reason.is_clean() {
            let (host, port) = (&self.target.host, self.target.port);
            let (open, close) = match host.contains(':') && !host.starts_with('[') {
                true => ("[", "]"), // an IPv6 address
                false => ("", ""),
            };
            tracing::info!(
                target: super::CONNECT_FAILURES,
                "cannot connect to {open}{host}{close}:{port}: {reason}"
            );
        }
        let _ = self.signal.send(Ipc::SocketShutdown(SocketShutdown {
            caller: Some(self.core.id()),
            connection,
            reason,
        }));
    }

    /// Handles `control` while connecting: `Err` to abandon, `Ok(true)` to half-close once connected.
    fn control_while_connecting(&self, finish_after: &mut bool) -> Result<(), ()> {
        while let Some(c) = self.control.recv_now() {
            if c.is_shutdown_microprocess() {
                return Err(());
            }
            if c.is_producer_finished() || matches!(c, Ipc::ShutdownCsa(_)) {
                *finish_after = true;
            }
        }
        Ok(())
    }

    /// Awaits `fut` (the delay, the lookup) unless `control` says `shutdownMicroprocess` first:
    /// `None` then. A `producerFinished` meanwhile is kept for once connected.
    async fn unless_abandoned<F: Future>(
        &self,
        fut: F,
        finish_after: &mut bool,
    ) -> Option<F::Output> {
        let mut fut = pin!(fut);
        // Any delivery wakes the component, and with it this future.
        poll_fn(|cx| {
            if self.control_while_connecting(finish_after).is_err() {
                return Poll::Ready(None);
            }
            fut.as_mut().poll(cx).map(Some)
        })
        .await
    }

    /// One connection attempt to `addr`: the connected stream, still registered with `selector`
    /// under the token given (the adapter takes the registration over), and the peer's address;
    /// or why not.
    async fn attempt(
        &self,
        selector: &SelectorHandle,
        addr: SocketAddr,
        finish_after: &mut bool,
    ) -> Result<io::Result<(TcpStream, Token, SocketAddr)>, ()> {
        let mut stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let token = match selector.register(&mut stream) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        let deadline = std::time::Instant::now() + self.target.config.connect_timeout;
        let outcome = loop {
            let _ = selector.notify().deliver(SelectorRequest::NewWriter {
                caller: self.core.id(),
                reply: self.connect_ready.clone(),
                selectable: token,
            });
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            let woke = axon::timeout(remaining, self.core.pause_for_delivery()).await;
            if self.control_while_connecting(finish_after).is_err() {
                // Dropping the stream closes its only descriptor: out of the `epoll` set.
                selector.forget(token);
                return Err(());
            }
            let ready = self.connect_ready.drain().count() > 0;
            if let Ok(Some(e)) | Err(e) = stream.take_error() {
                break Err(e);
            }
            if ready {
                // Linux reports writability of a connecting socket only once the handshake has
                // finished, and a failure as an error (caught above): connected, to `addr`, with
                // no `getpeername` to ask (tokio's check, one system call less per connection).
                break Ok(addr);
            }
            // Woken without a notice (the timeout, or `control`): ask the socket.
            match stream.peer_addr() {
                Ok(peer) => break Ok(peer),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                Err(e) => break Err(e),
            }
            if woke.is_err() && !ready {
                break Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect to {addr} timed out"),
                ));
            }
            // Withdraw the old request before asking again (first registrant wins).
            let _ = selector.notify().deliver(SelectorRequest::RemoveWriter {
                caller: self.core.id(),
                selectable: token,
            });
        };
        match outcome {
            Ok(peer) => {
                // The adapter asks for its own notices; this request must not stand in its way.
                let _ = selector.notify().deliver(SelectorRequest::RemoveWriter {
                    caller: self.core.id(),
                    selectable: token,
                });
                Ok(Ok((stream, token, peer)))
            }
            Err(e) => {
                selector.forget(token);
                Ok(Err(e))
            }
        }
    }
}

impl fmt::Debug for TcpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpClient")
            .field("core", &self.core)
            .field(
                "target",
                &format_args!("{}:{}", self.target.host, self.target.port),
            )
            .finish()
    }
}

impl Component for TcpClient {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn main(self) {
        let mut finish_after = false;
        let target = &self.target;
        if !target.config.delay.is_zero() {
            let slept = self.unless_abandoned(axon::sleep(target.config.delay), &mut finish_after);
            if slept.await.is_none() {
                return self.finish(None, CloseReason::Shutdown);
            }
        }
        let (selector, sched) = match (SelectorHandle::current(), Scheduler::current()) {
            (Ok(s), Some(sched)) => (s, sched),
            (Err(e), _) => return self.finish(None, CloseReason::io(e)),
            (_, None) => return,
        };
        let resolved = target.lookups.addresses(
            &target.host,
            target.port,
            target.config.resolve_ttl,
            &target.config.resolver,
        );
        // A lookup that hangs (the name server is away) ends this client, not the lookup: it
        // goes on for the clients after, and its answer is kept when it comes.
        let resolved = axon::timeout(target.config.connect_timeout, resolved);
        let addrs = match self.unless_abandoned(resolved, &mut finish_after).await {
            None => return self.finish(None, CloseReason::Shutdown),
            Some(Err(_)) => return self.finish(None, CloseReason::Timeout("lookup")),
            Some(Ok(Ok(a))) => a,
            Some(Ok(Err(e))) => return self.finish(None, CloseReason::io(e)),
        };
        let mut last_err = None;
        let mut connected = None;
        for addr in addrs {
            match self.attempt(&selector, addr, &mut finish_after).await {
                Err(()) => return self.finish(None, CloseReason::Shutdown),
                Ok(Ok(connection)) => {
                    target.lookups.connected(addr);
                    connected = Some(connection);
                    break;
                }
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, "connect attempt failed");
                    last_err = Some(e);
                }
            }
        }
        let Some((stream, token, peer)) = connected else {
            let reason = match last_err {
                Some(e) if e.kind() == io::ErrorKind::TimedOut => CloseReason::Timeout("connect"),
                Some(e) => CloseReason::io(e),
                None => CloseReason::Other("no address to connect to".into()),
            };
            return self.finish(None, reason);
        };
        let made = ConnectedSocketAdapter::registered(
            stream,
            token,
            peer,
            &selector,
            self.target.csa.clone(),
            OWN_LINKS,
        );
        let csa = match made {
            Ok(c) => c,
            Err(e) => return self.finish(None, CloseReason::io(e)),
        };
        let info = csa.info();
        #[cfg(feature = "tls")]
        if let Some(role) = &self.target.config.tls {
            // Handled before any queued data is written, so nothing goes out in the clear.
            let _ = csa.makessl().deliver(MakeSsl::new(role.clone()));
        }
        // Queued data moves on into the adapter when the passthrough is made.
        let wired = (|| -> Result<(), axon::Error> {
            let c = &self.core;
            c.link(&self.inbox, csa.inbox())?;
            c.link(csa.outbox(), &self.outbox)?;
            c.link(&self.makessl, csa.makessl())?;
            c.link(csa.sslready(), &self.sslready)?;
            c.link(csa.creator_feedback(), &self.socket_feedback)?;
            c.link(csa.signal(), &self.csa_signal)?;
            // Control messages that came while connecting go first, then the passthrough.
            for m in self.control.drain() {
                let _ = csa.control().deliver(m);
            }
            if finish_after {
                let _ = csa.control().deliver(Ipc::producer_finished());
            }
            c.link(&self.control, csa.control())?;
            Ok(())
        })();
        if let Err(e) = wired {
            return self.finish(Some(info), CloseReason::Other(e.to_string()));
        }
        self.core.add_child(csa.core());
        sched.activate(csa);
        loop {
            while let Some(m) = self.csa_signal.recv_now() {
                if m.is_producer_finished() {
                    let _ = self.signal.send(m);
                }
            }
            if let Some(Ipc::SocketShutdown(s)) = self.socket_feedback.recv_now() {
                return self.finish(Some(info), s.reason);
            }
            self.core.pause_for_delivery().await;
        }
    }
}
