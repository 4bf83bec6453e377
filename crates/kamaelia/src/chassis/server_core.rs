//! [`ServerCore`] and [`simple_server`] (Kamaelia's `SimpleServer`): a TCP server that runs one
//! protocol-handler component per connection (Kamaelia's `Kamaelia.Chassis.ConnectedServer`).

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use axon::ipc::{
    CloseReason, ConnectionId, ConnectionInfo, ProducerFinished, ShutdownCsa, SocketShutdown,
};
use axon::{AnyComponent, Component, Core, Error, Inbox, Ipc, Linkage, Outbox, Scheduler};
use bytes::Bytes;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::internet::{
    ConnectionCounters, ConnectionStats, ServerEvent, TcpServer, TcpServerConfig,
};

/// The `notify` payload a handler gets on `control` when a graceful shutdown starts.
pub const DRAINING: &str = "server draining";

/// Makes the protocol handler for a new connection, given its id and addresses (Kamaelia's
/// `protocol(peer=…, peerport=…, localip=…, localport=…)`).
pub type ProtocolFactory = Box<dyn FnMut(&ConnectionInfo) -> Box<dyn AnyComponent>>;

/// Settings for a [`ServerCore`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The listener and connection settings.
    pub tcp: TcpServerConfig,
    /// Size limit of each handler's `inbox`, in messages: when the handler falls behind, its
    /// connection stops reading.
    pub handler_inbox_size: usize,
    /// How long a graceful shutdown waits for connections to finish before closing them.
    pub drain_deadline: Duration,
    /// Speak TLS on every connection (the server role), before any byte reaches the handler.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::internet::tls::TlsRole>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            tcp: TcpServerConfig::default(),
            handler_inbox_size: 64,
            drain_deadline: Duration::from_secs(10),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl ServerConfig {
    /// Sets the graceful-shutdown deadline.
    pub fn drain_deadline(mut self, d: Duration) -> Self {
        self.drain_deadline = d;
        self
    }

    /// Sets the listener and connection settings. Hibernation set with
    /// [`ServerConfig::hibernate_after`] stays, unless `tcp`'s adapter settings set their own.
    pub fn tcp(mut self, mut tcp: TcpServerConfig) -> Self {
        if tcp.csa.hibernate_after.is_none() {
            tcp.csa.hibernate_after = self.tcp.csa.hibernate_after;
        }
        self.tcp = tcp;
        self
    }

    /// Lets idle connections hibernate after `after` (`None`: never), for protocols whose handler
    /// keeps no state between messages, such as [`Echo`](crate::protocols::Echo) and
    /// [`Discard`](crate::protocols::Discard): a connection idle that long with nothing in flight
    /// gives up its adapter and handler and costs only its socket (about 650 bytes of the server's
    /// memory, measured with 10,000 connections, instead of about 5 KB); when it next becomes readable a new adapter and a new handler
    /// (from the factory, with the same connection id) take over, so the peer sees no difference.
    /// Never for handlers that remember anything between messages (a chat nickname, a parser
    /// part-way through a request): that state would be lost. Connections under TLS never
    /// hibernate. Kept when [`ServerConfig::tcp`] replaces the other adapter settings later.
    pub fn hibernate_after(mut self, after: Option<Duration>) -> Self {
        self.tcp.csa = self.tcp.csa.hibernate_after(after);
        self
    }

    /// Speaks TLS on every connection, in `role` (normally [`TlsRole::server`]).
    ///
    /// [`TlsRole::server`]: crate::internet::tls::TlsRole::server
    #[cfg(feature = "tls")]
    pub fn tls(mut self, role: crate::internet::tls::TlsRole) -> Self {
        self.tls = Some(role);
        self
    }
}

/// What a server has done so far: a snapshot sent on `stats` on request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed.
    pub closed: u64,
    /// How many connections closed for each kind of reason (e.g. `peer closed`, `idle timeout`,
    /// `ConnectionReset`).
    pub close_reasons: BTreeMap<String, u64>,
    /// Bytes read, from every connection, open or closed.
    pub bytes_in: u64,
    /// Bytes written, to every connection, open or closed.
    pub bytes_out: u64,
    /// The open connections, oldest first, each with its traffic.
    pub open: Vec<ConnectionStats>,
    /// How many of the open connections are hibernating ([`ServerConfig::hibernate_after`]).
    pub hibernating: usize,
}

