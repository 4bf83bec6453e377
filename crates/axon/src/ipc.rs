//! System messages (Axon's `Axon.Ipc` and Kamaelia's `Kamaelia.IPC`).
//!
//! [`Ipc`] is what flows on `control` and `signal` boxes: shutdown requests, end-of-stream notices,
//! and the connection lifecycle messages of the networking components. Unlike Kamaelia, where a
//! closing socket adapter sent `None` where the socket belonged, every field carries a real value:
//! the component id of the sender, the connection id and addresses, and why a connection ended.
//!
//! Kamaelia's class hierarchy is kept as predicates: `socketShutdown` *is a* `producerFinished`
//! ([`Ipc::is_producer_finished`]), `serverShutdown` *is a* `shutdownMicroprocess`
//! ([`Ipc::is_shutdown_microprocess`]).
//!
//! All messages are `Send`, so they can cross between schedulers on different threads.
//!
//! The selector registrations (`newReader`, `newWriter`, `removeReader`, `removeWriter`) carry a
//! socket and a reply box, so they are generic here ([`SelectorRequest`]) and instantiated by the
//! networking crate.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::component::ComponentId;

/// A system message: what `control` and `signal` boxes carry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Ipc {
    /// The sender has finished producing data (Axon's `producerFinished`).
    ProducerFinished(ProducerFinished),
    /// Stop now (Axon's `shutdownMicroprocess`).
    ShutdownMicroprocess(ShutdownMicroprocess),
    /// A connection has closed (Kamaelia's `socketShutdown`, a kind of `producerFinished`).
    SocketShutdown(SocketShutdown),
    /// Stop the server (Kamaelia's `serverShutdown`, a kind of `shutdownMicroprocess`).
    ServerShutdown(ServerShutdown),
    /// Abort: stop now and drop everything queued; a connection is reset (RST), not closed. A kind
    /// of `shutdownMicroprocess` for components that do not tell the two apart.
    Abort(Abort),
    /// A server accepted a connection and made a socket adapter for it (Kamaelia's `newCSA`).
    NewCsa(NewCsa),
    /// A socket adapter ended (Kamaelia's `shutdownCSA`).
    ShutdownCsa(ShutdownCsa),
    /// A status string (Axon's `status`).
    Status(String),
    /// A general notification (Axon's `notify`).
    Notify(Notify),
    /// Something failed (Axon's `errorInformation`); the scheduler sends this on the `signal` of a
    /// component that panicked.
    ErrorInformation(ErrorInformation),
}

impl Ipc {
    /// `producerFinished` with no caller and no message, as `producerFinished()` in Axon.
    pub fn producer_finished() -> Self {
        Self::ProducerFinished(ProducerFinished::default())
    }

    /// `shutdownMicroprocess` with no caller, as `shutdownMicroprocess()` in Axon.
    pub fn shutdown_microprocess() -> Self {
        Self::ShutdownMicroprocess(ShutdownMicroprocess::default())
    }

    /// Whether this is a `producerFinished` or a kind of it (`socketShutdown`).
    pub fn is_producer_finished(&self) -> bool {
        matches!(self, Self::ProducerFinished(_) | Self::SocketShutdown(_))
    }

    /// Whether this is a `shutdownMicroprocess` or a kind of it (`serverShutdown`).
    pub fn is_shutdown_microprocess(&self) -> bool {
        matches!(
            self,
            Self::ShutdownMicroprocess(_) | Self::ServerShutdown(_)
        )
    }

    /// Whether this asks the receiver to end: a `producerFinished` or `shutdownMicroprocess`, or a
    /// kind of either.
    pub fn is_shutdown(&self) -> bool {
        self.is_producer_finished() || self.is_shutdown_microprocess()
    }

    /// The component that sent the message, where the message records one.
    pub fn caller(&self) -> Option<ComponentId> {
        match self {
            Self::ProducerFinished(m) => m.caller,
            Self::ShutdownMicroprocess(m) => m.caller,
            Self::SocketShutdown(m) => m.caller,
            Self::ServerShutdown(m) => m.caller,
            Self::Abort(m) => m.caller,
            Self::NewCsa(m) => Some(m.caller),
            Self::ShutdownCsa(m) => Some(m.caller),
            Self::Notify(m) => m.caller,
            Self::ErrorInformation(m) => m.caller,
            Self::Status(_) => None,
        }
    }
}

impl fmt::Display for Ipc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ProducerFinished(m) => write!(f, "producerFinished({:?})", m.message),
            Self::ShutdownMicroprocess(_) => write!(f, "shutdownMicroprocess"),
            Self::SocketShutdown(m) => write!(f, "socketShutdown({m})"),
            Self::ServerShutdown(_) => write!(f, "serverShutdown"),
            Self::Abort(_) => write!(f, "abort"),
            Self::NewCsa(m) => write!(f, "newCSA({} {})", m.csa, m.connection),
            Self::ShutdownCsa(m) => write!(f, "shutdownCSA({})", m.csa),
            Self::Status(s) => write!(f, "status({s})"),
            Self::Notify(m) => write!(f, "notify({})", m.object),
            Self::ErrorInformation(m) => write!(f, "errorInformation({})", m.message),
        }
    }
}

/// Axon's `producerFinished(caller, message)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerFinished {
    /// The component that finished.
    pub caller: Option<ComponentId>,
    /// Why, if it says.
    pub message: Option<String>,
}

