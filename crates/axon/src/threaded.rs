//! Threaded components: blocking code on an OS thread, wired into the graph like any other
//! component (Axon's `ThreadedComponent.py`).
//!
//! A [`ThreadedComponent`] runs its body on a thread of its own and talks to the rest of the graph
//! through four bounded queues, one per default box. A small scheduler-side shim (Axon's
//! `_localmain`) moves messages between the real boxes and those queues, so the component looks
//! like any other: linked, woken and ended through its [`Core`]. The thread sees the queues through
//! a [`ThreadContext`].
//!
//! Nobody spins: the shim sleeps until a delivery, a collection downstream or a wake from the
//! thread; the thread blocks on a condition variable until the shim gives it messages or room.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use crate::boxes::{Inbox, Outbox};
use crate::component::{Boxes, Component, ComponentId, Core, Msg};
use crate::error::NoSpaceInBox;
use crate::ipc::{ErrorInformation, Ipc};

/// What runs on the thread.
type Body<I, O> = Box<dyn FnOnce(ThreadContext<I, O>) + Send>;

/// A component whose body runs on its own OS thread (Kamaelia's `threadedcomponent`).
///
/// Use it for work that blocks (a file, a terminal, a library without non-blocking calls) or that
/// computes for long: the scheduler's other components keep running meanwhile. The body is a
/// closure given a [`ThreadContext`], through which it receives what arrives on `inbox` and
/// `control` and sends to `outbox` and `signal`. Messages cross threads, so both message types
/// must be `Send`.
///
/// # Inboxes
///
/// * `inbox` — data for the thread, read with [`ThreadContext::recv`] (or [`ThreadContext::next`]).
/// * `control` — system messages for the thread, read with [`ThreadContext::recv_control`].
///
/// # Outboxes
///
/// * `outbox` — what the thread sends with [`ThreadContext::send`].
/// * `signal` — what the thread sends with [`ThreadContext::send_signal`]; an
///   [`Ipc::ErrorInformation`] if the thread panics.
///
/// # How it works
///
/// [`ThreadedComponent::main`](Component::main) is Axon's `_localmain` shim. It starts the thread
/// (named after the component, e.g. `Reader_12`), then, each time it is woken:
///
/// 1. moves messages from `inbox` into the thread's in-queue, then from `control` into its own,
///    each while its queue has room; what does not fit waits in the box (and the box's size limit
///    then pushes back on the sender, so at most *box size + queue length* messages are in flight);
/// 2. moves messages from the thread's out-queues to `outbox` and `signal` while the destination
///    has room, in order: a message refused with [`NoSpaceInBox`] waits at the head of its queue
///    until a collection downstream wakes the shim;
/// 3. ends once the thread has finished and both out-queues are empty, or sleeps.
///
/// The thread wakes the shim (through the scheduler's remote-wake path) whenever it sends, and
/// whenever it takes a message from a full in-queue. Every queue holds at most
/// [`queue_len`](ThreadedComponent::queue_len) messages ([`DEFAULT_QUEUE_LEN`] unless given, as
/// Axon's `queuelengths`); a thread that outruns its consumers blocks in
/// [`send`](ThreadContext::send) or gets [`NoSpaceInBox`] from [`try_send`](ThreadContext::try_send).
///
/// Unlike Kamaelia, the thread cannot link, unlink or add boxes: [`Core`] and the boxes are `!Send`,
/// so wire the component before activating it, or from a component on the scheduler. A capture of
/// a `Core` in the body does not compile:
///
/// ```compile_fail
/// use axon::{Core, ThreadedComponent};
///
/// let elsewhere = Core::new("Elsewhere");
/// let t = ThreadedComponent::<(), ()>::new("Linker", move |_ctx| {
///     let _ = elsewhere.name(); // Core is !Send: it cannot go to the thread
/// });
/// # drop(t);
/// ```
///
/// # Shutdown
///
/// Ends when the body returns and everything it sent has been delivered; it sends nothing of its
/// own on the way out, so a body that should pass shutdown on sends it with
/// [`send_signal`](ThreadContext::send_signal). Messages still in the in-queues are dropped, and
/// messages not yet moved stay in the boxes.
///
/// If the body panics, the panic is caught on the thread: once the out-queues are flushed the
/// component sends an [`Ipc::ErrorInformation`] (with its id as `caller` and the panic message) on
/// `signal` and ends; the scheduler and every other component carry on. (Kamaelia re-raised the
/// exception in the scheduler, ending the whole program.)
///
/// If the component is stopped from outside ([`Scheduler::stop`](crate::Scheduler::stop)) or its
/// scheduler is dropped, the in-queues are emptied, the thread's receives return `None`,
/// [`ThreadContext::is_stopped`] turns true and its sends are dropped. The thread itself cannot be
/// killed: its body should notice and return.
///
/// # Examples
///
/// ```
/// use axon::{Inbox, Ipc, Msg, Scheduler, ThreadedComponent};
///
/// // Adds up numbers on a thread (standing in for blocking work); reports the total and passes
/// // shutdown on when its producer finishes.
/// let summer = ThreadedComponent::<u64, u64>::new("Summer", |ctx| {
///     let mut total = 0;
///     while let Some(Msg::Data(n)) = ctx.next() {
///         total += n;
///     }
///     ctx.send(total);
///     ctx.send_signal(Ipc::producer_finished());
/// });
///
/// let results: Inbox<u64> = axon::Core::new("Sink").inbox("inbox", "totals");
/// summer.boxes().outbox.link_to(&results)?;
/// for n in 1..=10 {
///     summer.boxes().inbox.deliver(n).unwrap();
/// }
/// summer.boxes().control.deliver(Ipc::producer_finished()).unwrap();
///
/// let sched = Scheduler::new();
/// sched.activate(summer);
/// sched.run(); // returns once the thread has finished and its total is delivered
/// assert_eq!(results.recv_now(), Some(55));
/// # Ok::<(), axon::Error>(())
/// ```
///
/// [`DEFAULT_QUEUE_LEN`]: ThreadedComponent::DEFAULT_QUEUE_LEN
pub struct ThreadedComponent<I: 'static, O: 'static> {
    boxes: Boxes<I, O>,
    queue_len: usize,
    body: Body<I, O>,
}

