//! [`Echo`] and [`Discard`]: the simplest protocol handlers.

use std::fmt;
use std::future::Future;

use axon::{Boxes, Component, Core, Ipc};
use bytes::Bytes;

/// Sends every byte back (Kamaelia's `Echoer` used as a protocol).
///
/// # Inboxes
///
/// * `inbox` — bytes from the peer.
/// * `control` — `producerFinished` (the peer finished sending) or the end of the connection.
///
/// # Outboxes
///
/// * `outbox` — the same bytes, in order, unchanged (the same `Bytes`: no copy).
/// * `signal` — `producerFinished` once the peer has finished and everything was echoed, so the
///   connection half-closes after the last byte.
///
/// # Shutdown
///
/// Ends after forwarding `producerFinished`, or at once on `shutdownMicroprocess`,
/// `socketShutdown` or `shutdownCSA` (the connection is gone). Other control messages (such as a
/// server's draining notice) are ignored: the echo goes on until the peer finishes.
pub struct Echo {
    boxes: Boxes<Bytes, Bytes>,
}

impl Echo {
    /// A new echo handler.
    pub fn new() -> Self {
        Self {
            boxes: Boxes::new("Echo"),
        }
    }
}

impl Default for Echo {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Echo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Echo")
            .field("core", &self.boxes.core)
            .finish()
    }
}

impl Component for Echo {
    fn core(&self) -> &Core {
        &self.boxes.core
    }

    fn main(self) -> impl Future<Output = ()> + 'static {
        pump(self.boxes, true)
    }
}

/// Reads and drops everything (the discard protocol, RFC 863).
///
/// # Inboxes
///
/// * `inbox` — bytes from the peer, dropped.
/// * `control` — `producerFinished` (the peer finished) or the end of the connection.
///
/// # Outboxes
///
/// * `outbox` — nothing is sent.
/// * `signal` — `producerFinished` when the peer has finished, closing our side too.
///
/// # Shutdown
///
/// As [`Echo`].
pub struct Discard {
    boxes: Boxes<Bytes, Bytes>,
}

impl Discard {
    /// A new discard handler.
    pub fn new() -> Self {
        Self {
            boxes: Boxes::new("Discard"),
        }
    }
}

impl Default for Discard {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Discard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discard")
            .field("core", &self.boxes.core)
            .finish()
    }
}

impl Component for Discard {
    fn core(&self) -> &Core {
        &self.boxes.core
    }

    fn main(self) -> impl Future<Output = ()> + 'static {
        pump(self.boxes, false)
    }
}

/// The loop of [`Echo`] (`echo`) and [`Discard`]: pass each chunk back or drop it; when the peer
/// finishes, finish too (after the echoes), and stop when the connection ends.
///
/// `control` is looked into only when its flag says something came ([`axon::DeliveryFlag`]): with
/// hundreds of connections, reading an empty box after every chunk is a cache miss per chunk. Data
/// goes first: `control` is looked at only once `inbox` is empty, so every chunk that came before
/// a `producerFinished` is echoed before it is passed on.
///
/// Only the boxes, the flag and the chunk being echoed live across a wait, and no `async fn` wraps
/// another: this future is part of every idle connection's memory (an `async fn` would also keep
/// `b` twice, as argument and as local).
#[allow(clippy::manual_async_fn)]
fn pump(b: Boxes<Bytes, Bytes>, echo: bool) -> impl Future<Output = ()> + 'static {
    async move {
        let control = b.control.delivery_flag();
        loop {
            if let Some(chunk) = b.inbox.recv_now() {
                if echo {
                    b.outbox.send_wait(chunk).await;
                }
                continue;
            }
            // Nothing else takes this component's deliveries: a flag set since the last look is
            // still set, and `inbox` (empty now) is looked into on every round anyway.
            if b.core.take_deliveries().contains(control) {
                while let Some(c) = b.control.recv_now() {
                    match c {
                        Ipc::ProducerFinished(_) => {
                            let _ = b.signal.send(Ipc::producer_finished());
                            return;
                        }
                        // The connection ended, or we are told to stop.
                        c if c.is_shutdown() || matches!(c, Ipc::ShutdownCsa(_)) => return,
                        // Notices (a server draining) change nothing: the peer decides when it
                        // is done.
                        _ => {}
                    }
                }
            }
            b.core.pause_for_delivery().await;
        }
    }
}
