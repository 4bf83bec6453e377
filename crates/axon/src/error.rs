//! The crate's error types.
//!
//! One [`Error`] enum covers everything that can go wrong when wiring a graph or using the services
//! registry; [`NoSpaceInBox`] is separate because it hands the refused message back to the caller.

use std::fmt;

/// What went wrong while wiring components, looking up boxes or using the services registry.
///
/// Every variant names the components and boxes involved, so the message alone says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The source box already feeds another box; Axon links are many-to-one, never one-to-many
    /// (Axon's `BoxAlreadyLinkedToDestination`).
    BoxAlreadyLinked {
        /// The source, as `component.box`.
        source: String,
        /// The box it already feeds, as `component.box`.
        current_sink: String,
    },
    /// The two ends of a linkage carry different message types.
    TypeMismatch {
        /// The source, as `component.box`.
        source: String,
        /// The source's message type.
        source_type: &'static str,
        /// The sink, as `component.box`.
        sink: String,
        /// The sink's message type.
        sink_type: &'static str,
    },
    /// The linkage goes from an inbox to an outbox, which no passthrough mode allows.
    InvalidDirection {
        /// The source, as `component.box`.
        source: String,
        /// The sink, as `component.box`.
        sink: String,
    },
    /// The linkage would make a chain loop back on itself.
    LinkCycle {
        /// The source, as `component.box`.
        source: String,
        /// The sink, as `component.box`.
        sink: String,
    },
    /// A component has no box of that name (Axon raised `KeyError`).
    NoSuchBox {
        /// The component's name.
        component: String,
        /// The box that was asked for.
        name: String,
    },
    /// A box exists but carries another message type than the one asked for.
    WrongBoxType {
        /// The box, as `component.box`.
        name: String,
        /// The type the box carries.
        actual: &'static str,
        /// The type that was asked for.
        requested: &'static str,
    },
    /// A service of that name is already registered (Axon's `ServiceAlreadyExists`).
    ServiceAlreadyExists(String),
    /// No service of that name is registered (Axon raised `KeyError` / `MultipleServiceDeletion`).
    NoSuchService(String),
    /// A tracked value of that name already exists (Axon's `NamespaceClash`).
    NamespaceClash(String),
    /// No tracked value of that name exists (Axon's `AccessToUndeclaredTrackedVariable`).
    UndeclaredValue(String),
    /// The tracked value exists but has another type than the one asked for.
    WrongValueType {
        /// The value's name.
        name: String,
        /// The type that was asked for.
        requested: &'static str,
    },
    /// A graph description named no components or was otherwise malformed (Graphline's
    /// `ValueError`).
    InvalidGraph(String),
    /// No scheduler is running on this thread, so there is nothing to activate a component on.
    NoScheduler,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BoxAlreadyLinked {
                source,
                current_sink,
            } => write!(
                f,
                "cannot link {source}: it already feeds {current_sink} (a box has at most one destination)"
            ),
            Self::TypeMismatch {
                source,
                source_type,
                sink,
                sink_type,
            } => write!(
                f,
                "cannot link {source} ({source_type}) to {sink} ({sink_type}): the message types differ"
            ),
            Self::InvalidDirection { source, sink } => write!(
                f,
                "cannot link inbox {source} to outbox {sink}: links go outbox->inbox, inbox->inbox or outbox->outbox"
            ),
            Self::LinkCycle { source, sink } => {
                write!(f, "cannot link {source} to {sink}: the chain would loop")
            }
            Self::NoSuchBox { component, name } => {
                write!(f, "component {component} has no box named {name:?}")
            }
            Self::WrongBoxType {
                name,
                actual,
                requested,
            } => write!(f, "box {name} carries {actual}, not {requested}"),
            Self::ServiceAlreadyExists(name) => write!(f, "service {name:?} is already registered"),
            Self::NoSuchService(name) => write!(f, "no service named {name:?} is registered"),
            Self::NamespaceClash(name) => write!(f, "value {name:?} is already tracked"),
            Self::UndeclaredValue(name) => write!(f, "no value named {name:?} is tracked"),
            Self::WrongValueType { name, requested } => {
                write!(f, "tracked value {name:?} is not a {requested}")
            }
            Self::InvalidGraph(why) => write!(f, "invalid graph: {why}"),
            Self::NoScheduler => write!(f, "no axon scheduler is running on this thread"),
        }
    }
}

impl std::error::Error for Error {}

/// A send found the destination inbox full (Axon's `noSpaceInBox`); the message is handed back.
///
/// Nothing was stored: the caller still owns [`message`](Self::message) and may retry once the
/// consumer has collected something, or use the waiting form
/// [`Outbox::send_wait`](crate::Outbox::send_wait).
pub struct NoSpaceInBox<T> {
    /// The message that did not fit.
    pub message: T,
    /// How many messages the destination held.
    pub len: usize,
    /// The destination's size limit.
    pub size: usize,
}

impl<T> NoSpaceInBox<T> {
    /// Takes the refused message back.
    pub fn into_inner(self) -> T {
        self.message
    }
}

impl<T> fmt::Debug for NoSpaceInBox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoSpaceInBox")
            .field("len", &self.len)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for NoSpaceInBox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no space in inbox: it holds {} of at most {} messages",
            self.len, self.size
        )
    }
}

impl<T> std::error::Error for NoSpaceInBox<T> {}
