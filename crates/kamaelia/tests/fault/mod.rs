//! Fault-injecting test doubles for the `ConnectedSocketAdapter`: a socket whose data path is
//! simulated in memory and scripted call by call ([`FaultySocket`], [`Script`], [`Fault`]), and a
//! rig in which the test plays the selector ([`FaultRig`]).
//!
//! The socket is registrable with mio (one end of a `UnixStream` pair stands in for it) but no
//! byte crosses that stream: reads come from [`Script::inbound`], writes land in [`Script::wire`],
//! and every call first takes the next scripted [`Fault`]. The selector is made but never
//! activated, so the CSA's `newReader` / `newWriter` requests pile up in its `notify` inbox, where
//! the rig reads them; readiness is delivered by the test, when and only when it says so.
//! Everything is single-threaded and nothing waits on time.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;

use axon::ipc::{CloseReason, ConnectionInfo, SelectorRequest, ShutdownCsa, SocketShutdown};
use axon::{Component, Core, Inbox, Ipc, Scheduler};
use bytes::Bytes;
use kamaelia::internet::{
    ConnectedSocketAdapter, CsaConfig, Readiness, Selector, SelectorHandle, Socket,
};
use mio::net::UnixStream;

use crate::util::{collector, kinds, request_caller, take_all};

/// `ECONNRESET` on Linux.
pub(crate) const ECONNRESET: i32 = 104;
/// `EPIPE` on Linux.
pub(crate) const EPIPE: i32 = 32;
/// `EMFILE` on Linux.
pub(crate) const EMFILE: i32 = 24;
/// `ENOTCONN` on Linux.
pub(crate) const ENOTCONN: i32 = 107;

/// The most scheduler cycles one [`FaultRig::step`] may take: a CSA that needs more is spinning.
const MAX_STEP: usize = 10_000;

/// What one read, write or shutdown call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Behave normally (the socket's simulated state decides).
    Pass,
    /// `EAGAIN`, whatever the state.
    WouldBlock,
    /// Move at most this many bytes (a short read or write); 1 or more.
    Partial(usize),
    /// Fail with an error of this kind.
    Error(io::ErrorKind),
    /// Fail with this raw OS error (`ECONNRESET`, `EPIPE`, `EMFILE`, ...).
    Os(i32),
    /// `EINTR`.
    Interrupted,
}

impl Fault {
    fn error(self) -> io::Error {
        match self {
            Fault::WouldBlock => io::ErrorKind::WouldBlock.into(),
            Fault::Interrupted => io::ErrorKind::Interrupted.into(),
            Fault::Error(kind) => kind.into(),
            Fault::Os(code) => io::Error::from_raw_os_error(code),
            Fault::Pass | Fault::Partial(_) => unreachable!("not an error"),
        }
    }
}

/// The socket's simulated state and script, shared by the test and the [`FaultySocket`].
#[derive(Debug, Default)]
pub(crate) struct Script {
    /// Bytes the peer has sent and the CSA has not read yet.
    pub(crate) inbound: VecDeque<u8>,
    /// Every byte the peer has sent, in order.
    pub(crate) sent: Vec<u8>,
    /// The peer has finished sending: once `inbound` is empty, reads return 0.
    pub(crate) eof: bool,
    /// What the next read calls do, one entry each (then [`Fault::Pass`]).
    pub(crate) read_faults: VecDeque<Fault>,
    /// What the next write calls do, one entry each (then [`Fault::Pass`]).
    pub(crate) write_faults: VecDeque<Fault>,
    /// What the next shutdown calls do: [`Fault::Pass`] or an error.
    pub(crate) shutdown_faults: VecDeque<Fault>,
    /// Room in the send buffer: writes take at most this much, and would block at 0. `None`: no limit.
    pub(crate) write_room: Option<usize>,
    /// Every byte the CSA wrote, in order.
    pub(crate) wire: Vec<u8>,
    /// How much of `wire` had been written when the write side was shut (the FIN).
    pub(crate) fin_at: Option<usize>,
    /// Every successful shutdown call.
    pub(crate) shutdowns: Vec<Shutdown>,
    /// Read calls so far.
    pub(crate) reads: usize,
    /// Write calls so far.
    pub(crate) writes: usize,
    /// The token the socket was registered under.
    pub(crate) token: Option<mio::Token>,
    /// The socket has been deregistered.
    pub(crate) deregistered: bool,
    /// The socket has been dropped (closed).
    pub(crate) closed: bool,
    /// `set_reset_on_close` was called.
    pub(crate) reset_on_close: bool,
    /// Misuse seen by the socket (a write after the FIN, say); must stay empty.
    pub(crate) violations: Vec<String>,
}

