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
pub use selector::{Readiness, Selector, SelectorHandle, SelectorMsg, SERVICE as SELECTOR_SERVICE};
pub use tcp_client::{ClientTemplate, TcpClient, TcpClientConfig};
pub use tcp_server::{ServerEvent, TcpServer, TcpServerConfig};
