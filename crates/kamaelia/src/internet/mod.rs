//! Networking components (Kamaelia's `Kamaelia.Internet`): the [`Selector`] that turns socket
//! readiness into messages, the [`ConnectedSocketAdapter`] that wraps one connection, and the
//! [`TcpClient`] and [`TcpServer`] that make them.

mod connected_socket_adapter;
mod resolve;
mod selector;
mod tcp_client;
mod tcp_server;
#[cfg(feature = "tls")]
pub mod tls;

pub use connected_socket_adapter::{
    ConnectedSocketAdapter, ConnectionCounters, ConnectionStats, CsaConfig, MakeSsl, Socket,
    SslReady,
};
pub use resolve::NameResolver;

/// The `tracing` target of the event logged when an outgoing connection cannot be made: a
/// [`TcpClient`] that gives up (lookup or connects failed, or timed out), or an adapter that was
/// connecting ([`ConnectedSocketAdapter::connect`]) and failed. The event is at `INFO` level
/// (the failure is also reported on the component's boxes); `kamaelia relay` shows these by
/// default, one line per connection whose target could not be reached.
pub const CONNECT_FAILURES: &str = "kamaelia::connect";
pub use selector::{Readiness, Selector, SelectorHandle, SelectorMsg, SERVICE as SELECTOR_SERVICE};
pub use tcp_client::{ClientTemplate, TcpClient, TcpClientConfig};
pub use tcp_server::{ServerEvent, TcpServer, TcpServerConfig};
