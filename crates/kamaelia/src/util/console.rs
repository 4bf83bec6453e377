//! Byte-stream readers and writers on threads: [`reader`] (Kamaelia's `ConsoleReader`) and
//! [`writer`] (Kamaelia's `ConsoleEchoer`), for stdin/stdout or any blocking `Read` / `Write`.

use std::io::{self, Read, Write};

use axon::ipc::ErrorInformation;
use axon::{Ipc, Msg, ThreadContext, ThreadedComponent};
use bytes::Bytes;

/// How much one read takes at most.
const CHUNK: usize = 64 * 1024;

/// A component that reads `source` on its own thread and sends what it reads (Kamaelia's
/// `ConsoleReader`, for any blocking reader).
///
/// # Inboxes
///
/// * `inbox`, `control` — unused.
///
/// # Outboxes
///
/// * `outbox` — `Bytes` as read (at most 64 KiB each).
/// * `signal` — `producerFinished` at end of input; `errorInformation` first if reading failed.
///
/// # Shutdown
///
/// Ends at end of input or on a read error. A thread blocked in `read` cannot be interrupted, so
/// make the component a daemon ([`Core::set_daemon`](axon::Core::set_daemon)) when the program
/// should not wait for input to end.
pub fn reader<R: Read + Send + 'static>(mut source: R) -> ThreadedComponent<(), Bytes> {
    ThreadedComponent::with_queue_len("Reader", 16, move |ctx: ThreadContext<(), Bytes>| {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => ctx.send(Bytes::copy_from_slice(&buf[..n])),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    ctx.send_signal(Ipc::ErrorInformation(ErrorInformation {
                        caller: Some(ctx.id()),
                        message: format!("read failed: {e}"),
                    }));
                    break;
                }
            }
            if ctx.is_stopped() {
                return;
            }
        }
        ctx.send_signal(Ipc::producer_finished());
    })
}

/// A component that writes every `Bytes` it receives to `sink` on its own thread, flushing after
/// each (Kamaelia's `ConsoleEchoer`, for any blocking writer).
///
/// # Inboxes
///
/// * `inbox` — `Bytes` to write, in order.
/// * `control` — `producerFinished` (or `socketShutdown`, `shutdownMicroprocess`): finish writing
///   what came before it, then end.
///
/// # Outboxes
///
/// * `signal` — `producerFinished` when done; `errorInformation` first if writing failed (a
///   closed pipe ends the writer quietly otherwise).
///
/// # Shutdown
///
/// Ends on any shutdown message on `control`, after writing the data delivered before it.
pub fn writer<W: Write + Send + 'static>(mut sink: W) -> ThreadedComponent<Bytes, ()> {
    ThreadedComponent::with_queue_len("Writer", 16, move |ctx: ThreadContext<Bytes, ()>| {
        let mut failed = None;
        while let Some(msg) = ctx.next() {
            match msg {
                Msg::Data(chunk) => {
                    if failed.is_none() {
                        if let Err(e) = sink.write_all(&chunk).and_then(|()| sink.flush()) {
                            failed = Some(e);
                        }
                    }
                }
                Msg::Control(c) if c.is_shutdown() || matches!(c, Ipc::ShutdownCsa(_)) => {
                    // Data that reached the inbox before the control message is written first.
                    while let Some(chunk) = ctx.try_recv() {
                        if failed.is_none() {
                            if let Err(e) = sink.write_all(&chunk).and_then(|()| sink.flush()) {
                                failed = Some(e);
                            }
                        }
                    }
                    break;
                }
                Msg::Control(_) => {}
            }
        }
        if let Some(e) = failed {
            if e.kind() != io::ErrorKind::BrokenPipe {
                ctx.send_signal(Ipc::ErrorInformation(ErrorInformation {
                    caller: Some(ctx.id()),
                    message: format!("write failed: {e}"),
                }));
            }
        }
        ctx.send_signal(Ipc::producer_finished());
    })
}