impl<I: Send + 'static, O: Send + 'static> ThreadedComponent<I, O> {
    /// The length of each queue between the shim and the thread unless given (Axon's
    /// `queuelengths=1000`).
    pub const DEFAULT_QUEUE_LEN: usize = 1000;

    /// Creates a threaded component of kind `kind` (used in its name and its thread's name) whose
    /// thread runs `body`, with queues of [`DEFAULT_QUEUE_LEN`](Self::DEFAULT_QUEUE_LEN).
    ///
    /// The thread starts when the component is first polled after activation, not here.
    pub fn new<F>(kind: &'static str, body: F) -> Self
    where
        F: FnOnce(ThreadContext<I, O>) + Send + 'static,
    {
        Self::with_queue_len(kind, Self::DEFAULT_QUEUE_LEN, body)
    }

    /// As [`ThreadedComponent::new`], with queues of `queue_len` messages each (Axon's
    /// `threadedcomponent(queuelengths)`). A length of 0 is taken as 1.
    pub fn with_queue_len<F>(kind: &'static str, queue_len: usize, body: F) -> Self
    where
        F: FnOnce(ThreadContext<I, O>) + Send + 'static,
    {
        Self {
            boxes: Boxes::new(kind),
            queue_len: queue_len.max(1),
            body: Box::new(body),
        }
    }

    /// The component's boxes, for wiring before activation.
    pub fn boxes(&self) -> &Boxes<I, O> {
        &self.boxes
    }

    /// The component's core.
    pub fn core(&self) -> &Core {
        &self.boxes.core
    }

    /// How many messages each queue between the shim and the thread holds.
    pub fn queue_len(&self) -> usize {
        self.queue_len
    }
}

impl<I, O> fmt::Debug for ThreadedComponent<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadedComponent")
            .field("core", &self.boxes.core)
            .field("queue_len", &self.queue_len)
            .finish_non_exhaustive()
    }
}

impl<I: Send + 'static, O: Send + 'static> Component for ThreadedComponent<I, O> {
    fn core(&self) -> &Core {
        &self.boxes.core
    }

