//! A TCP relay: each accepted connection is wired to a [`TcpClient`](crate::internet::TcpClient) to the target.

use axon::ipc::ConnectionInfo;
use axon::AnyComponent;

use crate::internet::{ClientTemplate, TcpClientConfig};

/// A protocol factory for [`ServerCore`](crate::chassis::ServerCore) that makes each accepted
/// connection's handler a [`TcpClient`](crate::internet::TcpClient) to `host:port`.
///
/// With ServerCore's wiring, bytes flow both ways unchanged; the peer finishing sending half-closes
/// the target side and vice versa; a failed connect to the target closes the accepted connection.
pub fn factory(
    host: &str,
    port: u16,
    config: TcpClientConfig,
) -> impl FnMut(&ConnectionInfo) -> Box<dyn AnyComponent> {
    let target = ClientTemplate::new(host, port, config);
    move |_| Box::new(target.client())
}
