//! The scheduler: a single-threaded, run-to-completion, cooperative executor of components
//! (Axon's `Scheduler.py`).
//!
//! # How it runs
//!
//! Each *cycle* polls every component in the run queue once, fires expired timers, and then, if
//! nothing is runnable, blocks in the [`Driver`] (the OS wait) until the nearest timer or a remote
//! wake. It never spins. [`Scheduler::run`] repeats cycles until every component has finished;
//! [`Scheduler::try_tick`] runs one cycle without blocking.
//!
//! A component is runnable after a message is delivered to any of its inboxes, a collection from an
//! inbox its outbox feeds (when it asked for that), a timer it set, a child ending, or a wake from
//! another thread through its [`Waker`]. Wakes inside the scheduler are plain
//! queue pushes: no atomics, no allocation.
//!
//! # Panics in components
//!
//! A component whose `main` panics is stopped: its future is dropped, its `signal` outbox (if it
//! has an `Outbox<Ipc>` called `signal`) carries an [`Ipc::ErrorInformation`] with the panic
//! message, the failure is recorded in [`Scheduler::failures`], and every other component keeps
//! running. (Kamaelia's scheduler let the exception end the whole program; that is a bug.)
//!
//! # The OS wait hook
//!
//! By default the scheduler parks its thread. A [`Driver`] (the networking crate's `Selector`)
//! replaces that with `epoll_wait`, so socket readiness and timers share one blocking call.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::boxes::Inbox;
use crate::component::{AnyComponent, Component, ComponentCell, ComponentId, Core, State};
use crate::error::Error;
use crate::ipc::{ErrorInformation, Ipc};
use crate::timers::TimerQueue;

/// How many components `run` polls before it checks timers and the driver again.
const POLL_BUDGET: usize = 128;

/// The queue of runnable components. Shared with every component activated on the scheduler so a
/// delivery can make the owner runnable with one push.
#[derive(Default)]
pub(crate) struct RunQueue {
    q: RefCell<VecDeque<Rc<ComponentCell>>>,
    /// The component woken last by a component handing off ([`hand_off`]): it runs next.
    slot: RefCell<Option<Rc<ComponentCell>>>,
    /// Whether the component being polled hands off: its wakes go to the slot.
    handing_off: Cell<bool>,
    /// How many components in a row have run from the slot.
    streak: Cell<u8>,
    /// How many live components are daemons.
    daemons: Cell<usize>,
}

/// The most components run in a row from the slot before the queue's head gets its turn: enough
/// for a round trip through a handler (adapter, handler, adapter).
const SLOT_STREAK: u8 = 3;

impl RunQueue {
    pub(crate) fn adjust_daemons(&self, up: bool) {
        let n = self.daemons.get();
        self.daemons
            .set(if up { n + 1 } else { n.saturating_sub(1) });
    }

    #[inline]
    pub(crate) fn push(&self, cell: Rc<ComponentCell>) {
        self.q.borrow_mut().push_back(cell);
    }

    /// Queues a component that was asleep: to the slot when the component being polled hands off
    /// (the one the slot held goes to the back), else to the back.
    #[inline]
    pub(crate) fn wake(&self, cell: Rc<ComponentCell>) {
        if self.handing_off.get() && !cell.daemon.get() {
            if let Some(old) = self.slot.borrow_mut().replace(cell) {
                self.push(old);
            }
        } else {
            self.push(cell);
        }
    }

    /// Moves a queued component to the slot if the component being polled hands off. Its entry
    /// further back stays: when reached, it polls the component again only if it has been queued
    /// again since (see `poll_component`).
    #[inline]
    pub(crate) fn promote(&self, cell: &Rc<ComponentCell>) {
        if !self.handing_off.get() || cell.daemon.get() {
            return;
        }
        let mut slot = self.slot.borrow_mut();
        if slot.as_ref().is_some_and(|c| Rc::ptr_eq(c, cell)) {
            return;
        }
        if let Some(old) = slot.replace(cell.clone()) {
            self.push(old);
        }
    }

    /// The next component to poll, and whether it was handed off to (it then hands off too).
    #[inline]
    fn pop(&self) -> Option<(Rc<ComponentCell>, bool)> {
        let streak = self.streak.get();
        let slot = self.slot.borrow_mut().take();
        if let Some(cell) = slot {
            if streak < SLOT_STREAK {
                self.streak.set(streak + 1);
                return Some((cell, true));
            }
            self.push(cell);
        }
        self.streak.set(0);
        let next = self.q.borrow_mut().pop_front();
        next.map(|cell| (cell, false))
    }

