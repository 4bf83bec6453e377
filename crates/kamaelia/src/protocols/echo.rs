//! [`Echo`] and [`Discard`]: the simplest protocol handlers.

use std::fmt;
use std::future::Future;

use axon::{Boxes, Component, Core, Ipc, Msg};
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
/// Only the boxes and the chunk being echoed live across a wait, and no `async fn` wraps another:
/// this future is part of every idle connection's memory (an `async fn` would also keep `b` twice,
/// as argument and as local: 152 bytes instead of 112).
#[allow(clippy::manual_async_fn)]
fn pump(b: Boxes<Bytes, Bytes>, echo: bool) -> impl Future<Output = ()> + 'static {
    async move {
        loop {
            let chunk = match b.next().await {
                Msg::Data(chunk) => chunk,
                Msg::Control(Ipc::ProducerFinished(_)) => {
                    let _ = b.signal.send(Ipc::producer_finished());
                    return;
                }
                // The connection ended, or we are told to stop.
                Msg::Control(c) if c.is_shutdown() || matches!(c, Ipc::ShutdownCsa(_)) => return,
                // Notices (a server draining) change nothing: the peer decides when it is done.
                Msg::Control(_) => continue,
            };
            if echo {
                b.outbox.send_wait(chunk).await;
            }
        }
    }
}
