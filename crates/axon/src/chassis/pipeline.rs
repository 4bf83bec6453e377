//! [`Pipeline`]: children wired in a line (Kamaelia's `Kamaelia.Chassis.Pipeline`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::boxes::{Direction, ErasedBox};
use crate::component::{AnyComponent, Component, Core};
use crate::error::Error;
use crate::scheduler::Scheduler;

/// Runs its children as a line: each child's `outbox` feeds the next child's `inbox`, and each
/// child's `signal` feeds the next child's `control`.
///
/// `Pipeline(a, b, c)` in Kamaelia; here [`Pipeline::new`] or the [`pipeline!`](crate::pipeline)
/// macro. The links are made, and their types checked, when the pipeline is built; the children are
/// activated only when the pipeline itself is.
///
/// # Inboxes
///
/// * `inbox` — forwarded to the first child's `inbox` (same message type).
/// * `control` — forwarded to the first child's `control`.
///
/// # Outboxes
///
/// * `outbox` — the last child's `outbox`, passed through.
/// * `signal` — the last child's `signal`, passed through.
///
/// # How it works
///
/// The pipeline never looks at its own traffic and emits nothing of its own: shutdown cascades down
/// the line through `signal`→`control`, each child forwarding it as it ends. With
/// [`Pipeline::circular`], the last child's `outbox` and `signal` feed the first child's `inbox`
/// and `control` instead of leaving the pipeline.
///
/// # Shutdown
///
/// Ends when every child has ended, removing each child as it stops.
///
/// # Examples
///
/// ```
/// use axon::{pipeline, Component, FnComponent, Inbox, Ipc, Msg, Scheduler};
///
/// /// Adds `k` to every number; passes its control message on and stops.
/// fn add(k: u64) -> impl Component {
///     FnComponent::<u64, u64, _>::new("Add", move |b| async move {
///         loop {
///             match b.next().await {
///                 Msg::Data(n) => { let _ = b.outbox.send(n + k); }
///                 Msg::Control(c) => { let _ = b.signal.send(c); return; }
///             }
///         }
///     })
/// }
///
/// let p = pipeline![add(1), add(10), add(100)]?;
/// let results: Inbox<u64> = axon::Core::new("Sink").inbox("inbox", "results");
/// p.core().outbox_named::<u64>("outbox")?.link_to(&results)?;
/// p.core().inbox_named::<u64>("inbox")?.deliver(0).unwrap();
/// p.core().inbox_named::<Ipc>("control")?.deliver(Ipc::producer_finished()).unwrap();
///
/// let sched = Scheduler::new();
/// sched.activate(p);
/// sched.run();
/// assert_eq!(results.recv_now(), Some(111));
/// # Ok::<(), axon::Error>(())
/// ```
pub struct Pipeline {
    core: Core,
    children: Vec<Box<dyn AnyComponent>>,
}

impl Pipeline {
    /// Builds a pipeline of `children`, in order.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGraph`] for no children; [`Error::NoSuchBox`] if a child lacks `inbox`,
    /// `outbox`, `control` or `signal` where the line needs it; [`Error::TypeMismatch`] naming both
    /// ends if neighbours' boxes carry different types.
    pub fn new(children: Vec<Box<dyn AnyComponent>>) -> Result<Self, Error> {
        Self::build(children, false)
    }

    /// Builds a circular pipeline: as [`Pipeline::new`], but the last child's `outbox` and `signal`
    /// feed the first child's `inbox` and `control`, and the pipeline has no outboxes.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::new`].
    pub fn circular(children: Vec<Box<dyn AnyComponent>>) -> Result<Self, Error> {
        Self::build(children, true)
    }

    fn build(children: Vec<Box<dyn AnyComponent>>, circular: bool) -> Result<Self, Error> {
        let core = Core::new("Pipeline");
        let (Some(first), Some(last)) = (children.first(), children.last()) else {
            return Err(Error::InvalidGraph(
                "a pipeline needs at least one child".into(),
            ));
        };
        let (first, last) = (
            first.component_core().clone(),
            last.component_core().clone(),
        );
        for pair in children.windows(2) {
            let (a, b) = (pair[0].component_core(), pair[1].component_core());
            core.link_named((a, "outbox"), (b, "inbox"))?;
            core.link_named((a, "signal"), (b, "control"))?;
        }
        let passthrough_in = |name: &'static str, desc| -> Result<(), Error> {
            let child: Rc<dyn ErasedBox> = first.erased_box(name)?;
            let own = core.add_box_like(&child, name, desc, Direction::In);
            core.link_named((&core, own.name()), (&first, name))
                .map(drop)
        };
        passthrough_in("inbox", "forwarded to the first child's inbox")?;
        passthrough_in("control", "forwarded to the first child's control")?;
        if circular {
            core.link_named((&last, "outbox"), (&first, "inbox"))?;
            core.link_named((&last, "signal"), (&first, "control"))?;
        } else {
            for (name, desc) in [
                ("outbox", "the last child's outbox"),
                ("signal", "the last child's signal"),
            ] {
                let child = last.erased_box(name)?;
                let own = core.add_box_like(&child, name, desc, Direction::Out);
                core.link_named((&last, name), (&core, own.name()))?;
            }
        }
        Ok(Self { core, children })
    }

    /// The pipeline's core: use it to reach its boxes by name and type, e.g.
    /// `core().inbox_named::<T>("inbox")`.
    pub fn core(&self) -> &Core {
        &self.core
    }
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("core", &self.core)
            .field("children", &self.children)
            .finish()
    }
}

impl Component for Pipeline {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn main(self) {
        let Self { core, children } = self;
        let Some(sched) = Scheduler::current() else {
            return;
        };
        let cores: Vec<Core> = children
            .iter()
            .map(|c| c.component_core().clone())
            .collect();
        core.add_children(&cores);
        for child in children {
            sched.activate_boxed(child);
        }
        wait_for_children(&core).await;
    }
}

/// Waits until every child of `core` has ended, removing each as it stops.
pub(crate) async fn wait_for_children(core: &Core) {
    while !reap_children(core) {
        sleep_until_woken().await;
    }
}

/// Removes the children of `core` that have ended; returns whether none is left.
pub(crate) fn reap_children(core: &Core) -> bool {
    for child in core.children() {
        if child.is_finished() {
            core.remove_child(&child);
        }
    }
    core.children().is_empty()
}

/// Sleeps until the component is next woken (a child ending, a delivery), even if one of its inboxes
/// holds data.
///
/// [`Core::pause`] returns at once while an inbox holds data, but a chassis never reads its
/// passthrough inboxes: once the child one forwarded to has ended, a message sent to it stays there
/// for good, and a loop on `pause` would spin without ever yielding to the scheduler.
pub(crate) fn sleep_until_woken() -> SleepUntilWoken {
    SleepUntilWoken { slept: false }
}

/// The future returned by [`sleep_until_woken`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub(crate) struct SleepUntilWoken {
    slept: bool,
}

impl Future for SleepUntilWoken {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.slept {
            return Poll::Ready(());
        }
        self.slept = true;
        Poll::Pending
    }
}

/// Builds a [`Pipeline`] from components of any types: `pipeline![a, b, c]` is
/// `Pipeline::new(vec![Box::new(a), Box::new(b), Box::new(c)])`.
#[macro_export]
macro_rules! pipeline {
    ($($c:expr),+ $(,)?) => {
        $crate::Pipeline::new(vec![$(::std::boxed::Box::new($c) as ::std::boxed::Box<dyn $crate::AnyComponent>),+])
    };
}