    /// Removes every entry for `cell`.
    fn remove(&self, cell: &Rc<ComponentCell>) {
        self.q.borrow_mut().retain(|c| !Rc::ptr_eq(c, cell));
        let mut slot = self.slot.borrow_mut();
        if slot.as_ref().is_some_and(|c| Rc::ptr_eq(c, cell)) {
            *slot = None;
        }
    }

    fn len(&self) -> usize {
        self.q.borrow().len() + usize::from(self.slot.borrow().is_some())
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Wakes the scheduler's thread out of [`Driver::park`]. Called from any thread.
pub trait Unpark: Send + Sync {
    /// Makes a current or the next `park` return promptly.
    fn unpark(&self);
}

/// The scheduler's OS wait: what it blocks in when no component is runnable.
///
/// The default parks the thread. The networking crate's `Selector` installs a driver that waits in
/// `epoll` and delivers socket readiness to the registered inboxes before returning.
pub trait Driver {
    /// Waits for events: up to `timeout`, forever if `None`, and only collects what is already
    /// there if `Some(Duration::ZERO)`. May return early (spuriously).
    ///
    /// # Errors
    ///
    /// An OS error from the wait. The scheduler reports it and carries on.
    fn park(&mut self, timeout: Option<Duration>) -> io::Result<()>;

    /// A handle that makes `park` return, from any thread.
    fn unparker(&self) -> Arc<dyn Unpark>;
}

/// The default [`Driver`]: parks the scheduler's thread.
#[derive(Debug)]
pub struct ThreadParker {
    thread: Thread,
}

impl ThreadParker {
    /// A parker for the calling thread.
    pub fn new() -> Self {
        Self {
            thread: thread::current(),
        }
    }
}

impl Default for ThreadParker {
    fn default() -> Self {
        Self::new()
    }
}

struct ThreadUnparker(Thread);

impl Unpark for ThreadUnparker {
    fn unpark(&self) {
        self.0.unpark();
    }
}

impl Driver for ThreadParker {
    fn park(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match timeout {
            None => thread::park(),
            Some(d) if d.is_zero() => {}
            Some(d) => thread::park_timeout(d),
        }
        Ok(())
    }

    fn unparker(&self) -> Arc<dyn Unpark> {
        Arc::new(ThreadUnparker(self.thread.clone()))
    }
}

/// Wakes that arrive from other threads, picked up by the scheduler at the top of each cycle.
struct Remote {
    flag: AtomicBool,
    pending: Mutex<Vec<ComponentId>>,
    unpark: Mutex<Arc<dyn Unpark>>,
}

impl Remote {
    fn wake(&self, id: ComponentId) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(id);
        self.flag.store(true, AtomicOrdering::Release);
        let unpark = self
            .unpark
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        unpark.unpark();
    }
}

/// The `Waker` each component is polled with: safe to use from any thread.
struct RemoteWake {
    remote: Arc<Remote>,
    id: ComponentId,
}

impl Wake for RemoteWake {
    fn wake(self: Arc<Self>) {
        self.remote.wake(self.id);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.remote.wake(self.id);
    }
}

/// A timer's place in the scheduler's timers. [`Sleep`](crate::Sleep) keeps it so dropping the
/// sleep removes the timer.
pub(crate) use crate::timers::TimerKey;

/// A component that panicked, as recorded by the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The component's id.
    pub id: ComponentId,
    /// The component's name.
    pub name: String,
    /// The panic message.
    pub message: String,
}

#[derive(Default)]
struct Services {
    services: FxHashMap<String, (Core, String)>,
    values: FxHashMap<String, Box<dyn Any>>,
}

pub(crate) struct Inner {
    runq: Rc<RunQueue>,
    /// Keyed by ids this process hands out, so a plain fast hash (no defence against chosen
    /// keys is needed): every activation and every end looks a component up here.
    tasks: RefCell<FxHashMap<ComponentId, Rc<ComponentCell>>>,
    /// Armed timers, earliest first. A dropped `Sleep` disarms its timer at once, so a component
    /// that re-arms a timeout per message does not grow them (see [`TimerQueue`]).
    timers: RefCell<TimerQueue<Weak<ComponentCell>>>,
    remote: Arc<Remote>,
    driver: RefCell<Box<dyn Driver>>,
    services: RefCell<Services>,
    current: RefCell<Option<Rc<ComponentCell>>>,
    failures: RefCell<Vec<Failure>>,
    slowmo: Cell<Duration>,
    /// The clock as read at the start of this cycle and after each wait: [`crate::now`].
    now: Cell<Instant>,
    /// Set while a component runs inside another's poll ([`run_handed_off`]): no deeper.
    inline: Cell<bool>,
}

