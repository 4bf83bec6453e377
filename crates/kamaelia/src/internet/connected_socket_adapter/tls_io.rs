//! The adapter's TLS path (rustls, with the `tls` feature): the upgrade on `makessl`, and
//! reading and writing through the TLS session once upgraded.

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::time::Instant;

use axon::ipc::CloseReason;
use bytes::{Bytes, BytesMut};

use super::arena::{Arenas, Chunk, ARENA};
use super::{ConnectedSocketAdapter, Flags, MakeSsl, Socket, SslReady};

thread_local! {
    /// Like `READ_ARENAS`, but zeroed ahead, for readers that need initialised memory: TLS
    /// plaintext, read out of rustls.
    static PLAINTEXT_ARENAS: RefCell<Arenas> = RefCell::new(Arenas::new());
    /// The scheduler thread's buffer for TLS records read from sockets, reused by every adapter:
    /// records are decrypted out of it at once.
    static TLS_READ: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Like [`read_chunk`](super::arena::read_chunk), for a reader that needs initialised memory (TLS plaintext, which rustls
/// hands out a record or so at a time): an arena is zeroed whole when it becomes current, and
/// reads use what is left of it, down to 16 KiB, before another is made current (reclaimed, as in
/// [`read_chunk`](super::arena::read_chunk), so the memory is not mapped afresh for every arena), so little zeroing is
/// wasted.
fn read_chunk_zeroed(reader: &mut impl Read, max: usize) -> io::Result<Chunk> {
    const MIN_ROOM: usize = 16 * 1024;
    let max = max.max(1);
    PLAINTEXT_ARENAS.with(|arenas| {
        let arenas = &mut *arenas.borrow_mut();
        if arenas.current.len() < MIN_ROOM.min(max) {
            arenas.current.clear();
            arenas.make_room(ARENA);
            arenas.current.resize(ARENA, 0);
        }
        let buf = &mut arenas.current;
        let want = buf.len().min(max);
        let n = reader.read(&mut buf[..want])?;
        Ok(Chunk::of(n, want, |n| buf.split_to(n).freeze()))
    })
}

impl<S: Socket> ConnectedSocketAdapter<S> {
    /// Upgrades to TLS: bytes already received (the request's read-ahead, then a chunk the
    /// outbox refused) go to TLS first; from here on nothing read is delivered unprotected.
    pub(super) fn start_tls(&mut self, req: MakeSsl, flags: &mut Flags) -> Result<(), CloseReason> {
        let fail = |this: &Self, why: String| {
            let _ = this.sslready().send(SslReady::Failed(why));
        };
        if self.tls.is_some() {
            fail(self, "the connection is already using TLS".to_owned());
            return Ok(());
        }
        let Some(role) = req.role else {
            fail(self, "makessl without a TLS role".to_owned());
            return Ok(());
        };
        let mut tls = match role.connect() {
            Ok(t) => t,
            Err(e) => {
                fail(self, format!("TLS setup failed: {e}"));
                return Err(CloseReason::Other(format!("TLS setup failed: {e}")));
            }
        };
        let mut ahead = BytesMut::from(&req.read_ahead[..]);
        if let Some(held) = flags.held.take() {
            ahead.extend_from_slice(&held);
        }
        let mut rest = &ahead[..];
        while !rest.is_empty() {
            let fed = tls.read_tls(&mut rest);
            if let Err(e) = fed.map_err(|e| e.to_string()).and_then(|_| {
                tls.process_new_packets()
                    .map(drop)
                    .map_err(|e| e.to_string())
            }) {
                fail(self, format!("TLS handshake failed: {e}"));
                return Err(CloseReason::Other(format!("TLS handshake failed: {e}")));
            }
        }
        if !req.send_first.is_empty() {
            // Plaintext still owed goes first: a partly written message, then the request's reply.
            flags.pending = Some(match flags.pending.take() {
                Some(p) => {
                    let mut b = BytesMut::from(&p[..]);
                    b.extend_from_slice(&req.send_first);
                    b.freeze()
                }
                None => req.send_first,
            });
        }
        flags.handshake_deadline = Some(Instant::now() + self.config.tls_handshake_timeout);
        flags.can_read = true;
        self.tls = Some(Box::new(tls));
        Ok(())
    }

    /// Reports the end of the handshake on `sslready`, once.
    pub(super) fn check_handshake(&self, tls: &rustls::Connection, flags: &mut Flags) {
        if flags.handshake_deadline.is_some() && !tls.is_handshaking() {
            flags.handshake_deadline = None;
            let _ = self.sslready().send(SslReady::Ready);
        }
    }

    /// Runs `f` on the TLS session, lent out of `self` for the call so both can be borrowed; with
    /// no session, `R::default()` (nothing done).
    fn with_tls<R: Default>(
        &mut self,
        f: impl FnOnce(&mut Self, &mut rustls::Connection) -> io::Result<R>,
    ) -> io::Result<R> {
        let Some(mut tls) = self.tls.take() else {
            return Ok(R::default());
        };
        let r = f(self, &mut tls);
        self.tls = Some(tls);
        r
    }

    /// The TLS write path: flush records, then take the next message, then close_notify.
    pub(super) fn flush_tls(&mut self, flags: &mut Flags) -> io::Result<()> {
        self.with_tls(|this, tls| this.flush_tls_inner(tls, flags))
    }

    fn flush_tls_inner(
        &mut self,
        tls: &mut rustls::Connection,
        flags: &mut Flags,
    ) -> io::Result<()> {
        // Plaintext owed from before the upgrade (a partly written message, then the request's
        // `send_first`, e.g. STARTTLS's go-ahead) goes out raw, before any TLS record.
        if !self.write_pending(flags)? {
            return Ok(());
        }
        loop {
            // Queued messages go into rustls until its buffer is full, so one vectored write
            // carries the records of several.
            if !tls.is_handshaking() && flags.write_open {
                loop {
                    let next = flags.tls_unsent.take().or_else(|| {
                        let m = self.inbox.recv_now();
                        if m.is_some() {
                            self.counters
                                .chunks_out
                                .set(self.counters.chunks_out.get() + 1);
                        }
                        m
                    });
                    let Some(b) = next else { break };
                    // rustls takes what fits its buffer; the rest waits until that is flushed.
                    let n = tls.writer().write(&b)?;
                    if n < b.len() {
                        if n == 0 && !tls.wants_write() {
                            return Err(io::ErrorKind::WriteZero.into());
                        }
                        flags.tls_unsent = Some(b.slice(n..));
                        break;
                    }
                }
            }
            while tls.wants_write() {
                if !flags.can_write {
                    self.arm_writer(flags);
                    return Ok(());
                }
                let attempt = tls.write_tls(self.conn.stream_mut());
                if self.wrote(attempt, flags)?.is_none() {
                    return Ok(());
                }
            }
            if tls.is_handshaking() || !flags.write_open {
                return Ok(());
            }
            if flags.tls_unsent.is_some() || !self.inbox.is_empty() {
                continue;
            }
            if !flags.finishing {
                return Ok(());
            }
            if !flags.close_notify_sent {
                flags.close_notify_sent = true;
                tls.send_close_notify();
                continue;
            }
            return self.send_fin(flags);
        }
    }

    /// The TLS read path: plaintext out first, then more records from the socket.
    pub(super) fn fill_tls(&mut self, flags: &mut Flags) -> io::Result<bool> {
        self.with_tls(|this, tls| this.fill_tls_inner(tls, flags))
    }

    fn fill_tls_inner(
        &mut self,
        tls: &mut rustls::Connection,
        flags: &mut Flags,
    ) -> io::Result<bool> {
        flags.handed_off = false;
        // Records read earlier that rustls has not taken yet (the outbox was full) go first.
        if let Some(rest) = flags.tls_in.take() {
            let mut input = &rest[..];
            let go = self.pump_tls(tls, flags, &mut input)?;
            if !input.is_empty() {
                flags.tls_in = Some(rest.slice(rest.len() - input.len()..));
            }
            if !go {
                return Ok(false);
            }
            if flags.handed_off {
                return Ok(true);
            }
        }
        let mut drained = false;
        for _ in 0..self.config.reads_per_wake {
            if flags.tcp_eof {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed the connection during the TLS handshake",
                ));
            }
            if drained {
                flags.can_read = false;
                self.arm_reader(flags);
                return Ok(false);
            }
            // One read takes every record the socket holds (rustls itself reads at most 4 KiB at
            // a time); rustls is then fed from memory.
            let mut buf = TLS_READ.take();
            let want = self.config.read_size;
            if buf.len() < want {
                buf.resize(want, 0);
            }
            let r = match self.conn.stream_mut().read(&mut buf[..want]) {
                Ok(0) => {
                    flags.tcp_eof = true;
                    // Tells rustls the stream has ended (it reads the EOF from an empty reader).
                    tls.read_tls(&mut io::empty()).and_then(|_| {
                        let mut none: &[u8] = &[];
                        self.pump_tls(tls, flags, &mut none)
                    })
                }
                Ok(n) => {
                    self.counters.add_in(n);
                    // Less than asked for: the socket is empty (see `Socket::short_read_drains`).
                    drained = n < want
                        && self.conn.stream().short_read_drains()
                        && !self.conn.selector.read_closed(self.conn.token);
                    let mut input = &buf[..n];
                    let r = self.pump_tls(tls, flags, &mut input);
                    if !input.is_empty() {
                        flags.tls_in = Some(Bytes::copy_from_slice(input));
                    }
                    r
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    flags.can_read = false;
                    self.arm_reader(flags);
                    Ok(false)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
                Err(e) => Err(e),
            };
            TLS_READ.set(buf);
            if !r? {
                return Ok(false);
            }
            if flags.handed_off {
                // As in `fill`: the handler, and the reply, run before more is read.
                return Ok(true);
            }
        }
        Ok(true)
    }

    /// Hands the plaintext rustls holds to `outbox`, then feeds it `input` (records read from the
    /// socket) and hands on what that decrypts, until `input` is used up. False when reading must
    /// stop: the outbox is full (the chunk is held, `input` keeps the rest) or the peer has sent
    /// close_notify.
    pub(super) fn pump_tls(
        &mut self,
        tls: &mut rustls::Connection,
        flags: &mut Flags,
        input: &mut &[u8],
    ) -> io::Result<bool> {
        loop {
            loop {
                match read_chunk_zeroed(&mut tls.reader(), self.config.read_size) {
                    Ok(Chunk::Data { bytes: chunk, .. }) => {
                        if !self.pass_on(chunk, flags) {
                            return Ok(false);
                        }
                    }
                    Ok(Chunk::Eof) => {
                        // close_notify: the TLS peer's EOF. Anything after it is ignored.
                        *input = &[];
                        flags.read_open = false;
                        flags.eof_unreported = true;
                        flags.first_close.get_or_insert(CloseReason::Eof);
                        return Ok(false);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "peer closed the connection without TLS close_notify",
                        ));
                    }
                    Err(e) => return Err(e),
                }
            }
            if input.is_empty() {
                return Ok(true);
            }
            // rustls takes at most one record's worth at a time; it has just been emptied of
            // plaintext, so it cannot refuse for a full plaintext buffer.
            if tls.read_tls(input)? == 0 {
                // Only after close_notify, which the reader reports above.
                *input = &[];
            }
            if let Err(e) = tls.process_new_packets() {
                // Send the alert rustls queued, if the socket takes it; the error ends us anyway.
                let _ = tls.write_tls(self.conn.stream_mut());
                let what = if tls.is_handshaking() {
                    "TLS handshake failed"
                } else {
                    "TLS error"
                };
                if flags.handshake_deadline.take().is_some() {
                    let _ = self
                        .sslready()
                        .send(SslReady::Failed(format!("{what}: {e}")));
                }
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{what}: {e}"),
                ));
            }
            self.check_handshake(tls, flags);
        }
    }
}
