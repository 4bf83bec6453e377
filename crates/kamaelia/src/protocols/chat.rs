//! Line chat: each line a client sends reaches every other client, through a
//! [`Backplane`].

use std::fmt;
use std::time::Duration;

use axon::{Boxes, Component, Core, Inbox, Ipc, Outbox, Scheduler};
use bytes::{Buf, Bytes, BytesMut};

use crate::util::{Backplane, BackplaneHandle, BackplaneMsg};

/// The longest line kept whole; longer input is passed on in pieces of this size.
pub const MAX_LINE: usize = 64 * 1024;

/// How many lines may wait for a client. When that many wait, the backplane waits for the client
/// (and so do the other clients' lines); see [`SLOW_CLIENT_TIMEOUT`].
pub const CLIENT_QUEUE: usize = 1024;

/// How long a client with [`CLIENT_QUEUE`] lines waiting may go without taking any before it is
/// disconnected (the chat [`Backplane`]'s slow-subscriber timeout). A client that reads, however
/// slowly, stays.
pub const SLOW_CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Splits a byte stream into lines, each ending in `\n` (kept), with partial lines carried over.
///
/// A line longer than the limit is cut at the limit, so memory stays bounded whatever the peer
/// sends.
#[derive(Debug)]
pub struct LineSplitter {
    partial: BytesMut,
    max: usize,
}

impl LineSplitter {
    /// A splitter that cuts lines longer than `max` bytes (at least 1).
    pub fn new(max: usize) -> Self {
        Self {
            partial: BytesMut::new(),
            max: max.max(1),
        }
    }

    /// Feeds bytes; returns the complete lines they finish, in order.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<Bytes> {
        let mut lines = Vec::new();
        while !data.is_empty() {
            let (used, line) = self.feed(data);
            data = &data[used..];
            lines.extend(line);
        }
        lines
    }

    /// Feeds bytes from the front of `data` until one line is complete, and returns it; `data`
    /// keeps the rest. `None` when `data` ran out first (its bytes are carried over). The lines
    /// come out as [`LineSplitter::push`] makes them, one at a time.
    pub fn next_line(&mut self, data: &mut Bytes) -> Option<Bytes> {
        while !data.is_empty() {
            let (used, line) = self.feed(data);
            data.advance(used);
            if line.is_some() {
                return line;
            }
        }
        None
    }

    /// Takes bytes from the front of `data` up to the end of one line: how many it took, and the
    /// line if it completed one.
    fn feed(&mut self, data: &[u8]) -> (usize, Option<Bytes>) {
        let room = self.max - self.partial.len();
        let window = &data[..data.len().min(room)];
        let (used, complete) = match window.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (window.len(), window.len() == room),
        };
        self.partial.extend_from_slice(&window[..used]);
        (used, complete.then(|| self.partial.split().freeze()))
    }

    /// Takes what is left (a last line without `\n`), if anything.
    pub fn finish(&mut self) -> Option<Bytes> {
        (!self.partial.is_empty()).then(|| self.partial.split().freeze())
    }
}

/// A chat connection's protocol handler: publishes each line the client sends and writes every
/// other client's lines to it.
///
/// # Inboxes
///
/// * `inbox` — bytes from the client, split into lines ([`LineSplitter`]). Taken only while the
///   backplane has room for the lines: otherwise they wait here, then in the connection, and the
///   client's sends are held back by TCP flow control.
/// * `control` — `producerFinished` (the client finished sending: its remaining lines and last
///   partial line are published, then our side closes), the end of the connection, or
///   `shutdownMicroprocess` from the backplane when the client took nothing for
///   [`SLOW_CLIENT_TIMEOUT`].
/// * `fromBackplane` — other clients' lines, at most [`CLIENT_QUEUE`] waiting.
///
/// # Outboxes
///
/// * `outbox` — other clients' lines, to this client.
/// * `signal` — `producerFinished` to close after the client finished; `shutdownMicroprocess` to
///   disconnect a client that does not read.
/// * `toBackplane` — this client's lines, as [`BackplaneMsg::Publish`], to the backplane's
///   `inbox` (linked when the handler starts).
///
/// # Shutdown
///
/// Unsubscribes and ends when the client finished and its lines are published, when the
/// connection ends (lines not yet published are dropped), or when the backplane drops it.
pub struct ChatHandler {
    boxes: Boxes<Bytes, Bytes>,
    from_backplane: Inbox<Bytes>,
    to_backplane: Outbox<BackplaneMsg>,
    backplane: BackplaneHandle,
}

impl ChatHandler {
    /// A handler publishing to `backplane`.
    pub fn new(backplane: BackplaneHandle) -> Self {
        let boxes = Boxes::new("ChatHandler");
        let from_backplane: Inbox<Bytes> =
            boxes.core.inbox("fromBackplane", "other clients' lines");
        from_backplane.set_size(Some(CLIENT_QUEUE));
        let to_backplane = boxes
            .core
            .outbox("toBackplane", "this client's lines, to the backplane");
        Self {
            boxes,
            from_backplane,
            to_backplane,
            backplane,
        }
    }
}

impl fmt::Debug for ChatHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatHandler")
            .field("core", &self.boxes.core)
            .finish()
    }
}