thread_local! {
    static CURRENT: RefCell<Vec<Rc<Inner>>> = const { RefCell::new(Vec::new()) };
    /// The current scheduler's clock (a copy of its `now`), kept beside it so that [`crate::now`],
    /// read several times per message, is one thread-local load.
    static NOW: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The current scheduler's clock, if a scheduler is running on this thread.
#[inline]
pub(crate) fn current_now() -> Option<Instant> {
    NOW.with(Cell::get)
}

/// Makes `inner` the current scheduler of this thread until dropped.
struct Enter {
    /// The clock of the scheduler that was current before (schedulers nest).
    outer_now: Option<Instant>,
}

impl Enter {
    fn new(inner: &Rc<Inner>) -> Self {
        CURRENT.with(|c| c.borrow_mut().push(inner.clone()));
        Self {
            outer_now: NOW.replace(Some(inner.now.get())),
        }
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        CURRENT.with(|c| c.borrow_mut().pop());
        NOW.set(self.outer_now);
    }
}

/// Runs the components that the calling component wakes next, before the rest of the run queue:
/// from this call until the component yields, a component it wakes (by a delivery to its inbox,
/// say) takes the scheduler's one "next" slot, and runs as soon as the caller yields. A component
/// run from the slot hands off in the same way, up to three in a row; then the queue's head has
/// its turn. Returns whether the call had effect: false outside a component, and in a daemon
/// (whose wakes keep their order).
///
/// This is for passing on data that is best used while it is in the processor's cache: an adapter
/// that has read a chunk hands off, so its handler runs, and the adapter writes the reply, before
/// other connections' reads push the chunk out of the cache. The default, without a hand-off, is
/// first come, first served. [`run_handed_off`] goes one step further and runs the component
/// woken at once, inside the caller's poll.
///
/// ```
/// use axon::{Boxes, Component, Core, Scheduler};
///
/// struct Reader {
///     boxes: Boxes<(), Vec<u8>>,
/// }
///
/// impl Component for Reader {
///     fn core(&self) -> &Core {
///         &self.boxes.core
///     }
///
///     async fn main(self) {
///         let chunk = vec![0u8; 256 * 1024]; // as if just read from a socket
///         axon::hand_off(); // the receiver runs next, while `chunk` is in cache
///         let _ = self.boxes.outbox.send(chunk);
///     }
/// }
///
/// assert!(!axon::hand_off()); // not inside a component
/// let reader = Reader { boxes: Boxes::new("Reader") };
/// let sink = reader.core().inbox::<Vec<u8>>("sink", "where chunks go");
/// reader.boxes.outbox.link_to(&sink).unwrap();
/// let s = Scheduler::new();
/// s.activate(reader);
/// s.run();
/// assert_eq!(sink.recv_now().map(|c| c.len()), Some(256 * 1024));
/// ```
pub fn hand_off() -> bool {
    with_current(|s| s.is_some_and(|s| s.hand_off()))
}

/// Runs, here and now inside the calling component's poll, the component its [`hand_off`] woke,
/// instead of after the caller yields: a reply the handler sends comes back before the caller
/// pauses, and the caller can act on it in the same poll (an adapter writes it to its socket)
/// without a second trip through the run queue.
///
/// Returns whether the caller was woken while the other component ran (by a delivery to one of
/// its inboxes, most likely; or the other component, a child of the caller, ending). That wake is
/// then spent: the caller must look again at whatever it waits for, its boxes and any children,
/// before it pauses, as if it had just been woken. (A component that loops until its boxes are
/// empty before each pause does.) Nothing runs, and it returns false, outside a component, when
/// the caller has not handed off or woke nothing since, and inside a component that is itself
/// being run this way: one level only, so the cost of a poll stays bounded. A component run this
/// way that ends, or panics, is finished as any other.
///
/// ```
/// use axon::{Boxes, Component, Core, Scheduler};
///
/// struct Asker {
///     boxes: Boxes<u32, u32>,
/// }
///
/// impl Component for Asker {
///     fn core(&self) -> &Core {
///         &self.boxes.core
///     }
///
///     async fn main(self) {
///         axon::hand_off();
///         let _ = self.boxes.outbox.send(20);
///         // The doubler runs now, so its answer is here before this component pauses (and it
///         // woke this component: hence `true`, and a look at the inbox).
///         assert!(axon::run_handed_off());
///         assert_eq!(self.boxes.inbox.recv_now(), Some(40));
///     }
/// }
///
/// let asker = Asker { boxes: Boxes::new("Asker") };
/// let doubler = axon::FnComponent::<u32, u32, _>::new("Doubler", |b| async move {
///     while let axon::Msg::Data(n) = b.next().await {
///         let _ = b.outbox.send(n * 2);
///     }
/// });
/// asker.boxes.outbox.link_to(&doubler.boxes().inbox).unwrap();
/// doubler.boxes().outbox.link_to(&asker.boxes.inbox).unwrap();
/// let s = Scheduler::new();
/// let asker = s.activate(asker);
/// s.activate(doubler);
/// s.run_until_idle(10);
/// assert!(asker.is_finished());
/// assert!(s.failures().is_empty()); // the asker's assertions held
/// assert!(!axon::run_handed_off()); // not inside a component
/// ```
pub fn run_handed_off() -> bool {
    with_current(|s| s.is_some_and(|s| s.run_handed_off()))
}

/// Runs `f` with the scheduler running on this thread, if any.
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&Rc<Inner>>) -> R) -> R {
    CURRENT.with(|c| f(c.borrow().last()))
}