/// The key a close reason is counted under: its kind, without per-connection detail.
fn reason_key(r: &CloseReason) -> std::borrow::Cow<'static, str> {
    use std::borrow::Cow;
    match r {
        // The common ones without formatting: one is counted per closed connection.
        CloseReason::Eof => Cow::Borrowed("peer closed"),
        CloseReason::ProducerFinished => Cow::Borrowed("producer finished"),
        CloseReason::Shutdown => Cow::Borrowed("shutdown microprocess"),
        CloseReason::Io(e) => Cow::Owned(format!("{:?}", e.kind())),
        CloseReason::Other(_) => Cow::Borrowed("other"),
        r => Cow::Owned(r.to_string()),
    }
}

/// Counts one close under `reason`'s key, allocating the key only the first time it is seen.
fn count_reason(reasons: &mut BTreeMap<String, u64>, reason: Option<&CloseReason>) {
    let key = reason.map_or(std::borrow::Cow::Borrowed("unknown"), reason_key);
    match reasons.get_mut(key.as_ref()) {
        Some(n) => *n += 1,
        None => {
            reasons.insert(key.into_owned(), 1);
        }
    }
}

/// One live connection: its adapter, its handler and the links the server made between them.
struct Connection {
    counters: Rc<ConnectionCounters>,
    csa: Core,
    handler: Option<Core>,
    handler_control: Option<Inbox<Ipc>>,
    csa_control: Inbox<Ipc>,
    serversignal: Option<Linkage>,
}

/// A TCP server that makes one protocol handler per connection and wires it to the connection's
/// [`ConnectedSocketAdapter`](crate::internet::ConnectedSocketAdapter) (Kamaelia's `ServerCore`).
///
/// A handler is any component with `inbox: Inbox<Bytes>`, `outbox: Outbox<Bytes>`,
/// `control: Inbox<Ipc>` and `signal: Outbox<Ipc>`, and optionally `serversignal: Outbox<Ipc>`.
///
/// # Inboxes
///
/// * `control` — `shutdownMicroprocess` or `serverShutdown`: close every connection now and end;
///   `producerFinished`: graceful shutdown — stop accepting, tell every handler (`notify` with
///   [`DRAINING`] on its `control`), let connections finish, force-close the rest after
///   [`ServerConfig::drain_deadline`], then end.
/// * `_socketactivity` — [`ServerEvent`]s from the [`TcpServer`].
/// * `sampleStats` — each message asks for a [`ServerStats`] snapshot on `stats`.
///
/// # Outboxes
///
/// * `signal` — when the server ends: `producerFinished` whose message says how many connections
///   were drained and how many forced closed.
/// * `_serversignal` — to the `TcpServer`'s `control`.
/// * `stats` — [`ServerStats`]: connections accepted, open (each with its traffic) and closed, close
///   reasons, bytes in and out.
///
/// # How it works
///
/// For each new connection the factory is called with the connection id, peer and local addresses,
/// and the handler is wired to the adapter as Kamaelia does:
///
/// | from | to |
/// |---|---|
/// | adapter `outbox` | handler `inbox` (bounded: a slow handler slows the peer) |
/// | handler `outbox` | adapter `inbox` |
/// | handler `signal` | adapter `control` (the handler ends the connection) |
/// | adapter `signal` | handler `control` (the peer finished sending, then `shutdownCSA`) |
/// | handler `serversignal`, if any | server `control` (a handler can stop the server) |
/// | handler `makessl` (`Outbox<MakeSsl>`), if any | adapter `makessl` (STARTTLS) |
/// | adapter `sslready`, to handler `sslready` (`Inbox<SslReady>`), if any | the upgrade's outcome |
///
/// Both become children; the adapter is activated first, then the handler. When a connection ends,
/// the handler gets `socketShutdown` on `control`, the adapter `shutdownMicroprocess`, and the
/// links are removed. When a connection hibernates ([`ServerConfig::hibernate_after`]) its handler
/// gets `shutdownMicroprocess` and is removed the same way; when it wakes, the factory makes a new
/// one. A wiring error (a handler with wrong box types) is logged and closes that
/// connection; the server carries on.
///
/// # Shutdown
///
/// See `control`. Either way the listener closes first, so no new connection is accepted.
pub struct ServerCore {
    core: Core,
    control: Inbox<Ipc>,
    activity: Inbox<ServerEvent>,
    serversignal: Outbox<Ipc>,
    signal: Outbox<Ipc>,
    sample: Inbox<()>,
    stats: Outbox<ServerStats>,
    server: Option<TcpServer>,
    local_addr: SocketAddr,
    factory: ProtocolFactory,
    config: ServerConfig,
}