    /// Axon's `_localmain`: starts the thread, then shuttles messages until the thread has finished
    /// and its out-queues are flushed (see [How it works](ThreadedComponent#how-it-works)).
    async fn main(self) {
        let Self {
            boxes,
            queue_len,
            body,
        } = self;
        let waker = poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues {
                inbox: VecDeque::new(),
                control: VecDeque::new(),
                outbox: VecDeque::new(),
                signal: VecDeque::new(),
                wake_pending: false,
                thread_done: None,
                inbox_backlog: false,
                shim_gone: false,
            }),
            changed: Condvar::new(),
            waker,
            cap: queue_len,
        });
        // Marks the shim gone however it ends: returning, or dropped by a stop.
        let _gone = ShimGone(shared.clone());
        let id = boxes.core.id();
        let name = boxes.core.name();
        let ctx = ThreadContext {
            shared: shared.clone(),
            id,
        };
        let spawned = thread::Builder::new()
            .name(name.clone())
            .spawn(move || run_thread(body, ctx));
        if let Err(e) = spawned {
            shared.lock().thread_done = Some(Err(format!("could not start its thread: {e}")));
        }

        let mut finished = false;
        // The ErrorInformation still to send, once everything before it has gone out.
        let mut last_word: Option<Ipc> = None;
        loop {
            let step = shared.step(&boxes, !finished);
            if step.notify {
                shared.changed.notify_all();
            }
            if let Some(outcome) = step.done {
                finished = true;
                last_word = outcome.err().map(|failure| {
                    Ipc::ErrorInformation(ErrorInformation {
                        caller: Some(id),
                        message: format!("component {name} {failure}"),
                    })
                });
            }
            if finished && step.flushed {
                match last_word.take() {
                    None => return,
                    Some(msg) => match boxes.signal.send(msg) {
                        Ok(()) => return,
                        Err(full) => last_word = Some(full.message),
                    },
                }
            }
            // A collection downstream matters only while something waits for room.
            sleep(&boxes.core, !step.flushed || last_word.is_some()).await;
        }
    }
}

/// The thread's side of a [`ThreadedComponent`]: its four boxes, seen as bounded queues (the
/// methods Axon's `threadedcomponent` gives `main` when it runs in a thread).
///
/// Receives take from the in-queues the shim fills from `inbox` and `control`; sends put into the
/// out-queues the shim empties into `outbox` and `signal`. Blocking calls block only this thread.
///
/// Once the component has stopped ([`is_stopped`](Self::is_stopped)), receives return `None` and
/// sends drop their message, as a send on an unlinked outbox does.
///
/// # Examples
///
/// ```
/// use axon::ipc::ProducerFinished;
/// use axon::{Inbox, Ipc, Msg, Scheduler, ThreadedComponent};
///
/// // Measures strings until its producer finishes, then says it has finished too.
/// let measure = ThreadedComponent::<String, usize>::new("Measure", |ctx| {
///     while let Some(Msg::Data(s)) = ctx.next() {
///         ctx.send(s.len()); // blocks while the out-queue is full
///     }
///     ctx.send_signal(Ipc::ProducerFinished(ProducerFinished {
///         caller: Some(ctx.id()),
///         message: None,
///     }));
/// });
/// let id = measure.core().id();
/// let lengths: Inbox<usize> = axon::Core::new("Sink").inbox("inbox", "lengths");
/// let signals: Inbox<Ipc> = axon::Core::new("Sink").inbox("inbox", "signals");
/// measure.boxes().outbox.link_to(&lengths)?;
/// measure.boxes().signal.link_to(&signals)?;
/// measure.boxes().inbox.deliver("kamaelia".to_owned()).unwrap();
/// measure.boxes().control.deliver(Ipc::producer_finished()).unwrap();
///
/// let sched = Scheduler::new();
/// sched.activate(measure);
/// sched.run();
/// assert_eq!(lengths.recv_now(), Some(8));
/// assert_eq!(signals.recv_now().and_then(|s| s.caller()), Some(id));
/// # Ok::<(), axon::Error>(())
/// ```
pub struct ThreadContext<I, O> {
    shared: Arc<Shared<I, O>>,
    id: ComponentId,
}

impl<I, O> ThreadContext<I, O> {
    /// The id of the component this thread belongs to (for `caller` fields).
    pub fn id(&self) -> ComponentId {
        self.id
    }