impl Inner {
    /// Sets the clock (the scheduler is the current one: it is cycling).
    fn set_now(&self, now: Instant) {
        self.now.set(now);
        NOW.set(Some(now));
    }

    /// Lets the component being polled hand off (see [`hand_off`]); false if none is or it is a
    /// daemon.
    pub(crate) fn hand_off(&self) -> bool {
        let daemon = match self.current.borrow().as_ref() {
            Some(cell) => cell.daemon.get(),
            None => return false,
        };
        self.runq.handing_off.set(!daemon);
        !daemon
    }

    /// Polls the component in the hand-off slot inside the current poll (see [`run_handed_off`]).
    pub(crate) fn run_handed_off(&self) -> bool {
        if self.inline.get() || !self.runq.handing_off.get() {
            return false;
        }
        if self.current.borrow().is_none() {
            return false;
        }
        let Some(cell) = self.runq.slot.borrow_mut().take() else {
            return false;
        };
        /// Clears the flag however the poll ends.
        struct Inline<'a>(&'a Cell<bool>);
        impl Drop for Inline<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        self.inline.set(true);
        let guard = Inline(&self.inline);
        self.poll_component(cell, true);
        drop(guard);
        // The caller looks at its boxes again before it pauses (the contract of
        // `run_handed_off`), so what woke it in there needs no run of its own.
        // `poll_component` has made the caller current again.
        let current = self.current.borrow();
        let Some(caller) = current.as_ref() else {
            return false;
        };
        let woken = caller.state.get() == State::Woken;
        if woken {
            caller.state.set(State::Running);
        }
        woken
    }

    /// Re-queues the component being polled; false if none is.
    pub(crate) fn wake_current(&self) -> bool {
        match self.current.borrow().as_ref() {
            Some(cell) => {
                cell.wake();
                true
            }
            None => false,
        }
    }

    /// Arms a timer that wakes the component being polled at `deadline`; `None` if no component
    /// is being polled.
    pub(crate) fn add_timer(&self, deadline: Instant) -> Option<TimerKey> {
        let cell = self.current.borrow().as_ref().map(Rc::downgrade)?;
        Some(self.timers.borrow_mut().insert(deadline, cell))
    }

    /// Disarms a timer (it may already have fired).
    pub(crate) fn remove_timer(&self, key: TimerKey) {
        // The component's handle is dropped after the borrow ends.
        let cell = self.timers.borrow_mut().remove(key);
        drop(cell);
    }

    /// Polls one component (queued, or in the hand-off slot). Inlined in both callers: the
    /// scheduler's loop and [`run_handed_off`] (each poll is on the hot path of every message).
    #[inline(always)]
    pub(crate) fn poll_component(&self, cell: Rc<ComponentCell>, handed_off_to: bool) {
        if cell.state.get() != State::Queued {
            return; // a stale queue entry: paused or stopped since it was queued
        }
        if cell.stop_requested.get() {
            self.finish(&cell, None);
            return;
        }
        cell.state.set(State::Running);
        cell.wants_collection.set(false);
        let Some(waker) = cell.waker.get() else {
            return; // unreachable: set at activation, before the cell is queued
        };
        let mut cx = Context::from_waker(waker);
        let prev = self.current.replace(Some(cell.clone()));
        let runq = &self.runq;
        let was_handing_off = runq
            .handing_off
            .replace(handed_off_to && !cell.daemon.get());
        let result = {
            let mut fut = cell.future.borrow_mut();
            match fut.as_mut() {
                Some(f) => catch_unwind(AssertUnwindSafe(|| f.as_mut().poll(&mut cx))),
                None => Ok(Poll::Ready(())),
            }
        };
        runq.handing_off.set(was_handing_off);
        *self.current.borrow_mut() = prev;
        match result {
            Ok(Poll::Pending) => {
                if cell.stop_requested.get() {
                    self.finish(&cell, None);
                } else {
                    match cell.state.get() {
                        State::Running => cell.state.set(State::Sleeping),
                        // Woken during its own poll: queued now, behind what it woke.
                        State::Woken => {
                            cell.state.set(State::Queued);
                            runq.push(cell);
                        }
                        _ => {}
                    }
                }
            }
            Ok(Poll::Ready(())) => self.finish(&cell, None),
            Err(payload) => self.finish(&cell, Some(panic_message(payload.as_ref()))),
        }
    }

    /// Ends a component: drops its future, reports a panic, wakes its parents, removes the
    /// linkages it made.
    pub(crate) fn finish(&self, cell: &Rc<ComponentCell>, panic: Option<String>) {
        if cell.state.get() == State::Finished {
            return;
        }
        cell.state.set(State::Finished);
        if self.tasks.borrow_mut().remove(&cell.id).is_some() && cell.daemon.get() {
            self.runq.adjust_daemons(false);
        }
        let fut = cell.future.borrow_mut().take();
        let core = Core { cell: cell.clone() };
        let drop_panic = catch_unwind(AssertUnwindSafe(move || drop(fut))).err();
        let panic = panic.or_else(|| drop_panic.map(|p| panic_message(p.as_ref())));
        if let Some(message) = panic {
            self.failures.borrow_mut().push(Failure {
                id: cell.id,
                name: cell.name(),
                message: message.clone(),
            });
            if let Ok(signal) = core.outbox_named::<Ipc>("signal") {
                let _ = signal.send(Ipc::ErrorInformation(ErrorInformation {
                    caller: Some(cell.id),
                    message: format!("component {} panicked: {message}", cell.name()),
                }));
            }
        }
        // Waking a parent queues it and touches nothing of this cell's.
        cell.if_extra(|e| {
            for p in e.parents.iter().filter_map(Weak::upgrade) {
                p.wake();
            }
        });
        core.unlink_all();
    }
}