impl Script {
    /// Whether a real socket in this state would poll readable: data, EOF, or a pending error.
    pub(crate) fn readable(&self) -> bool {
        !self.inbound.is_empty() || self.eof || !self.read_faults.is_empty()
    }

    /// Whether a real socket in this state would poll writable.
    pub(crate) fn writable(&self) -> bool {
        self.write_room != Some(0) || !self.write_faults.is_empty()
    }

    /// The peer sends `bytes`.
    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.inbound.extend(bytes.iter().copied());
        self.sent.extend_from_slice(bytes);
    }
}

/// A socket whose data path is the [`Script`]; registrable with mio through a `UnixStream`.
pub(crate) struct FaultySocket {
    io: UnixStream,
    _other_end: UnixStream,
    script: Rc<RefCell<Script>>,
}

impl FaultySocket {
    /// A fresh socket and the script that drives it.
    pub(crate) fn new() -> (Self, Rc<RefCell<Script>>) {
        let (io, other) = UnixStream::pair().expect("socketpair");
        let script = Rc::new(RefCell::new(Script::default()));
        let sock = Self {
            io,
            _other_end: other,
            script: script.clone(),
        };
        (sock, script)
    }
}

impl Drop for FaultySocket {
    fn drop(&mut self) {
        self.script.borrow_mut().closed = true;
    }
}

impl Read for FaultySocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.script.borrow_mut();
        s.reads += 1;
        if s.closed || s.shutdowns.iter().any(|h| *h != Shutdown::Write) {
            s.violations
                .push("read after the read side was shut".to_owned());
        }
        let limit = match s.read_faults.pop_front().unwrap_or(Fault::Pass) {
            Fault::Pass => buf.len(),
            Fault::Partial(n) => n.min(buf.len()),
            other => return Err(other.error()),
        };
        if s.inbound.is_empty() {
            return if s.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = limit.min(s.inbound.len());
        for (dst, b) in buf[..n].iter_mut().zip(s.inbound.drain(..n)) {
            *dst = b;
        }
        Ok(n)
    }
}

impl Write for FaultySocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.script.borrow_mut();
        s.writes += 1;
        if s.fin_at.is_some() {
            s.violations
                .push(format!("write of {} bytes after the FIN", buf.len()));
            return Err(io::Error::from_raw_os_error(EPIPE));
        }
        let mut limit = match s.write_faults.pop_front().unwrap_or(Fault::Pass) {
            Fault::Pass => buf.len(),
            Fault::Partial(n) => n.min(buf.len()),
            other => return Err(other.error()),
        };
        if let Some(room) = s.write_room.as_mut() {
            if *room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            limit = limit.min(*room);
            *room -= limit;
        }
        s.wire.extend_from_slice(&buf[..limit]);
        Ok(limit)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl mio::event::Source for FaultySocket {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.script.borrow_mut().token = Some(token);
        self.io.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.io.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        self.script.borrow_mut().deregistered = true;
        self.io.deregister(registry)
    }
}

/// The peer's address every [`FaultySocket`] reports.
pub(crate) fn peer_addr() -> SocketAddr {
    "127.0.0.1:40001".parse().unwrap()
}

/// The local address every [`FaultySocket`] reports.
pub(crate) fn local_addr() -> SocketAddr {
    "127.0.0.1:50002".parse().unwrap()
}