impl ServerCore {
    /// Binds `addr` and makes a server whose handlers come from `factory`.
    ///
    /// # Errors
    ///
    /// The OS error from `bind` / `listen`.
    pub fn new(
        addr: SocketAddr,
        factory: impl FnMut(&ConnectionInfo) -> Box<dyn AnyComponent> + 'static,
        config: ServerConfig,
    ) -> io::Result<Self> {
        let server = TcpServer::bind(addr, config.tcp.clone())?;
        let core = Core::new("ServerCore");
        let sc = Self {
            control: core.inbox(
                "control",
                "shutdownMicroprocess: close all now; producerFinished: drain then stop",
            ),
            activity: core.inbox(
                "_socketactivity",
                "new and closed connections from the TcpServer",
            ),
            serversignal: core.outbox("_serversignal", "to the TcpServer's control"),
            signal: core.outbox("signal", "producerFinished when the server has ended"),
            sample: core.inbox("sampleStats", "a request for a stats snapshot"),
            stats: core.outbox("stats", "ServerStats, one per request on sampleStats"),
            core,
            local_addr: server.local_addr(),
            server: None,
            factory: Box::new(factory),
            config,
        };
        axon::link(server.protocol_handler_signal(), &sc.activity).map_err(io::Error::other)?;
        axon::link(&sc.serversignal, server.control()).map_err(io::Error::other)?;
        Ok(Self {
            server: Some(server),
            ..sc
        })
    }

    /// The address the server listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `control`: shutdown requests.
    pub fn control(&self) -> &Inbox<Ipc> {
        &self.control
    }

    /// `signal`: the end-of-server report.
    pub fn signal(&self) -> &Outbox<Ipc> {
        &self.signal
    }

    /// `sampleStats`: each message asks for one [`ServerStats`] on `stats`.
    pub fn sample_stats(&self) -> &Inbox<()> {
        &self.sample
    }

    /// `stats`: [`ServerStats`] snapshots.
    pub fn stats(&self) -> &Outbox<ServerStats> {
        &self.stats
    }