    /// How many messages each queue holds.
    pub fn queue_len(&self) -> usize {
        self.shared.cap
    }

    /// Whether the component has stopped: stopped from outside, or its scheduler dropped. The body
    /// should then return.
    pub fn is_stopped(&self) -> bool {
        self.shared.lock().shim_gone
    }

    /// Whether a message from `inbox` is waiting (Axon's `dataReady("inbox")`).
    pub fn data_ready(&self) -> bool {
        !self.shared.lock().inbox.is_empty()
    }

    /// Whether a message from `control` is waiting (Axon's `dataReady("control")`).
    pub fn control_ready(&self) -> bool {
        !self.shared.lock().control.is_empty()
    }

    /// Takes the next message from `inbox`, blocking until one arrives (Axon's `recv` after a
    /// `pause()`). Returns `None` once the component has stopped.
    ///
    /// Blocks even if `control` has messages: use [`next`](Self::next) to wait for either.
    pub fn recv(&self) -> Option<I> {
        self.take(Block::Forever, |q, cap| pop(&mut q.inbox, cap))
    }

    /// Takes the next message from `inbox` if one is waiting (Axon's `recv("inbox")`).
    pub fn try_recv(&self) -> Option<I> {
        self.take(Block::No, |q, cap| pop(&mut q.inbox, cap))
    }