/// A protocol factory for [`ServerCore`](crate::chassis::ServerCore): each connection gets a
/// [`ChatHandler`] on the backplane called `room` of the running scheduler (started with a
/// [`SLOW_CLIENT_TIMEOUT`] if there is none yet).
pub fn factory(
    room: &str,
) -> impl FnMut(&axon::ipc::ConnectionInfo) -> Box<dyn axon::AnyComponent> {
    let room = room.to_owned();
    move |_| {
        let make = || Backplane::new().with_slow_subscriber_timeout(SLOW_CLIENT_TIMEOUT);
        let backplane = match Scheduler::current() {
            Some(s) => Backplane::named_with(&s, &room, make),
            // Not on a scheduler: a private backplane, which nothing runs (the handler's lines
            // stop once its queue is full).
            None => make().handle(),
        };
        Box::new(ChatHandler::new(backplane))
    }
}

impl Component for ChatHandler {
    fn core(&self) -> &Core {
        &self.boxes.core
    }

    async fn main(self) {
        let b = &self.boxes;
        let me = b.core.id();
        // Unsubscribes when dropped: when `main` returns, or when the handler is stopped.
        let _subscription =
            self.backplane
                .subscribe(me, self.from_backplane.clone(), b.control.clone());
        if let Err(e) = self.backplane.link_publisher(&b.core, &self.to_backplane) {
            // Unreachable: the outbox is linked here only, once.
            tracing::error!(error = %e, "chat handler cannot publish; disconnecting");
            let _ = b.signal.send(Ipc::shutdown_microprocess());
            return;
        }
        let mut lines = LineSplitter::new(MAX_LINE);
        // What is left of the client's latest chunk, not yet split into lines.
        let mut chunk = Bytes::new();
        // The client's next line, waiting for room in the backplane.
        let mut ready: Option<Bytes> = None;
        // The client finished sending: close once everything it sent is published.
        let mut finishing = false;
        // A line for the client that its full connection refused.
        let mut pending: Option<Bytes> = None;
        loop {
            // The client's lines go to the backplane while it has room for them; then its bytes
            // wait in `inbox`, and then in the connection.
            loop {
                if ready.is_none() {
                    ready = lines.next_line(&mut chunk);
                }
                if ready.is_none() {
                    match b.inbox.recv_now() {
                        Some(data) => chunk = data,
                        None if finishing => match lines.finish() {
                            Some(last) => ready = Some(last),
                            None => {
                                let _ = b.signal.send(Ipc::producer_finished());
                                return;
                            }
                        },
                        None => break,
                    }
                    continue;
                }
                if !self.to_backplane.has_room() {
                    break;
                }
                if let Some(line) = ready.take() {
                    // Not refused: there is room, and nothing else runs in between.
                    let _ = self.to_backplane.send(BackplaneMsg::Publish {
                        from: me,
                        data: line,
                    });
                }
            }
            let mut again = false;
            while let Some(c) = b.control.recv_now() {
                match c {
                    Ipc::ProducerFinished(_) => {
                        // Its bytes all came before this: publish them, then finish.
                        finishing = true;
                        again = true;
                    }
                    Ipc::ShutdownMicroprocess(_) => {
                        // Dropped by the backplane for not reading: disconnect now.
                        let _ = b.signal.send(Ipc::shutdown_microprocess());
                        return;
                    }
                    Ipc::SocketShutdown(_) | Ipc::ShutdownCsa(_) | Ipc::ServerShutdown(_) => return,
                    _ => {}
                }
            }
            loop {
                let Some(line) = pending.take().or_else(|| self.from_backplane.recv_now()) else {
                    break;
                };
                if let Err(full) = b.outbox.send(line) {
                    pending = Some(full.message);
                    break;
                }
            }
            if again {
                continue;
            }
            // Waiting for room (in the connection, or in the backplane for lines to publish):
            // a collection wakes us. Otherwise only deliveries do.
            if pending.is_some() || ready.is_some() {
                b.core.pause().await;
            } else {
                b.core.pause_for_delivery().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_come_out_whole() {
        let mut s = LineSplitter::new(100);
        assert!(s.push(b"hel").is_empty());
        assert_eq!(s.push(b"lo\nwor"), vec![Bytes::from_static(b"hello\n")]);
        assert_eq!(
            s.push(b"ld\n\nx"),
            vec![Bytes::from_static(b"world\n"), Bytes::from_static(b"\n")]
        );
        assert_eq!(s.finish(), Some(Bytes::from_static(b"x")));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn overlong_lines_are_cut_at_the_limit() {
        let mut s = LineSplitter::new(4);
        assert_eq!(
            s.push(b"abcdefg\nh"),
            vec![Bytes::from_static(b"abcd"), Bytes::from_static(b"efg\n")]
        );
        assert_eq!(s.finish(), Some(Bytes::from_static(b"h")));
    }

    #[test]
    fn next_line_takes_one_line_at_a_time_and_leaves_the_rest() {
        let mut s = LineSplitter::new(4);
        let mut data = Bytes::from_static(b"ab\ncdefg\nh");
        assert_eq!(s.next_line(&mut data), Some(Bytes::from_static(b"ab\n")));
        assert_eq!(data, Bytes::from_static(b"cdefg\nh"));
        assert_eq!(s.next_line(&mut data), Some(Bytes::from_static(b"cdef")));
        assert_eq!(s.next_line(&mut data), Some(Bytes::from_static(b"g\n")));
        assert_eq!(s.next_line(&mut data), None);
        assert!(data.is_empty());
        let mut more = Bytes::from_static(b"i\n");
        assert_eq!(s.next_line(&mut more), Some(Bytes::from_static(b"hi\n")));
        assert_eq!(s.finish(), None);
    }
}