    /// Wires and activates a new connection's adapter and handler.
    fn connect(
        &mut self,
        sched: &Scheduler,
        csa: Box<crate::internet::ConnectedSocketAdapter>,
        info: ConnectionInfo,
        open: &mut FxHashMap<ConnectionId, Connection>,
    ) {
        let handler = (self.factory)(&info);
        let (csa_core, h) = (csa.core().clone(), handler.component_core().clone());
        let csa_control = csa.control().clone();
        let counters = csa.counters();
        #[cfg(feature = "tls")]
        if let Some(role) = &self.config.tls {
            let _ = csa
                .makessl()
                .deliver(crate::internet::MakeSsl::new(role.clone()));
        }
        let as_adapter = handler
            .as_any()
            .and_then(|any| any.downcast_ref::<crate::internet::ConnectedSocketAdapter>());
        let wired = (|| -> Result<(Inbox<Ipc>, Option<Linkage>), Error> {
            use crate::internet::{MakeSsl, SslReady};
            let (inbox, control, outbox, signal, optional) = match as_adapter {
                // A handler that is itself an adapter (a relay's target side): its boxes are at
                // hand, and it has no `makessl` outbox, `sslready` inbox or `serversignal`.
                Some(target) => {
                    // It ends with `producerFinished` then `shutdownCSA`, in one pass: room for
                    // both.
                    csa_control.reserve(2);
                    let (inbox, control) = (target.inbox().clone(), target.control().clone());
                    let (outbox, signal) = (target.outbox().clone(), target.signal().clone());
                    (inbox, control, outbox, signal, (None, None, None))
                }
                // Otherwise its four boxes are looked up once by name (its type is the
                // factory's), and optional boxes for STARTTLS-style handlers are wired when
                // present with the right direction and type (a relay's `TcpClient` has a
                // `makessl` inbox, not an outbox).
                None => (
                    h.inbox_named::<Bytes>("inbox")?,
                    h.inbox_named("control")?,
                    h.outbox_named::<Bytes>("outbox")?,
                    h.outbox_named("signal")?,
                    (
                        h.find_outbox::<MakeSsl>("makessl"),
                        h.find_inbox::<SslReady>("sslready"),
                        h.find_outbox::<Ipc>("serversignal"),
                    ),
                ),
            };
            let (makessl, sslready, serversignal) = optional;
            // Recorded in the handler's postoffice, not ours: ours would grow with every open
            // connection and make each close scan all of them.
            let core = &h;
            core.reserve_links(
                4 + usize::from(makessl.is_some())
                    + usize::from(sslready.is_some())
                    + usize::from(serversignal.is_some()),
            );
            core.link(csa.outbox(), &inbox)?;
            core.link(&outbox, csa.inbox())?;
            core.link(&signal, csa.control())?;
            core.link(csa.signal(), &control)?;
            inbox.set_size(Some(self.config.handler_inbox_size));
            if let Some(makessl) = makessl {
                core.link(&makessl, csa.makessl())?;
            }
            if let Some(sslready) = sslready {
                core.link(csa.sslready(), &sslready)?;
            }
            let serversignal = serversignal
                .map(|out| core.link(&out, &self.control))
                .transpose()?;
            Ok((control, serversignal))
        })();
        let (handler_control, serversignal) = match wired {
            Ok(wired) => wired,
            Err(e) => {
                // The adapter still runs, to close the connection and report it like any other.
                tracing::error!(connection = %info, error = %e, "cannot wire protocol handler; closing connection");
                h.unlink_all();
                let _ = csa_control.deliver(Ipc::shutdown_microprocess());
                self.core.add_child(&csa_core);
                sched.activate_boxed(csa);
                open.insert(
                    info.id,
                    Connection {
                        counters,
                        csa: csa_core,
                        handler: None,
                        handler_control: None,
                        csa_control,
                        serversignal: None,
                    },
                );
                return;
            }
        };
        self.core.add_children([&csa_core, &h]);
        sched.activate_boxed(csa);
        sched.activate_boxed(handler);
        open.insert(
            info.id,
            Connection {
                counters,
                handler_control: Some(handler_control),
                csa: csa_core,
                handler: Some(h),
                csa_control,
                serversignal,
            },
        );
    }

    /// Cleans up after a closed connection (Kamaelia's `handleClosedCSA`): idempotent.
    fn disconnect(
        &self,
        closed: ShutdownCsa,
        open: &mut FxHashMap<ConnectionId, Connection>,
        asleep: &mut FxHashSet<ConnectionId>,
        totals: &mut ServerStats,
    ) {
        let Some(id) = closed.connection.map(|c| c.id) else {
            return;
        };
        if let Some(conn) = open.remove(&id) {
            self.release(
                &conn,
                Ipc::SocketShutdown(SocketShutdown {
                    caller: Some(closed.csa),
                    connection: closed.connection,
                    reason: closed.reason.clone().unwrap_or(CloseReason::Eof),
                }),
                totals,
            );
        } else if !asleep.remove(&id) {
            return;
        }
        // (A hibernated connection's traffic went into the totals when it fell asleep.)
        totals.closed += 1;
        count_reason(&mut totals.close_reasons, closed.reason.as_ref());
    }