    /// Takes the next message from `inbox`, waiting at most `timeout` for one (Axon's
    /// `pause(timeout)` followed by `recv`). Returns `None` on timeout or once the component has
    /// stopped.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<I> {
        let block = Instant::now()
            .checked_add(timeout)
            .map_or(Block::Forever, Block::Until);
        self.take(block, |q, cap| pop(&mut q.inbox, cap))
    }

    /// Takes the next message from `control`, blocking until one arrives. Returns `None` once the
    /// component has stopped.
    pub fn recv_control(&self) -> Option<Ipc> {
        self.take(Block::Forever, |q, cap| pop(&mut q.control, cap))
    }

    /// Takes the next message from `control` if one is waiting (Axon's `recv("control")`).
    pub fn try_recv_control(&self) -> Option<Ipc> {
        self.take(Block::No, |q, cap| pop(&mut q.control, cap))
    }

    /// Waits for the next message: data from `inbox` first, then a message from `control`, as
    /// [`Boxes::next`] does for a scheduler-side component. Returns `None` once the component has
    /// stopped.
    ///
    /// A control message is returned only while no data waits, neither in the in-queue nor left in
    /// `inbox` because the in-queue was full, so data delivered before a `producerFinished` is seen
    /// before it.
    pub fn next(&self) -> Option<Msg<I>> {
        self.take(Block::Forever, |q, cap| {
            if let Some((m, freed)) = pop(&mut q.inbox, cap) {
                return Some((Msg::Data(m), freed));
            }
            if q.inbox_backlog {
                return None; // the shim moves it in shortly: taking from the full queue woke it
            }
            pop(&mut q.control, cap).map(|(c, freed)| (Msg::Control(c), freed))
        })
    }

    /// Sends a message on `outbox`, blocking while the out-queue is full (the thread's form of
    /// [`Outbox::send_wait`]). Dropped if the component has stopped.
    pub fn send(&self, msg: O) {
        // With blocking there is no refusal to hand back.
        let _ = self.put(msg, true, |q| &mut q.outbox);
    }

    /// Sends a message on `outbox` without blocking (Axon's thread-side `send`).
    ///
    /// # Errors
    ///
    /// [`NoSpaceInBox`], with the message handed back, if the out-queue is full (Axon's
    /// `noSpaceInBox` reaching the thread): the shim could not move messages on because the
    /// destination is full, or has not had the chance yet. `len` and `size` are the queue's.
    pub fn try_send(&self, msg: O) -> Result<(), NoSpaceInBox<O>> {
        self.put(msg, false, |q| &mut q.outbox)
    }

    /// Sends a system message on `signal`, blocking while the signal out-queue is full. Dropped if
    /// the component has stopped.
    pub fn send_signal(&self, msg: Ipc) {
        let _ = self.put(msg, true, |q| &mut q.signal);
    }

    /// Takes a message picked by `pick` (which also says whether it freed room in a full queue),
    /// waiting as `block` says; wakes the shim if room was freed.
    fn take<R>(
        &self,
        block: Block,
        mut pick: impl FnMut(&mut Queues<I, O>, usize) -> Option<(R, bool)>,
    ) -> Option<R> {
        let shared = &*self.shared;
        let mut q = shared.lock();
        loop {
            if q.shim_gone {
                return None;
            }
            if let Some((msg, freed)) = pick(&mut q, shared.cap) {
                let wake = freed && q.poke();
                drop(q);
                if wake {
                    shared.waker.wake_by_ref();
                }
                return Some(msg);
            }
            q = match block {
                Block::No => return None,
                Block::Forever => shared
                    .changed
                    .wait(q)
                    .unwrap_or_else(PoisonError::into_inner),
                Block::Until(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    shared
                        .changed
                        .wait_timeout(q, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// Puts `msg` on the out-queue `queue`, waiting for room if `block`, and wakes the shim.
    fn put<T>(
        &self,
        msg: T,
        block: bool,
        queue: fn(&mut Queues<I, O>) -> &mut VecDeque<T>,
    ) -> Result<(), NoSpaceInBox<T>> {
        let shared = &*self.shared;
        let mut q = shared.lock();
        loop {
            if q.shim_gone {
                return Ok(()); // nowhere to go, as on an unlinked outbox
            }
            let len = queue(&mut q).len();
            if len < shared.cap {
                queue(&mut q).push_back(msg);
                let wake = q.poke();
                drop(q);
                if wake {
                    shared.waker.wake_by_ref();
                }
                return Ok(());
            }
            if !block {
                return Err(NoSpaceInBox {
                    message: msg,
                    len,
                    size: shared.cap,
                });
            }
            q = shared
                .changed
                .wait(q)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl<I, O> fmt::Debug for ThreadContext<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadContext")
            .field("id", &self.id)
            .field("queue_len", &self.shared.cap)
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

/// How long a receive waits.
#[derive(Clone, Copy)]
enum Block {
    No,
    Forever,
    Until(Instant),
}

/// What the shim and its thread share.
struct Shared<I, O> {
    queues: Mutex<Queues<I, O>>,
    /// Signalled for the thread: messages moved in, room made in an out-queue, or the shim gone.
    changed: Condvar,
    /// The shim's waker: how the thread makes the scheduler poll the shim.
    waker: Waker,
    /// Each queue's length limit.
    cap: usize,
}

/// The four queues and the little state around them, all under one lock.
struct Queues<I, O> {
    inbox: VecDeque<I>,
    control: VecDeque<Ipc>,
    outbox: VecDeque<O>,
    signal: VecDeque<Ipc>,
    /// The thread has woken the shim and the shim has not looked at the queues since: further
    /// wakes are redundant.
    wake_pending: bool,
    /// Set when the body has returned (`Ok`), or panicked or could not start (`Err`, saying what
    /// happened, as in "panicked in its thread: …").
    thread_done: Option<Result<(), String>>,
    /// At the shim's last step, `inbox` still held messages that did not fit in the in-queue.
    inbox_backlog: bool,
    /// The shim has ended or been dropped.
    shim_gone: bool,
}

impl<I, O> Queues<I, O> {
    /// Records that the shim must look at the queues again; true if the caller must wake it (no
    /// wake is outstanding).
    fn poke(&mut self) -> bool {
        !std::mem::replace(&mut self.wake_pending, true)
    }
}

/// What one shim step found.
struct Step {
    /// The thread may be waiting for what the step moved in or the room it made.
    notify: bool,
    /// The thread's outcome, the first time the shim sees it.
    done: Option<Result<(), String>>,
    /// Both out-queues are empty.
    flushed: bool,
}

impl<I, O> Shared<I, O> {
    fn lock(&self) -> MutexGuard<'_, Queues<I, O>> {
        // Nothing panics while holding the lock; tolerate poison anyway rather than panic here.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One shim step: boxes into in-queues (`control` last), out-queues into boxes.
    fn step(&self, boxes: &Boxes<I, O>, move_in: bool) -> Step {
        let cap = self.cap;
        let mut q = self.lock();
        q.wake_pending = false;
        let mut notify = false;
        if move_in {
            notify |= fill(&mut q.inbox, &boxes.inbox, cap);
            let backlog = boxes.inbox.data_ready();
            notify |= backlog != std::mem::replace(&mut q.inbox_backlog, backlog);
            notify |= fill(&mut q.control, &boxes.control, cap);
        }
        notify |= drain(&mut q.outbox, &boxes.outbox, cap);
        notify |= drain(&mut q.signal, &boxes.signal, cap);
        Step {
            notify,
            done: q.thread_done.take(),
            flushed: q.outbox.is_empty() && q.signal.is_empty(),
        }
    }
}

/// Moves messages from `inbox` into `queue` while it has room; true if it moved any.
fn fill<T>(queue: &mut VecDeque<T>, inbox: &Inbox<T>, cap: usize) -> bool {
    let before = queue.len();
    while queue.len() < cap {
        match inbox.recv_now() {
            Some(m) => queue.push_back(m),
            None => break,
        }
    }
    queue.len() > before
}

/// Moves messages from `queue` to `outbox`, in order, while the destination has room; true if it
/// made room in a full queue.
fn drain<T>(queue: &mut VecDeque<T>, outbox: &Outbox<T>, cap: usize) -> bool {
    let was_full = queue.len() >= cap;
    while outbox.has_room() {
        let Some(m) = queue.pop_front() else { break };
        if let Err(full) = outbox.send(m) {
            queue.push_front(full.message);
            break;
        }
    }
    was_full && queue.len() < cap
}

/// Takes the head of an in-queue, saying whether the queue was full (so the shim may have messages
/// waiting to move in).
fn pop<T>(queue: &mut VecDeque<T>, cap: usize) -> Option<(T, bool)> {
    let was_full = queue.len() >= cap;
    queue.pop_front().map(|m| (m, was_full))
}

/// Sleeps until the next wake; a collection downstream wakes it only if `wants_collection`. It
/// must never return at once because an inbox holds data (the shim leaves messages in its inboxes
/// while the in-queues are full, and would spin), so it does not look at the inboxes at all.
async fn sleep(core: &Core, wants_collection: bool) {
    let mut slept = false;
    poll_fn(|_| {
        if slept {
            return Poll::Ready(());
        }
        slept = true;
        if wants_collection {
            core.cell.want_collection();
        }
        Poll::Pending
    })
    .await;
}

/// Marks the shim gone when dropped, empties the in-queues and wakes the thread.
struct ShimGone<I, O>(Arc<Shared<I, O>>);

impl<I, O> Drop for ShimGone<I, O> {
    fn drop(&mut self) {
        let dropped = {
            let mut q = self.0.lock();
            q.shim_gone = true;
            (
                std::mem::take(&mut q.inbox),
                std::mem::take(&mut q.control),
                std::mem::take(&mut q.outbox),
                std::mem::take(&mut q.signal),
            )
        };
        self.0.changed.notify_all();
        drop(dropped); // outside the lock
    }
}

/// Records the thread's outcome and wakes the shim when dropped, so the shim learns of the end
/// however the thread goes.
struct ThreadDone<I, O> {
    shared: Arc<Shared<I, O>>,
    outcome: Result<(), String>,
}

impl<I, O> Drop for ThreadDone<I, O> {
    fn drop(&mut self) {
        let outcome = std::mem::replace(&mut self.outcome, Ok(()));
        let wake = {
            let mut q = self.shared.lock();
            q.thread_done = Some(outcome);
            q.poke()
        };
        if wake {
            self.shared.waker.wake_by_ref();
        }
    }
}

/// The thread's main: runs the body, catching a panic.
fn run_thread<I, O>(body: Body<I, O>, ctx: ThreadContext<I, O>) {
    let mut done = ThreadDone {
        shared: ctx.shared.clone(),
        outcome: Err("ended its thread abnormally".to_owned()),
    };
    // The body owns the context, so everything it sent is queued before `done` reports.
    done.outcome = match catch_unwind(AssertUnwindSafe(move || body(ctx))) {
        Ok(()) => Ok(()),
        Err(payload) => Err(format!(
            "panicked in its thread: {}",
            panic_message(payload.as_ref())
        )),
    };
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
