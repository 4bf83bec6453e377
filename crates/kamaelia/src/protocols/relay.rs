//! A TCP relay: each accepted connection is wired to a connection of its own to the target.

use std::io;

use axon::ipc::ConnectionInfo;
use axon::AnyComponent;

use crate::internet::{ClientTemplate, ConnectedSocketAdapter, SelectorHandle, TcpClientConfig};

/// A protocol factory for [`ServerCore`](crate::chassis::ServerCore) that makes each accepted
/// connection's handler a connection of its own to `host:port`.
///
/// When `config` asks for no delay and no TLS, and the target's one address is known without a
/// lookup (`host` is an IP address, or a name whose last lookup, younger than `config`'s
/// [`resolve_ttl`](crate::internet::TcpClientConfig::resolve_ttl), gave a single address), the
/// handler is a bare [`ConnectedSocketAdapter`] connecting to it
/// ([`ConnectedSocketAdapter::connect`], with `config`'s connect timeout and adapter settings): one
/// component per side. Otherwise (a name to look up or with several addresses to try, TLS, a
/// delay), or if the connect cannot even start, it is a [`TcpClient`](crate::internet::TcpClient);
/// the factory's clients share their lookups ([`ClientTemplate`]).
///
/// With ServerCore's wiring, bytes flow both ways unchanged; the peer finishing sending half-closes
/// the target side and vice versa; a target that cannot be reached or closes ends the accepted
/// connection's write side once everything the target sent is out (the peer reads EOF).
pub fn factory(
    host: &str,
    port: u16,
    config: TcpClientConfig,
) -> impl FnMut(&ConnectionInfo) -> Box<dyn AnyComponent> {
    let target = ClientTemplate::new(host, port, config);
    let direct = target.direct();
    let mut selector = None;
    move |_| {
        let to = direct.as_ref().zip(target.direct_addr());
        if let Some((csa, addr)) = to {
            let started = live_selector(&mut selector)
                .and_then(|selector| ConnectedSocketAdapter::connect(addr, selector, csa.clone()));
            match started {
                Ok(adapter) => return Box::new(adapter),
                // The client tries again, and reports a failure the way a failed connect ends.
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "cannot start connecting; using a TcpClient")
                }
            }
        }
        Box::new(target.client())
    }
}

/// The selector of the scheduler this factory runs on: the one found for an earlier connection
/// while it still runs, else looked up (two lookups by name in the scheduler's services, per
/// connection, otherwise).
fn live_selector(kept: &mut Option<SelectorHandle>) -> io::Result<&SelectorHandle> {
    if !kept.as_ref().is_some_and(SelectorHandle::is_live) {
        *kept = None;
    }
    match kept {
        Some(selector) => Ok(selector),
        None => Ok(kept.insert(SelectorHandle::current()?)),
    }
}
