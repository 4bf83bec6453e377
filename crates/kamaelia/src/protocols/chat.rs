//! Line chat: each line a client sends reaches every other client, through a
//! [`Backplane`].

use std::fmt;

use axon::{Boxes, Component, Core, Inbox, Ipc, Scheduler};
use bytes::{Bytes, BytesMut};

use crate::util::{Backplane, BackplaneHandle, BackplaneMsg};

/// The longest line kept whole; longer input is passed on in pieces of this size.
pub const MAX_LINE: usize = 64 * 1024;

/// How many lines may wait for a slow client before it is disconnected.
pub const CLIENT_QUEUE: usize = 1024;

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
    pub fn push(&mut self, data: &[u8]) -> Vec<Bytes> {
        let mut lines = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let room = self.max - self.partial.len();
            let window = &rest[..rest.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.partial.extend_from_slice(&window[..=i]);
                    lines.push(self.partial.split().freeze());
                    rest = &rest[i + 1..];
                }
                None => {
                    self.partial.extend_from_slice(window);
                    rest = &rest[window.len()..];
                    if self.partial.len() == self.max {
                        lines.push(self.partial.split().freeze());
                    }
                }
            }
        }
        lines
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
/// * `inbox` — bytes from the client, split into lines ([`LineSplitter`]).
/// * `control` — `producerFinished` (the client finished sending: its last partial line is
///   published, then our side closes), the end of the connection, or `shutdownMicroprocess` from
///   the backplane when the client fell behind.
/// * `fromBackplane` — other clients' lines, at most [`CLIENT_QUEUE`] waiting.
///
/// # Outboxes
///
/// * `outbox` — other clients' lines, to this client.
/// * `signal` — `producerFinished` to close after the client finished; `shutdownMicroprocess` to
///   disconnect a client that does not read.
///
/// # Shutdown
///
/// Unsubscribes and ends when the client finishes, the connection ends, or the backplane drops it.
pub struct ChatHandler {
    boxes: Boxes<Bytes, Bytes>,
    from_backplane: Inbox<Bytes>,
    backplane: BackplaneHandle,
}

impl ChatHandler {
    /// A handler publishing to `backplane`.
    pub fn new(backplane: BackplaneHandle) -> Self {
        let boxes = Boxes::new("ChatHandler");
        let from_backplane: Inbox<Bytes> =
            boxes.core.inbox("fromBackplane", "other clients' lines");
        from_backplane.set_size(Some(CLIENT_QUEUE));
        Self {
            boxes,
            from_backplane,
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
/// [`ChatHandler`] on the backplane called `room` of the running scheduler.
pub fn factory(
    room: &str,
) -> impl FnMut(&axon::ipc::ConnectionInfo) -> Box<dyn axon::AnyComponent> {
    let room = room.to_owned();
    move |_| {
        let backplane = match Scheduler::current() {
            Some(s) => Backplane::named(&s, &room),
            // Not on a scheduler: a private backplane, so the handler still works alone.
            None => Backplane::new().handle(),
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
        self.backplane.send(BackplaneMsg::Subscribe {
            id: me,
            data: self.from_backplane.clone(),
            control: b.control.clone(),
        });
        let mut lines = LineSplitter::new(MAX_LINE);
        let mut pending: Option<Bytes> = None;
        'run: loop {
            while let Some(data) = b.inbox.recv_now() {
                for line in lines.push(&data) {
                    self.backplane.send(BackplaneMsg::Publish {
                        from: me,
                        data: line,
                    });
                }
            }
            while let Some(c) = b.control.recv_now() {
                match c {
                    Ipc::ProducerFinished(_) => {
                        if let Some(last) = lines.finish() {
                            self.backplane.send(BackplaneMsg::Publish {
                                from: me,
                                data: last,
                            });
                        }
                        let _ = b.signal.send(Ipc::producer_finished());
                        break 'run;
                    }
                    Ipc::ShutdownMicroprocess(_) => {
                        // Dropped by the backplane for not reading: disconnect now.
                        let _ = b.signal.send(Ipc::shutdown_microprocess());
                        break 'run;
                    }
                    Ipc::SocketShutdown(_) | Ipc::ShutdownCsa(_) | Ipc::ServerShutdown(_) => {
                        break 'run
                    }
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
            b.core.pause().await;
        }
        self.backplane.send(BackplaneMsg::Unsubscribe { id: me });
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
}