impl Socket for FaultySocket {
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let mut s = self.script.borrow_mut();
        match s.shutdown_faults.pop_front().unwrap_or(Fault::Pass) {
            Fault::Pass | Fault::Partial(_) => {}
            other => return Err(other.error()),
        }
        if how != Shutdown::Read && s.fin_at.is_none() {
            s.fin_at = Some(s.wire.len());
        }
        s.shutdowns.push(how);
        Ok(())
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(peer_addr())
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(local_addr())
    }

    fn set_nodelay(&self, _nodelay: bool) -> io::Result<()> {
        Ok(())
    }

    fn set_reset_on_close(&self) {
        self.script.borrow_mut().reset_on_close = true;
    }
}

/// A CSA over a [`FaultySocket`], with the test as its selector.
pub(crate) struct FaultRig {
    pub(crate) sched: Scheduler,
    handle: SelectorHandle,
    _selector: Selector,
    pub(crate) csa: Core,
    pub(crate) info: ConnectionInfo,
    /// The CSA's `inbox`.
    pub(crate) input: Inbox<Bytes>,
    /// The CSA's `control`.
    pub(crate) control: Inbox<Ipc>,
    read_ready: Inbox<Readiness>,
    send_ready: Inbox<Readiness>,
    /// What came out of `outbox` and has not been taken yet (bound it for back-pressure).
    pub(crate) received: Inbox<Bytes>,
    feedback: Inbox<Ipc>,
    signal: Inbox<Ipc>,
    /// The socket's script.
    pub(crate) sock: Rc<RefCell<Script>>,
    /// The selector model: a `newReader` stands (no notice delivered since).
    pub(crate) reader_wanted: bool,
    /// The selector model: a `newWriter` stands.
    pub(crate) writer_wanted: bool,
    /// `newReader` requests seen.
    pub(crate) reader_requests: usize,
    /// `newWriter` requests seen.
    pub(crate) writer_requests: usize,
    /// `removeReader` / `removeWriter` requests seen, in order.
    removes: Vec<&'static str>,
    /// Bytes taken out of `received` so far, in order.
    pub(crate) got: Vec<u8>,
    /// Messages taken out of `signal` so far, in order.
    signals: Vec<Ipc>,
}

impl FaultRig {
    /// A CSA on a fresh scheduler (activated, not yet run).
    pub(crate) fn new(config: CsaConfig) -> Self {
        Self::on(&Scheduler::new(), config)
    }

    /// A CSA on `sched`, with its own (never activated) selector.
    pub(crate) fn on(sched: &Scheduler, config: CsaConfig) -> Self {
        let selector = Selector::new().unwrap();
        let handle = selector.handle();
        let (sock, script) = FaultySocket::new();
        let csa = ConnectedSocketAdapter::new(sock, &handle, config).unwrap();
        assert_eq!(handle.registrations(), 1);
        let received = collector("bytes from the peer");
        let feedback = collector("CreatorFeedback");
        let signal = collector("signal");
        csa.outbox().link_to(&received).unwrap();
        csa.creator_feedback().link_to(&feedback).unwrap();
        csa.signal().link_to(&signal).unwrap();
        let info = csa.info();
        assert_eq!((info.peer, info.local), (peer_addr(), local_addr()));
        let r = Self {
            sched: sched.clone(),
            handle,
            _selector: selector,
            csa: csa.core().clone(),
            info,
            input: csa.inbox().clone(),
            control: csa.control().clone(),
            read_ready: csa.read_ready().clone(),
            send_ready: csa.send_ready().clone(),
            received,
            feedback,
            signal,
            sock: script,
            reader_wanted: false,
            writer_wanted: false,
            reader_requests: 0,
            writer_requests: 0,
            removes: Vec::new(),
            got: Vec::new(),
            signals: Vec::new(),
        };
        sched.activate(csa);
        r
    }

    fn token(&self) -> mio::Token {
        self.sock.borrow().token.expect("registered")
    }