/// Axon's `shutdownMicroprocess(*microprocesses)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownMicroprocess {
    /// The component that asks.
    pub caller: Option<ComponentId>,
    /// The components meant (Axon's `microprocesses()`); empty means "the receiver".
    pub microprocesses: Vec<ComponentId>,
}

/// Kamaelia's `serverShutdown`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerShutdown {
    /// The component that asks.
    pub caller: Option<ComponentId>,
}

/// Abort: stop now, drop what is queued, reset the connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Abort {
    /// The component that asks.
    pub caller: Option<ComponentId>,
}

/// A connection's identity: a process-unique id and both addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionInfo {
    /// Unique within the process.
    pub id: ConnectionId,
    /// The remote address.
    pub peer: SocketAddr,
    /// Our address.
    pub local: SocketAddr,
}

impl fmt::Display for ConnectionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} <- {}", self.id, self.local, self.peer)
    }
}

/// A process-unique connection number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Why a connection ended (Kamaelia's `howDied`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed its side and we had nothing more to send (Kamaelia's `False`).
    Eof,
    /// Our producer finished and everything queued was sent (`"producer finished"`).
    ProducerFinished,
    /// `shutdownMicroprocess` stopped it at once (`"shutdown microprocess"`).
    Shutdown,
    /// The connection was aborted on request, dropping queued data.
    Aborted,
    /// A timeout ended it; the string says which.
    Timeout(&'static str),
    /// An I/O error ended it (for example a reset).
    Io(Arc<io::Error>),
    /// Some other failure, described.
    Other(String),
}

impl CloseReason {
    /// The reason for an I/O error.
    pub fn io(e: io::Error) -> Self {
        Self::Io(Arc::new(e))
    }

    /// Whether the connection ended cleanly (EOF, producer finished or shutdown).
    pub fn is_clean(&self) -> bool {
        matches!(self, Self::Eof | Self::ProducerFinished | Self::Shutdown)
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Eof => write!(f, "peer closed"),
            Self::ProducerFinished => write!(f, "producer finished"),
            Self::Shutdown => write!(f, "shutdown microprocess"),
            Self::Aborted => write!(f, "aborted"),
            Self::Timeout(which) => write!(f, "{which} timeout"),
            Self::Io(e) => write!(f, "{e}"),
            Self::Other(s) => write!(f, "{s}"),
        }
    }
}

impl PartialEq for CloseReason {
    /// I/O errors compare by kind.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Io(a), Self::Io(b)) => a.kind() == b.kind(),
            (Self::Timeout(a), Self::Timeout(b)) => a == b,
            (Self::Other(a), Self::Other(b)) => a == b,
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

/// Kamaelia's `socketShutdown`: a connection has closed.
#[derive(Debug, Clone, PartialEq)]
pub struct SocketShutdown {
    /// The socket adapter that closed.
    pub caller: Option<ComponentId>,
    /// Which connection; `None` in the bare notice a server chassis sends a protocol handler.
    pub connection: Option<ConnectionInfo>,
    /// Why it closed.
    pub reason: CloseReason,
}

impl fmt::Display for SocketShutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.connection {
            Some(c) => write!(f, "{c}: {}", self.reason),
            None => write!(f, "{}", self.reason),
        }
    }
}

/// Kamaelia's `newCSA(caller, CSA, sock)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCsa {
    /// The server that accepted.
    pub caller: ComponentId,
    /// The new socket adapter.
    pub csa: ComponentId,
    /// The connection it wraps.
    pub connection: ConnectionInfo,
}

/// Kamaelia's `shutdownCSA(caller, CSA)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShutdownCsa {
    /// The component reporting it (the adapter itself, or its server).
    pub caller: ComponentId,
    /// The adapter that ended.
    pub csa: ComponentId,
    /// The connection it wrapped, when known.
    pub connection: Option<ConnectionInfo>,
    /// Why it ended, when known.
    pub reason: Option<CloseReason>,
}

/// Axon's `notify(caller, payload)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// The sender.
    pub caller: Option<ComponentId>,
    /// The payload.
    pub object: String,
}

/// Axon's `errorInformation(caller, exception, message)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorInformation {
    /// The component the error belongs to.
    pub caller: Option<ComponentId>,
    /// What went wrong.
    pub message: String,
}

/// Registrations with a selector (Kamaelia's `newReader`, `newWriter`, `removeReader`,
/// `removeWriter`), generic over the selectable `S` and the reply box `R`.
///
/// Notifications are one-shot: after one readiness notice the registrant registers again.
#[derive(Debug)]
#[non_exhaustive]
pub enum SelectorRequest<S, R> {
    /// Tell `reply` once `selectable` is readable.
    NewReader {
        /// Who registers.
        caller: ComponentId,
        /// Where the notice goes (Kamaelia's `(component, inboxname)`).
        reply: R,
        /// What to watch.
        selectable: S,
    },
    /// Tell `reply` once `selectable` is writable.
    NewWriter {
        /// Who registers.
        caller: ComponentId,
        /// Where the notice goes.
        reply: R,
        /// What to watch.
        selectable: S,
    },
    /// Stop watching `selectable` for reading.
    RemoveReader {
        /// Who asks.
        caller: ComponentId,
        /// What to stop watching.
        selectable: S,
    },
    /// Stop watching `selectable` for writing.
    RemoveWriter {
        /// Who asks.
        caller: ComponentId,
        /// What to stop watching.
        selectable: S,
    },
}