/// The cooperative scheduler (Axon's `scheduler`). One per thread; `!Send`.
///
/// # Examples
///
/// ```
/// use axon::{FnComponent, Scheduler};
///
/// let sched = Scheduler::new();
/// let hello = FnComponent::<(), (), _>::new("Hello", |_b| async move {
///     axon::sleep(std::time::Duration::from_millis(1)).await;
/// });
/// let core = sched.activate(hello);
/// sched.run();
/// assert!(core.is_finished());
/// ```
#[derive(Clone)]
pub struct Scheduler {
    inner: Rc<Inner>,
}

impl Scheduler {
    /// A scheduler that parks its thread when idle.
    pub fn new() -> Self {
        Self::with_driver(Box::new(ThreadParker::new()))
    }

    /// A scheduler that waits in `driver` when idle.
    pub fn with_driver(driver: Box<dyn Driver>) -> Self {
        let unpark = driver.unparker();
        Self {
            inner: Rc::new(Inner {
                runq: Rc::default(),
                tasks: RefCell::default(),
                timers: RefCell::default(),
                remote: Arc::new(Remote {
                    flag: AtomicBool::new(false),
                    pending: Mutex::new(Vec::new()),
                    unpark: Mutex::new(unpark),
                }),
                driver: RefCell::new(driver),
                services: RefCell::default(),
                current: RefCell::new(None),
                failures: RefCell::default(),
                slowmo: Cell::new(Duration::ZERO),
                now: Cell::new(Instant::now()),
                inline: Cell::new(false),
            }),
        }
    }

    /// The scheduler running on this thread, if called from inside a component (or from inside
    /// [`Scheduler::run`] / [`Scheduler::try_tick`]).
    pub fn current() -> Option<Self> {
        with_current(|c| {
            c.map(|inner| Self {
                inner: inner.clone(),
            })
        })
    }

    /// Replaces the OS wait hook (the networking crate's `Selector` does this when it starts).
    pub fn set_driver(&self, driver: Box<dyn Driver>) {
        let unpark = driver.unparker();
        *self
            .inner
            .remote
            .unpark
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = unpark.clone();
        *self.inner.driver.borrow_mut() = driver;
        // A wake sent through the old driver's unparker (another thread may have read it just
        // before the swap) would not end the new driver's wait: the next park returns at once, and
        // the scheduler looks for wakes again.
        unpark.unpark();
    }

    /// Puts `delay` between cycles (Axon's `slowmo`), to watch a graph run slowly.
    pub fn set_slowmo(&self, delay: Duration) {
        self.inner.slowmo.set(delay);
    }

    /// Activates a component: it will be polled in the next cycle (Axon's `activate`). Returns its
    /// core, so callers can watch it.
    pub fn activate<C: Component>(&self, component: C) -> Core {
        let core = component.core().clone();
        self.activate_future(&core, Box::pin(component.main()));
        core
    }

    /// Activates a type-erased component (see [`Scheduler::activate`]).
    pub fn activate_boxed(&self, component: Box<dyn AnyComponent>) -> Core {
        let core = component.component_core().clone();
        self.activate_future(&core, component.into_main());
        core
    }

