//! [`Selector`]: socket readiness as messages (Kamaelia's `Kamaelia.Internet.Selector`).

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use axon::ipc::SelectorRequest;
use axon::{Component, Core, Driver, Inbox, Ipc, Scheduler, ThreadParker, Unpark};
use mio::event::Source;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

/// The token reserved for the selector's own waker.
const WAKER: Token = Token(usize::MAX);

/// How many events one `epoll_wait` returns at most.
const EVENTS: usize = 1024;

/// The name the selector is registered under in the scheduler's services registry.
pub const SERVICE: &str = "selector";

/// A readiness notice: the registered socket (by its token) is readable, or writable. Kamaelia
/// sent the selectable itself; here the token names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// Which registration is ready.
    pub token: Token,
}

/// What the selector's `notify` inbox takes: Kamaelia's `newReader`, `newWriter`, `removeReader` and
/// `removeWriter`, with the registration's token as the selectable and an inbox to notify.
pub type SelectorMsg = SelectorRequest<Token, Inbox<Readiness>>;

#[derive(Default)]
struct Entry {
    reader: Option<Inbox<Readiness>>,
    writer: Option<Inbox<Readiness>>,
    /// Readiness that arrived while no one was registered, remembered so no wake-up is lost with
    /// edge-triggered polling.
    readable: bool,
    writable: bool,
    /// The peer's FIN (or an error) has been seen: a short read no longer means "drained".
    read_closed: bool,
}

struct State {
    poll: Poll,
    events: Events,
    entries: Slab<Entry>,
    /// The selector component is running: it would apply a request as soon as it read it.
    live: bool,
}

impl State {
    fn apply(&mut self, msg: SelectorMsg) {
        match msg {
            SelectorRequest::NewReader {
                reply, selectable, ..
            } => {
                if let Some(e) = self.entries.get_mut(selectable.0) {
                    if e.readable {
                        e.readable = false;
                        let _ = reply.deliver(Readiness { token: selectable });
                    } else if e.reader.is_none() {
                        // First registrant wins, as in Kamaelia; a duplicate is ignored.
                        e.reader = Some(reply);
                    }
                }
            }
            SelectorRequest::NewWriter {
                reply, selectable, ..
            } => {
                if let Some(e) = self.entries.get_mut(selectable.0) {
                    if e.writable {
                        e.writable = false;
                        let _ = reply.deliver(Readiness { token: selectable });
                    } else if e.writer.is_none() {
                        e.writer = Some(reply);
                    }
                }
            }
            SelectorRequest::RemoveReader { selectable, .. } => {
                if let Some(e) = self.entries.get_mut(selectable.0) {
                    e.reader = None;
                }
            }
            SelectorRequest::RemoveWriter { selectable, .. } => {
                if let Some(e) = self.entries.get_mut(selectable.0) {
                    e.writer = None;
                }
            }
            _ => {}
        }
    }

    /// Waits for events and hands each to its registrant, readers before writers.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for ev in self.events.iter() {
            let token = ev.token();
            let Some(e) = self.entries.get_mut(token.0) else {
                continue; // the waker, or a registration already gone
            };
            // Errors and hang-ups count as both: the next read or write reports them.
            let broken = ev.is_error() || ev.is_read_closed() || ev.is_write_closed();
            if ev.is_error() || ev.is_read_closed() {
                e.read_closed = true;
            }
            if ev.is_readable() || broken {
                match e.reader.take() {
                    Some(r) => drop(r.deliver(Readiness { token })),
                    None => e.readable = true,
                }
            }
            if ev.is_writable() || broken {
                match e.writer.take() {
                    Some(w) => drop(w.deliver(Readiness { token })),
                    None => e.writable = true,
                }
            }
        }
        Ok(())
    }
}

/// A handle to the selector: registers sockets with its `epoll` instance and reaches its `notify`
/// inbox. Cheap to clone; `!Send` (it belongs to one scheduler).
#[derive(Clone)]
pub struct SelectorHandle {
    state: Rc<RefCell<State>>,
    notify: Inbox<SelectorMsg>,
}

