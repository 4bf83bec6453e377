//! A TCP relay: each accepted connection is wired to a [`TcpClient`] to the target.

use axon::ipc::ConnectionInfo;
use axon::AnyComponent;

use crate::internet::{TcpClient, TcpClientConfig};

/// A protocol factory for [`ServerCore`](crate::chassis::ServerCore) that makes each accepted
/// connection's handler a [`TcpClient`] to `host:port`.
///
/// With ServerCore's wiring, bytes flow both ways unchanged; the peer finishing sending half-closes
/// the target side and vice versa; a failed connect to the target closes the accepted connection.
pub fn factory(
    host: &str,
    port: u16,
    config: TcpClientConfig,
) -> impl FnMut(&ConnectionInfo) -> Box<dyn AnyComponent> {
    let host = host.to_owned();
    move |_| Box::new(TcpClient::new(&host, port, config.clone()))
}