    /// A connection hibernated: its handler ends, and its traffic so far goes into the totals
    /// (taken out again if it wakes: its new adapter carries on counting from there).
    fn hibernated(
        &self,
        id: ConnectionId,
        open: &mut FxHashMap<ConnectionId, Connection>,
        asleep: &mut FxHashSet<ConnectionId>,
        totals: &mut ServerStats,
    ) {
        let Some(conn) = open.remove(&id) else {
            return;
        };
        self.release(&conn, Ipc::shutdown_microprocess(), totals);
        asleep.insert(id);
        // A burst of hibernations leaves the table mostly empty: give its memory back.
        if open.capacity() > 4 * open.len().max(64) {
            open.shrink_to_fit();
        }
    }

    /// Tells a connection's handler `to_handler`, stops its adapter, removes both and their links,
    /// and adds the connection's traffic so far to `totals`.
    fn release(&self, conn: &Connection, to_handler: Ipc, totals: &mut ServerStats) {
        totals.bytes_in += conn.counters.bytes_in();
        totals.bytes_out += conn.counters.bytes_out();
        if let Some(link) = &conn.serversignal {
            self.core.unlink(link);
        }
        if let Some(control) = &conn.handler_control {
            let _ = control.deliver(to_handler);
        }
        let _ = conn.csa_control.deliver(Ipc::shutdown_microprocess());
        self.core.remove_child(&conn.csa);
        if let Some(h) = &conn.handler {
            h.unlink_all();
            self.core.remove_child(h);
        }
    }
}

impl fmt::Debug for ServerCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCore")
            .field("core", &self.core)
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

/// How a server is shutting down.
enum Stopping {
    No,
    Drain(Instant),
    Now,
}

impl Component for ServerCore {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn main(mut self) {
        let Some(sched) = Scheduler::current() else {
            return;
        };
        let Some(server) = self.server.take() else {
            return;
        };
        let server_core = server.core().clone();
        let sleeping = server.sleeping();
        self.core.add_child(&server_core);
        sched.activate(server);

        let mut open: FxHashMap<ConnectionId, Connection> = FxHashMap::default();
        let mut asleep: FxHashSet<ConnectionId> = FxHashSet::default();
        let mut totals = ServerStats::default();
        let mut stopping = Stopping::No;
        let mut forced = 0usize;
        let mut drained = 0usize;
        loop {
            while let Some(c) = self.control.recv_now() {
                let was_running = matches!(stopping, Stopping::No);
                if c.is_shutdown_microprocess() {
                    stopping = Stopping::Now;
                } else if c.is_producer_finished() && was_running {
                    stopping = Stopping::Drain(Instant::now() + self.config.drain_deadline);
                } else {
                    continue;
                }
                if was_running {
                    let _ =
                        self.serversignal
                            .send(Ipc::ServerShutdown(axon::ipc::ServerShutdown {
                                caller: Some(self.core.id()),
                            }));
                    if matches!(stopping, Stopping::Drain(_)) {
                        // Tell every handler, so protocols can wind down (say goodbye, stop
                        // taking new requests); the connections stay open until they finish.
                        for conn in open.values() {
                            if let Some(control) = &conn.handler_control {
                                let _ = control.deliver(Ipc::Notify(axon::ipc::Notify {
                                    caller: Some(self.core.id()),
                                    object: DRAINING.to_owned(),
                                }));
                            }
                        }
                    }
                }
            }
            if self.sample.drain().count() > 0 {
                let mut stats = totals.clone();
                for conn in open.values() {
                    let c = conn.counters.snapshot();
                    stats.bytes_in += c.bytes_in;
                    stats.bytes_out += c.bytes_out;
                    stats.open.push(c);
                }
                // Their traffic is in the totals already.
                stats.open.extend(sleeping.snapshots());
                stats.hibernating = asleep.len();
                stats.open.sort_by_key(|c| c.connection.id);
                let _ = self.stats.send(stats);
            }
            while let Some(ev) = self.activity.recv_now() {
                match ev {
                    ServerEvent::NewCsa { csa, connection } => {
                        // A hibernated connection waking up is not a new one; its adapter counts on
                        // from where the old one stopped.
                        if asleep.remove(&connection.id) {
                            let c = csa.counters();
                            totals.bytes_in = totals.bytes_in.saturating_sub(c.bytes_in());
                            totals.bytes_out = totals.bytes_out.saturating_sub(c.bytes_out());
                        } else {
                            totals.accepted += 1;
                        }
                        self.connect(&sched, csa, connection, &mut open);
                    }
                    ServerEvent::ShutdownCsa(closed) => {
                        if matches!(stopping, Stopping::Drain(_)) {
                            drained += 1;
                        }
                        self.disconnect(closed, &mut open, &mut asleep, &mut totals);
                    }
                    ServerEvent::Hibernated { connection } => {
                        self.hibernated(connection.id, &mut open, &mut asleep, &mut totals);
                    }
                }
            }
            let force = match stopping {
                Stopping::Now => true,
                Stopping::Drain(deadline) => Instant::now() >= deadline,
                Stopping::No => false,
            };
            if force {
                for conn in open.values() {
                    if !conn.csa.is_finished() {
                        forced += 1;
                        let _ = conn.csa_control.deliver(Ipc::shutdown_microprocess());
                    }
                }
                // Their ShutdownCsa reports still arrive through the TcpServer.
                stopping = Stopping::Now;
            }
            if !matches!(stopping, Stopping::No)
                && server_core.is_finished()
                && open.is_empty()
                && asleep.is_empty()
            {
                break;
            }
            match stopping {
                Stopping::Drain(deadline) => {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    let _ = axon::timeout(wait, self.core.pause()).await;
                }
                _ => self.core.pause().await,
            }
        }
        // Handlers that ignored socketShutdown are not waited for; they are unlinked already.
        let _ = self.signal.send(Ipc::ProducerFinished(ProducerFinished {
            caller: Some(self.core.id()),
            message: Some(format!(
                "server stopped: {drained} connections finished, {forced} closed at the deadline"
            )),
        }));
    }
}