impl SelectorHandle {
    /// Registers `source` for readable and writable readiness (edge-triggered) and returns its
    /// token. Nobody is notified until a `newReader` / `newWriter` for the token arrives on
    /// `notify`; readiness that comes earlier is remembered.
    ///
    /// # Errors
    ///
    /// The OS error from `epoll_ctl`.
    pub fn register<S: Source + ?Sized>(&self, source: &mut S) -> io::Result<Token> {
        let mut st = self.state.borrow_mut();
        let token = Token(st.entries.vacant_key());
        st.poll
            .registry()
            .register(source, token, Interest::READABLE | Interest::WRITABLE)?;
        st.entries.insert(Entry::default());
        Ok(token)
    }

    /// Removes `source` from the selector; pending notices for it are dropped.
    ///
    /// # Errors
    ///
    /// The OS error from `epoll_ctl` (the token is freed regardless).
    pub fn deregister<S: Source + ?Sized>(&self, source: &mut S, token: Token) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        st.entries.try_remove(token.0);
        st.poll.registry().deregister(source)
    }

    /// Forgets the registration under `token` without a system call, for a socket whose only
    /// descriptor is about to be closed: closing it takes it out of the `epoll` set, so an
    /// `epoll_ctl(EPOLL_CTL_DEL)` first would be one system call per connection for nothing. A
    /// socket with a second descriptor (a `dup`) stays in the set until both are closed: deregister
    /// that one instead.
    pub(crate) fn forget(&self, token: Token) {
        self.state.borrow_mut().entries.try_remove(token.0);
    }

    /// The selector's `notify` inbox, for `newReader` / `newWriter` / `removeReader` /
    /// `removeWriter` messages.
    pub fn notify(&self) -> &Inbox<SelectorMsg> {
        &self.notify
    }

    /// Applies `msg` at once, as the running selector would when it read it from `notify`, or
    /// gives it back to be sent there when the selector is not running (nobody would read it).
    ///
    /// Requests already waiting in `notify` are applied first, in order, as the selector would
    /// read them: a new request never overtakes them, and never waits behind them either. A
    /// removal that waited would leave a window in which a readiness notice still went to the
    /// inbox it withdrew (a hibernating adapter's `ReadReady`, say); with edge-triggered polling
    /// no second notice comes for the socket's next owner.
    ///
    /// A socket adapter asks for a readiness notice after nearly every message it reads; sent,
    /// each request is a delivery, a wake of the selector and a poll of it.
    pub(crate) fn apply_now(&self, msg: SelectorMsg) -> Result<(), SelectorMsg> {
        let mut st = self.state.borrow_mut();
        if !st.live {
            return Err(msg);
        }
        while let Some(queued) = self.notify.recv_now() {
            st.apply(queued);
        }
        st.apply(msg);
        Ok(())
    }

    /// Whether the peer's FIN (or an error) has been reported for `token`. Until it has, a read
    /// that returns less than it asked for has drained the socket: with edge-triggered polling,
    /// bytes arriving later raise a new edge, so the reader can wait for the next notice instead
    /// of reading again only to get `WouldBlock`.
    pub fn read_closed(&self, token: Token) -> bool {
        self.state
            .borrow()
            .entries
            .get(token.0)
            .is_none_or(|e| e.read_closed)
    }

    /// Whether the selector is running (activated, polled, not ended): a handle kept across
    /// connections stays good while it is.
    pub(crate) fn is_live(&self) -> bool {
        self.state.borrow().live
    }

    /// How many sockets are registered.
    pub fn registrations(&self) -> usize {
        self.state.borrow().entries.len()
    }

    /// Finds the selector of the scheduler running on this thread, starting one if there is none
    /// (Kamaelia's `Selector.getSelectorServices`, which left activation to the caller; here the
    /// new selector is activated at once).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::Other`] if no scheduler is running on this thread; the OS error if the
    /// `epoll` instance cannot be created.
    pub fn current() -> io::Result<Self> {
        let sched = Scheduler::current()
            .ok_or_else(|| io::Error::other("no axon scheduler is running on this thread"))?;
        Self::on(&sched)
    }

    /// Finds or starts the selector of `sched` (see [`SelectorHandle::current`]).
    ///
    /// # Errors
    ///
    /// The OS error if the `epoll` instance cannot be created.
    pub fn on(sched: &Scheduler) -> io::Result<Self> {
        // The service is withdrawn when a selector ends, so a live service means a live selector.
        if sched.has_service(SERVICE) {
            if let Ok(handle) = sched.value::<SelectorHandle>(SERVICE) {
                return Ok(handle);
            }
        }
        let selector = Selector::new()?;
        let handle = selector.handle();
        let core = selector.core().clone();
        if sched.track_value(SERVICE, handle.clone()).is_err() {
            let _ = sched.update_value(SERVICE, handle.clone());
        }
        // Cannot clash: no live selector holds the name.
        let _ = sched.register_service(SERVICE, &core, "notify");
        sched.activate(selector);
        Ok(handle)
    }
}