    /// Queues messages on the CSA's `inbox`.
    pub(crate) fn queue(&self, msgs: &[Bytes]) {
        for m in msgs {
            self.input.deliver(m.clone()).unwrap();
        }
    }

    /// `producerFinished` on `control`.
    pub(crate) fn producer_finished(&self) {
        self.control.deliver(Ipc::producer_finished()).unwrap();
    }

    /// Runs the scheduler until nothing is runnable (bounded: a spinning CSA fails the test), then
    /// reads the CSA's selector requests.
    pub(crate) fn step(&mut self) {
        let cycles = self.sched.run_until_idle(MAX_STEP);
        assert!(
            cycles < MAX_STEP,
            "still runnable after {cycles} cycles: the CSA spins"
        );
        self.collect_requests();
        assert!(
            self.csa.is_paused() || self.csa.is_finished(),
            "idle but neither paused nor finished"
        );
    }

    fn collect_requests(&mut self) {
        let token = self.token();
        for m in self.handle.notify().drain() {
            assert_eq!(request_caller(&m), Some(self.csa.id()));
            match m {
                SelectorRequest::NewReader {
                    reply, selectable, ..
                } => {
                    assert_eq!((selectable, reply.name()), (token, "ReadReady"));
                    self.reader_wanted = true;
                    self.reader_requests += 1;
                }
                SelectorRequest::NewWriter {
                    reply, selectable, ..
                } => {
                    assert_eq!((selectable, reply.name()), (token, "SendReady"));
                    self.writer_wanted = true;
                    self.writer_requests += 1;
                }
                SelectorRequest::RemoveReader { selectable, .. } => {
                    assert_eq!(selectable, token);
                    self.reader_wanted = false;
                    self.removes.push("removeReader");
                }
                SelectorRequest::RemoveWriter { selectable, .. } => {
                    assert_eq!(selectable, token);
                    self.writer_wanted = false;
                    self.removes.push("removeWriter");
                }
                other => panic!("unexpected selector request {other:?}"),
            }
        }
    }

    /// Delivers a `ReadReady` notice, asked for or not (a spurious one if not).
    pub(crate) fn notify_read(&mut self) {
        self.reader_wanted = false;
        let _ = self.read_ready.deliver(Readiness {
            token: self.token(),
        });
    }

    /// Delivers a `SendReady` notice, asked for or not.
    pub(crate) fn notify_write(&mut self) {
        self.writer_wanted = false;
        let _ = self.send_ready.deliver(Readiness {
            token: self.token(),
        });
    }

    /// Plays a faithful selector until nothing more happens: steps, and answers each standing
    /// request as soon as the socket is ready in that direction. Ends with the CSA paused or
    /// finished.
    pub(crate) fn pump(&mut self) {
        for _ in 0..10_000 {
            self.step();
            if self.csa.is_finished() {
                return;
            }
            let (readable, writable) = {
                let s = self.sock.borrow();
                (s.readable(), s.writable())
            };
            let mut delivered = false;
            if self.reader_wanted && readable {
                self.notify_read();
                delivered = true;
            }
            if self.writer_wanted && writable {
                self.notify_write();
                delivered = true;
            }
            if !delivered {
                return;
            }
        }
        panic!("the selector model never went quiet");
    }

    /// Moves what waits on `signal` onto the record. When the peer's EOF shows up there, checks
    /// that every byte the peer sent has already come out of `outbox`, in order.
    fn collect_signals(&mut self) {
        let before = self.signals.len();
        self.signals.extend(take_all(&self.signal));
        if self.signals[before..]
            .iter()
            .any(|m| matches!(m, Ipc::ProducerFinished(_)))
        {
            // Nothing the CSA sent after the EOF notice can be in `received` yet: the CSA has not
            // run since it was collected.
            for chunk in self.received.drain() {
                self.got.extend_from_slice(&chunk);
            }
            let s = self.sock.borrow();
            assert!(s.eof, "EOF reported before the peer finished");
            assert!(
                self.got == s.sent,
                "EOF reported before every byte went out of outbox: {} of {} out",
                self.got.len(),
                s.sent.len()
            );
        }
    }