    fn activate_future(&self, core: &Core, fut: Pin<Box<dyn Future<Output = ()>>>) {
        let cell = &core.cell;
        if cell.state.get() != State::Inactive || cell.runq.set(self.inner.runq.clone()).is_err() {
            // Already activated (on this or another scheduler): activation is once only.
            return;
        }
        *cell.future.borrow_mut() = Some(fut);
        let _ = cell.waker.set(Waker::from(Arc::new(RemoteWake {
            remote: self.inner.remote.clone(),
            id: cell.id,
        })));
        cell.state.set(State::Queued);
        if cell.daemon.get() {
            self.inner.runq.adjust_daemons(true);
        }
        self.inner.runq.push(cell.clone());
        self.inner.tasks.borrow_mut().insert(cell.id, cell.clone());
    }

    /// Runs until every activated component has finished (Axon's `runThreads`). Blocks in the
    /// driver when nothing is runnable.
    ///
    /// Daemon components ([`Core::set_daemon`]) do not keep it running: once only daemons are
    /// left, they are stopped and `run` returns.
    pub fn run(&self) {
        let _enter = Enter::new(&self.inner);
        // Each cycle reads the clock after its wait; the first one needs it read here.
        self.inner.set_now(Instant::now());
        while self.cycle(true) {}
        let daemons: Vec<_> = self.inner.tasks.borrow().values().cloned().collect();
        for cell in daemons {
            self.inner.finish(&cell, None);
        }
    }

    /// Runs one cycle without blocking; returns whether any component was polled (Kamaelia's
    /// direct use of `main()` does not block either).
    pub fn try_tick(&self) -> bool {
        let _enter = Enter::new(&self.inner);
        // Wakes that arrived between ticks (other threads, expired timers) count as runnable now.
        let now = Instant::now();
        self.inner.set_now(now);
        self.take_remote_wakes();
        self.fire_timers(now);
        let before = self.inner.runq.len();
        self.cycle(false);
        before > 0
    }

    /// Runs cycles, without blocking, until no component is runnable or `max_cycles` have run.
    /// Returns how many cycles ran. Handy in tests that step a graph by hand.
    pub fn run_until_idle(&self, max_cycles: usize) -> usize {
        let mut n = 0;
        while n < max_cycles && self.try_tick() {
            n += 1;
        }
        n
    }

    /// One cycle. Returns false once no component is left.
    ///
    /// The clock is read at most twice: for the wait's timeout when the cycle may block with a
    /// timer armed, and after the wait, where the timers that came due fire. That reading is the
    /// clock the next cycle's components see ([`crate::now`]). A timer that comes due while
    /// components run makes the wait's timeout zero, so it fires no later than before.
    fn cycle(&self, may_block: bool) -> bool {
        let inner = &self.inner;
        self.take_remote_wakes();
        // `try_tick` polls what was runnable at the start of the cycle, once each. `run` keeps
        // going while there is work, up to a budget, before it looks at timers and the OS: fewer
        // `epoll_wait` calls when components hand messages to each other.
        let budget = if may_block {
            inner.runq.len().max(POLL_BUDGET)
        } else {
            inner.runq.len()
        };
        for _ in 0..budget {
            let Some((cell, handed)) = inner.runq.pop() else {
                break;
            };
            inner.poll_component(cell, handed);
        }
        // Only daemons left: `run` is done. `try_tick` still collects OS events below, so a graph
        // of daemons (a selector alone) can be stepped by hand.
        if may_block && inner.tasks.borrow().len() <= inner.runq.daemons.get() {
            return false;
        }
        let timeout = if may_block && inner.runq.is_empty() {
            self.next_timer()
                .map(|d| d.saturating_duration_since(Instant::now()))
        } else {
            Some(Duration::ZERO)
        };
        self.park(timeout);
        let now = Instant::now();
        inner.set_now(now);
        self.take_remote_wakes();
        self.fire_timers(now);
        let slowmo = inner.slowmo.get();
        if !slowmo.is_zero() {
            thread::sleep(slowmo);
        }
        true
    }