impl fmt::Debug for SelectorHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectorHandle")
            .field("registrations", &self.registrations())
            .finish()
    }
}

struct SelectorDriver {
    state: Rc<RefCell<State>>,
    waker: Arc<Waker>,
}

struct WakerUnpark(Arc<Waker>);

impl Unpark for WakerUnpark {
    fn unpark(&self) {
        // A failed eventfd write leaves the scheduler to its timeout; nothing better to do here.
        let _ = self.0.wake();
    }
}

impl Driver for SelectorDriver {
    fn park(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.state.borrow_mut().wait(timeout)
    }

    fn unparker(&self) -> Arc<dyn Unpark> {
        Arc::new(WakerUnpark(self.waker.clone()))
    }
}

/// Delivers socket readiness to components, one notice per registration (Kamaelia's `Selector`).
///
/// The selector owns an `epoll` instance (through `mio`) and becomes the scheduler's OS wait: when
/// no component is runnable the scheduler blocks in `epoll_wait`, with the nearest timer as timeout,
/// so socket readiness, timers and cross-thread wakes share one blocking call and nothing spins.
/// One selector per scheduler, found with [`SelectorHandle::current`] (it is registered as the
/// service `"selector"`, its `notify` inbox).
///
/// # Inboxes
///
/// * `notify` — [`SelectorMsg`]: `NewReader` / `NewWriter` ask for one notice when the token's
///   socket is readable / writable; `RemoveReader` / `RemoveWriter` withdraw the request.
/// * `control` — `shutdownMicroprocess` stops the selector.
///
/// # Outboxes
///
/// None of its own: each notice is a [`Readiness`] delivered to the inbox given in the request.
///
/// # How it works
///
/// Sockets are registered once, edge-triggered, for both directions ([`SelectorHandle::register`]).
/// Notices are **one-shot**: after one notice the registrant must ask again (the socket adapter does
/// so after `WouldBlock`). Readiness that arrives while nobody asked is remembered and delivered as
/// soon as a request comes, so no wake-up is lost. A duplicate request is ignored (the first
/// registrant wins), a removal before readiness means no notice, and readers are notified before
/// writers. Readiness is a hint: read or write until `WouldBlock`.
///
/// # Shutdown
///
/// The selector is a daemon: it never ends by itself, but the scheduler's `run` returns once only
/// daemons are left. `shutdownMicroprocess` on `control` ends it at once. When it ends it hands the
/// scheduler back its plain thread-parking wait and leaves the services registry.
pub struct Selector {
    core: Core,
    notify: Inbox<SelectorMsg>,
    control: Inbox<Ipc>,
    state: Rc<RefCell<State>>,
    waker: Arc<Waker>,
}

impl Selector {
    /// Creates a selector. Activating it installs it as the scheduler's OS wait.
    ///
    /// # Errors
    ///
    /// The OS error if the `epoll` instance or its waker cannot be created (e.g. out of file
    /// descriptors).
    pub fn new() -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let core = Core::new("Selector");
        core.set_daemon(true);
        Ok(Self {
            notify: core.inbox(
                "notify",
                "newReader/newWriter/removeReader/removeWriter requests",
            ),
            control: core.inbox("control", "shutdownMicroprocess stops the selector"),
            core,
            state: Rc::new(RefCell::new(State {
                poll,
                events: Events::with_capacity(EVENTS),
                entries: Slab::new(),
                live: false,
            })),
            waker,
        })
    }

    /// A handle for registering sockets and reaching `notify`.
    pub fn handle(&self) -> SelectorHandle {
        SelectorHandle {
            state: self.state.clone(),
            notify: self.notify.clone(),
        }
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selector")
            .field("core", &self.core)
            .finish()
    }
}