    /// Moves what waits in `received` onto [`FaultRig::got`] and what waits on `signal` onto the
    /// record (checking the EOF rule, see `collect_signals`).
    pub(crate) fn collect(&mut self) {
        self.collect_signals();
        for chunk in self.received.drain() {
            self.got.extend_from_slice(&chunk);
        }
    }

    /// Takes one chunk out of `received` (a slow consumer), if any.
    pub(crate) fn take_one(&mut self) -> bool {
        match self.received.recv_now() {
            Some(chunk) => {
                self.got.extend_from_slice(&chunk);
                true
            }
            None => false,
        }
    }

    /// The signal messages so far, as names.
    pub(crate) fn signal_kinds(&mut self) -> Vec<&'static str> {
        self.collect_signals();
        kinds(&self.signals)
    }

    /// A copy of everything written to the socket.
    pub(crate) fn wire(&self) -> Vec<u8> {
        self.sock.borrow().wire.clone()
    }

    /// Checks the CSA ended with `reason` and reported it exactly once on `CreatorFeedback` and on
    /// `signal` (after `signal_before`), asked the selector to forget it once, deregistered and
    /// closed the socket, and never misused it. Returns the reason as reported.
    pub(crate) fn assert_ended(
        &mut self,
        reason: CloseReason,
        signal_before: &[&str],
    ) -> CloseReason {
        assert!(self.csa.is_finished(), "the CSA has not ended");
        // Anything sent twice would show up now; late notices must change nothing.
        self.notify_read();
        self.notify_write();
        let _ = self.control.deliver(Ipc::shutdown_microprocess());
        self.step();
        self.collect();
        let feedback = take_all(&self.feedback);
        assert_eq!(kinds(&feedback), ["socketShutdown"], "{feedback:?}");
        let Ipc::SocketShutdown(fb) = &feedback[0] else {
            unreachable!()
        };
        assert_eq!(
            fb,
            &SocketShutdown {
                caller: Some(self.csa.id()),
                connection: Some(self.info),
                reason: reason.clone(),
            }
        );
        let mut want = signal_before.to_vec();
        want.push("shutdownCSA");
        assert_eq!(kinds(&self.signals), want, "{:?}", self.signals);
        let Some(Ipc::ShutdownCsa(sc)) = self.signals.last() else {
            unreachable!()
        };
        assert_eq!(
            sc,
            &ShutdownCsa {
                caller: self.csa.id(),
                csa: self.csa.id(),
                connection: Some(self.info),
                reason: Some(reason),
            }
        );
        assert_eq!(self.removes, ["removeReader", "removeWriter"]);
        assert_eq!(self.handle.registrations(), 0, "still registered");
        let s = self.sock.borrow();
        assert!(
            s.deregistered && s.closed,
            "socket not deregistered and closed"
        );
        assert!(
            s.violations.is_empty(),
            "socket misused: {:?}",
            s.violations
        );
        fb.reason.clone()
    }
}

/// The raw OS error inside an `Io` close reason.
pub(crate) fn raw_os_error(reason: &CloseReason) -> Option<i32> {
    match reason {
        CloseReason::Io(e) => e.raw_os_error(),
        _ => None,
    }
}

/// An `Io` close reason of this raw OS error (compared by kind).
pub(crate) fn os_reason(code: i32) -> CloseReason {
    CloseReason::io(io::Error::from_raw_os_error(code))
}

/// Messages of the given sizes cut from `data`, and all of it.
pub(crate) fn messages(sizes: &[usize], seed: u64) -> (Vec<Bytes>, Vec<u8>) {
    let data = crate::util::pattern(sizes.iter().sum(), seed);
    let whole = Bytes::copy_from_slice(&data);
    let mut at = 0;
    let msgs = sizes
        .iter()
        .map(|&n| {
            let m = whole.slice(at..at + n);
            at += n;
            m
        })
        .collect();
    (msgs, data)
}