/// A [`ServerCore`] whose protocol factory takes no arguments (Kamaelia's `SimpleServer`).
///
/// # Errors
///
/// The OS error from `bind` / `listen`.
pub fn simple_server(
    addr: SocketAddr,
    mut protocol: impl FnMut() -> Box<dyn AnyComponent> + 'static,
    config: ServerConfig,
) -> io::Result<ServerCore> {
    ServerCore::new(addr, move |_| protocol(), config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hibernation_survives_new_tcp_settings_unless_they_set_their_own() {
        let nap = Some(Duration::from_millis(50));
        let idle = crate::internet::CsaConfig::default().idle_timeout(Some(Duration::from_secs(9)));
        let config = ServerConfig::default()
            .hibernate_after(nap)
            .tcp(TcpServerConfig::default().csa(idle.clone()));
        assert_eq!(config.tcp.csa.hibernate_after, nap);
        assert_eq!(config.tcp.csa.idle_timeout, Some(Duration::from_secs(9)));
        let own = Some(Duration::from_secs(2));
        let config = ServerConfig::default()
            .hibernate_after(nap)
            .tcp(TcpServerConfig::default().csa(idle.hibernate_after(own)));
        assert_eq!(config.tcp.csa.hibernate_after, own, "the new settings' own");
        let config = config.hibernate_after(None);
        assert_eq!(config.tcp.csa.hibernate_after, None, "turned off after");
    }

    #[test]
    fn close_reason_keys_are_the_reasons_as_printed_with_io_errors_by_kind() {
        for r in [
            CloseReason::Eof,
            CloseReason::ProducerFinished,
            CloseReason::Shutdown,
            CloseReason::Aborted,
            CloseReason::Timeout("idle"),
        ] {
            assert_eq!(reason_key(&r), r.to_string());
        }
        let reset = CloseReason::io(io::ErrorKind::ConnectionReset.into());
        assert_eq!(reason_key(&reset), "ConnectionReset");
        assert_eq!(reason_key(&CloseReason::Other("x".into())), "other");

        let mut reasons = BTreeMap::new();
        count_reason(&mut reasons, Some(&CloseReason::Eof));
        count_reason(&mut reasons, Some(&CloseReason::Eof));
        count_reason(&mut reasons, None);
        assert_eq!(reasons.get("peer closed"), Some(&2));
        assert_eq!(reasons.get("unknown"), Some(&1));
    }
}