/// Gives the scheduler its plain wait back when the selector ends, however it ends, and sends
/// later requests to `notify` again (where nobody reads them).
struct Uninstall(Option<Scheduler>, Rc<RefCell<State>>);

impl Drop for Uninstall {
    fn drop(&mut self) {
        self.1.borrow_mut().live = false;
        if let Some(sched) = self.0.take() {
            sched.set_driver(Box::new(ThreadParker::new()));
            let _ = sched.deregister_service(SERVICE);
        }
    }
}

impl Component for Selector {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn main(self) {
        let sched = Scheduler::current();
        if let Some(s) = &sched {
            s.set_driver(Box::new(SelectorDriver {
                state: self.state.clone(),
                waker: self.waker.clone(),
            }));
        }
        self.state.borrow_mut().live = true;
        let _uninstall = Uninstall(sched, self.state.clone());
        loop {
            while let Some(msg) = self.notify.recv_now() {
                self.state.borrow_mut().apply(msg);
            }
            while let Some(c) = self.control.recv_now() {
                if c.is_shutdown_microprocess() {
                    return;
                }
            }
            self.core.pause_for_delivery().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registered socket (kept alive with its peer) and an inbox for its notices.
    fn registered(h: &SelectorHandle) -> (Token, Inbox<Readiness>, impl Sized) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut ours = mio::net::TcpStream::from_std(ours);
        let token = h.register(&mut ours).unwrap();
        let owner = Core::new("Owner");
        let reply = owner.inbox("ReadReady", "notices");
        (token, reply, (ours, peer, owner))
    }

    fn new_reader(token: Token, reply: &Inbox<Readiness>) -> SelectorMsg {
        SelectorRequest::NewReader {
            caller: axon::ComponentId(0),
            reply: reply.clone(),
            selectable: token,
        }
    }

    #[test]
    fn a_request_is_applied_at_once_only_while_the_selector_runs_with_nothing_queued() {
        let selector = Selector::new().unwrap();
        let h = selector.handle();
        let (token, reply, _keep) = registered(&h);
        let reader = |st: &State| st.entries[token.0].reader.is_some();

        // Not running: nobody would read it, so it goes to `notify` like any other.
        assert!(h.apply_now(new_reader(token, &reply)).is_err());
        assert!(!reader(&selector.state.borrow()));

        selector.state.borrow_mut().live = true;
        assert!(h.apply_now(new_reader(token, &reply)).is_ok());
        assert!(reader(&selector.state.borrow()), "in place at once");

        // Queued requests come first, then the new one: it neither overtakes them nor waits.
        let other = Core::new("Other");
        let other_reply = other.inbox("ReadReady", "notices");
        h.notify()
            .deliver(SelectorRequest::RemoveReader {
                caller: axon::ComponentId(0),
                selectable: token,
            })
            .unwrap();
        assert!(h.apply_now(new_reader(token, &other_reply)).is_ok());
        assert!(h.notify().is_empty(), "the queued removal was applied");
        {
            let mut st = selector.state.borrow_mut();
            let taken = st.entries[token.0].reader.take();
            assert!(
                taken.is_some(),
                "the new request is in place after the removal"
            );
            let _ = taken.unwrap().deliver(Readiness { token });
        }
        assert_eq!(other_reply.recv_now(), Some(Readiness { token }));
        assert_eq!(reply.recv_now(), None, "the withdrawn inbox got nothing");

        // Readiness remembered before the request is delivered by it, as when read from `notify`.
        {
            let mut st = selector.state.borrow_mut();
            st.entries[token.0].reader = None;
            st.entries[token.0].readable = true;
        }
        assert!(h.apply_now(new_reader(token, &reply)).is_ok());
        assert_eq!(reply.recv_now(), Some(Readiness { token }));
        assert!(!selector.state.borrow().entries[token.0].readable);
    }
}