    fn park(&self, timeout: Option<Duration>) {
        if let Err(e) = self.inner.driver.borrow_mut().park(timeout) {
            // A failed OS wait is reported, not fatal: the next cycle waits again.
            eprintln!("axon: scheduler wait failed: {e}");
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        self.inner.timers.borrow_mut().next_deadline()
    }

    /// Wakes the components whose timers are due at `now`. "Anything due?" is a look at the
    /// heap's top.
    fn fire_timers(&self, now: Instant) {
        let mut timers = self.inner.timers.borrow_mut();
        while let Some(cell) = timers.pop_due(now) {
            if let Some(cell) = cell.upgrade() {
                cell.wake();
            }
        }
    }

    fn take_remote_wakes(&self) {
        let remote = &self.inner.remote;
        // A plain load first: the swap is a locked instruction, and this runs twice a cycle.
        if !remote.flag.load(AtomicOrdering::Relaxed)
            || !remote.flag.swap(false, AtomicOrdering::Acquire)
        {
            return;
        }
        let ids = std::mem::take(
            &mut *remote
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let tasks = self.inner.tasks.borrow();
        for id in ids {
            if let Some(cell) = tasks.get(&id) {
                cell.wake();
            }
        }
    }

    /// Stops a component from outside (Axon's `stop()`): it is not polled again, its future is
    /// dropped, its parents are woken and its linkages removed. The scheduler and every other
    /// component carry on. Stopping a finished or unknown component does nothing.
    pub fn stop(&self, id: ComponentId) {
        let cell = self.inner.tasks.borrow().get(&id).cloned();
        if let Some(cell) = cell {
            cell.stop_requested.set(true);
            if cell.state.get() == State::Queued {
                self.inner.runq.remove(&cell);
            }
            if !matches!(cell.state.get(), State::Running | State::Woken) {
                self.inner.finish(&cell, None);
            }
        }
    }

    /// Pauses a component from outside (Axon's `pauseThread`): it is not polled until something
    /// wakes it. Pausing a paused, finished or unknown component does nothing.
    pub fn pause(&self, id: ComponentId) {
        if let Some(cell) = self.inner.tasks.borrow().get(&id) {
            if cell.state.get() == State::Queued {
                // Drop its queue entry, so a later wake queues it once, not twice.
                self.inner.runq.remove(cell);
            }
            if matches!(
                cell.state.get(),
                State::Queued | State::Running | State::Woken
            ) {
                cell.state.set(State::Sleeping);
            }
        }
    }

    /// Wakes a component from outside (Axon's `wakeThread`). Waking a runnable, finished or unknown
    /// component does nothing.
    pub fn wake(&self, id: ComponentId) {
        let cell = self.inner.tasks.borrow().get(&id).cloned();
        if let Some(cell) = cell {
            if cell.state.get() == State::Sleeping {
                cell.wake();
            }
        }
    }

    /// Whether a component is paused. A component this scheduler does not know (never activated
    /// here, or finished) counts as paused, as in Axon's `isThreadPaused`.
    pub fn is_paused(&self, id: ComponentId) -> bool {
        self.inner
            .tasks
            .borrow()
            .get(&id)
            .is_none_or(|c| c.state.get() == State::Sleeping)
    }

    /// Every activated, unfinished component, paused or not (Axon's `listAllThreads`).
    pub fn components(&self) -> Vec<ComponentId> {
        let mut ids: Vec<_> = self.inner.tasks.borrow().keys().copied().collect();
        ids.sort();
        ids
    }

    /// How many activated components have not finished.
    pub fn len(&self) -> usize {
        self.inner.tasks.borrow().len()
    }

    /// Whether every activated component has finished.
    pub fn is_empty(&self) -> bool {
        self.inner.tasks.borrow().is_empty()
    }

    /// The components that panicked, oldest first.
    pub fn failures(&self) -> Vec<Failure> {
        self.inner.failures.borrow().clone()
    }

    /// Registers `component`'s inbox `inbox` as the service `name` (Axon's
    /// `CoordinatingAssistantTracker.registerService`). Services are per scheduler.
    ///
    /// # Errors
    ///
    /// [`Error::ServiceAlreadyExists`] if the name is taken; [`Error::NoSuchBox`] if the component
    /// has no such box (Axon's `BadInbox`).
    pub fn register_service(&self, name: &str, component: &Core, inbox: &str) -> Result<(), Error> {
        if !component.inboxes().iter().any(|(n, _)| n == inbox) {
            return Err(Error::NoSuchBox {
                component: component.name(),
                name: inbox.to_owned(),
            });
        }
        let mut s = self.inner.services.borrow_mut();
        if s.services.contains_key(name) {
            return Err(Error::ServiceAlreadyExists(name.to_owned()));
        }
        s.services
            .insert(name.to_owned(), (component.clone(), inbox.to_owned()));
        Ok(())
    }

    /// Whether a service is registered as `name`: [`Scheduler::service`] without copying the
    /// inbox's name out.
    ///
    /// # Examples
    ///
    /// ```
    /// let sched = axon::Scheduler::new();
    /// let core = axon::Core::new("Registry");
    /// let _inbox: axon::Inbox<u8> = core.inbox("inbox", "");
    /// assert!(!sched.has_service("registry"));
    /// sched.register_service("registry", &core, "inbox")?;
    /// assert!(sched.has_service("registry"));
    /// # Ok::<(), axon::Error>(())
    /// ```
    pub fn has_service(&self, name: &str) -> bool {
        self.inner.services.borrow().services.contains_key(name)
    }

    /// The component and inbox registered as `name` (Axon's `retrieveService`).
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchService`] if nothing is registered under that name.
    pub fn service(&self, name: &str) -> Result<(Core, String), Error> {
        self.inner
            .services
            .borrow()
            .services
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NoSuchService(name.to_owned()))
    }

    /// The typed inbox registered as `name`.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchService`], or [`Error::WrongBoxType`] if the inbox carries another type.
    pub fn service_inbox<T: 'static>(&self, name: &str) -> Result<Inbox<T>, Error> {
        let (core, inbox) = self.service(name)?;
        core.inbox_named(&inbox)
    }

    /// Removes the service `name` (Axon's `deRegisterService`).
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchService`] if nothing is registered under that name (Axon's
    /// `MultipleServiceDeletion`).
    pub fn deregister_service(&self, name: &str) -> Result<(), Error> {
        self.inner
            .services
            .borrow_mut()
            .services
            .remove(name)
            .map(drop)
            .ok_or_else(|| Error::NoSuchService(name.to_owned()))
    }

    /// The names of every registered service, sorted (Axon's `servicesRegistered`).
    pub fn services(&self) -> Vec<String> {
        let mut names: Vec<_> = self
            .inner
            .services
            .borrow()
            .services
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Starts tracking a named value (Axon's `trackValue`).
    ///
    /// # Errors
    ///
    /// [`Error::NamespaceClash`] if the name is already tracked.
    pub fn track_value<V: Any>(&self, name: &str, value: V) -> Result<(), Error> {
        let mut s = self.inner.services.borrow_mut();
        if s.values.contains_key(name) {
            return Err(Error::NamespaceClash(name.to_owned()));
        }
        s.values.insert(name.to_owned(), Box::new(value));
        Ok(())
    }

    /// Replaces a tracked value (Axon's `updateValue`).
    ///
    /// # Errors
    ///
    /// [`Error::UndeclaredValue`] if the name is not tracked.
    pub fn update_value<V: Any>(&self, name: &str, value: V) -> Result<(), Error> {
        let mut s = self.inner.services.borrow_mut();
        match s.values.get_mut(name) {
            Some(v) => {
                *v = Box::new(value);
                Ok(())
            }
            None => Err(Error::UndeclaredValue(name.to_owned())),
        }
    }

    /// A copy of a tracked value (Axon's `retrieveValue`).
    ///
    /// # Errors
    ///
    /// [`Error::UndeclaredValue`] if the name is not tracked, [`Error::WrongValueType`] if it holds
    /// another type.
    pub fn value<V: Any + Clone>(&self, name: &str) -> Result<V, Error> {
        let s = self.inner.services.borrow();
        let v = s
            .values
            .get(name)
            .ok_or_else(|| Error::UndeclaredValue(name.to_owned()))?;
        v.downcast_ref::<V>()
            .cloned()
            .ok_or_else(|| Error::WrongValueType {
                name: name.to_owned(),
                requested: std::any::type_name::<V>(),
            })
    }

    /// The names of every tracked value, sorted (Axon's `informationItemsLogged`).
    pub fn values(&self) -> Vec<String> {
        let mut names: Vec<_> = self
            .inner
            .services
            .borrow()
            .values
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("components", &self.inner.tasks.borrow().len())
            .field("runnable", &self.inner.runq.len())
            .field("timers", &self.inner.timers.borrow().len())
            .finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Break the cycles component -> future -> boxes -> component of components that never
        // finished, so dropping a scheduler frees them.
        for cell in self.tasks.get_mut().values() {
            cell.state.set(State::Finished);
            let fut = cell.future.borrow_mut().take();
            let _ = catch_unwind(AssertUnwindSafe(move || drop(fut)));
        }
    }
}

/// Activates a component on the scheduler running on this thread (from inside another component).
///
/// # Errors
///
/// [`Error::NoScheduler`] if no scheduler is running on this thread.
pub fn spawn<C: Component>(component: C) -> Result<Core, Error> {
    Scheduler::current()
        .map(|s| s.activate(component))
        .ok_or(Error::NoScheduler)
}

/// Activates a type-erased component on the scheduler running on this thread.
///
/// # Errors
///
/// [`Error::NoScheduler`] if no scheduler is running on this thread.
pub fn spawn_boxed(component: Box<dyn AnyComponent>) -> Result<Core, Error> {
    Scheduler::current()
        .map(|s| s.activate_boxed(component))
        .ok_or(Error::NoScheduler)
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
