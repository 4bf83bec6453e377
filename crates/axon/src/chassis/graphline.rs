//! [`Graphline`]: named children wired by a table of linkages (Kamaelia's
//! `Kamaelia.Chassis.Graphline`).

use std::fmt;
use std::rc::Rc;

use super::pipeline::{reap_children, sleep_until_woken};
use crate::boxes::{Direction, ErasedBox, Inbox, Outbox};
use crate::component::{AnyComponent, Component, Core};
use crate::error::Error;
use crate::ipc::{Ipc, ProducerFinished};
use crate::scheduler::Scheduler;

/// One end of a linkage in a [`Graphline`] table: `(component name, box name)`. A component name
/// that is not one of the graphline's children means the graphline itself.
type End<'a> = (&'a str, &'a str);

/// Runs named children wired by an explicit table of linkages, as one component.
///
/// `Graphline(A=a, B=b, linkages={("A","outbox"): ("B","inbox"), ...})` in Kamaelia; here
/// [`Graphline::new`] with a list of `(name, component)` pairs and a list of
/// `((from, box), (to, box))` linkages. The links are made, and their types checked, when the
/// graphline is built, so a bad table is an [`Error`], never a panic; the children are activated
/// only when the graphline itself is.
///
/// A name in a linkage that is not one of the children means the graphline: `("self", "inbox")` as
/// a source forwards the graphline's `inbox` to a child's inbox, and `("self", "outbox")` as a sink
/// passes a child's outbox out through the graphline's `outbox`. Any name may be used (`"self"`,
/// `""`, …); the box is created on the graphline, carrying the same message type as the child's box
/// it is linked to.
///
/// # Inboxes
///
/// * `control` — [`Ipc`]: copied to every child that has no linkage into its `control` (see
///   *How it works*). If a linkage starts at the graphline's `control`, it is instead a passthrough
///   like any other, carrying the type of the child's box it feeds.
/// * every other box named as a linkage source on the graphline — forwarded to the child's inbox
///   (same message type).
///
/// # Outboxes
///
/// * `signal` — [`Ipc`]: the graphline's own `producerFinished` or `shutdownMicroprocess` when it
///   ends (see *Shutdown*). If a linkage ends at the graphline's `signal`, it is instead a
///   passthrough like any other and the graphline sends nothing of its own.
/// * every other box named as a linkage sink on the graphline — the child's outbox, passed
///   through.
///
/// Unlike Kamaelia's, a graphline has an `inbox` or `outbox` only when a linkage names it, since
/// their message type comes from the child they are linked to; and each graphline has only the
/// boxes its own table names (Kamaelia's added them to the class, so they leaked into every
/// graphline made afterwards).
///
/// # How it works
///
/// [`Graphline::new`] makes every link in the table, recording it in the graphline's postoffice:
/// child to child (outbox→inbox), graphline to child (passthrough inbox→inbox) and child to
/// graphline (passthrough outbox→outbox). When activated, the graphline makes the children its
/// own, activates them and sleeps until one ends or a control message arrives.
///
/// If no linkage starts at the graphline's `control`, every message arriving there is copied to
/// the `control` inbox (an `Inbox<Ipc>`) of each child that is still running and has no linkage
/// ending at its `control`. A `shutdownMicroprocess` (or `serverShutdown`) among them is
/// remembered, the latest winning.
///
/// # Shutdown
///
/// Ends when every child has ended, removing each child, and the links to it, as it stops. Then,
/// unless a linkage ends at the graphline's `signal`, it sends on `signal` the remembered
/// `shutdownMicroprocess` if there is one, or else a `producerFinished` whose caller is the
/// graphline. With a wired `control`, the graphline never sees control messages, so it always
/// sends `producerFinished`.
///
/// # Examples
///
/// A doubler and an adder, wired so that the graphline's `inbox` feeds the doubler, the doubler
/// feeds the adder and the adder's results leave through the graphline's `outbox`:
///
/// ```
/// use axon::{Component, FnComponent, Graphline, Inbox, Ipc, Msg, Scheduler};
///
/// /// Applies `f` to every number; stops on any control message, passing it on.
/// fn map(f: fn(u64) -> u64) -> impl Component {
///     FnComponent::<u64, u64, _>::new("Map", move |b| async move {
///         loop {
///             match b.next().await {
///                 Msg::Data(n) => { let _ = b.outbox.send(f(n)); }
///                 Msg::Control(c) => { let _ = b.signal.send(c); return; }
///             }
///         }
///     })
/// }
///
/// let g = Graphline::new(
///     vec![("double", Box::new(map(|n| n * 2))), ("add", Box::new(map(|n| n + 1)))],
///     Some(vec![
///         (("self", "inbox"), ("double", "inbox")),
///         (("double", "outbox"), ("add", "inbox")),
///         (("add", "outbox"), ("self", "outbox")),
///     ]),
/// )?;
/// let results: Inbox<u64> = axon::Core::new("Sink").inbox("inbox", "results");
/// let signal: Inbox<Ipc> = axon::Core::new("Sink").inbox("inbox", "the graphline's signal");
/// g.core().outbox_named::<u64>("outbox")?.link_to(&results)?;
/// g.core().outbox_named::<Ipc>("signal")?.link_to(&signal)?;
/// g.core().inbox_named::<u64>("inbox")?.deliver(20).unwrap();
/// // `control` is not wired, so this reaches both children, and they stop.
/// g.core().inbox_named::<Ipc>("control")?.deliver(Ipc::shutdown_microprocess()).unwrap();
///
/// let sched = Scheduler::new();
/// sched.activate(g);
/// sched.run();
/// assert_eq!(results.recv_now(), Some(41));
/// // The shutdown that stopped the children comes out of `signal` once they have all ended.
/// assert!(signal.recv_now().is_some_and(|m| m.is_shutdown_microprocess()));
/// # Ok::<(), axon::Error>(())
/// ```
pub struct Graphline {
    core: Core,
    children: Vec<Box<dyn AnyComponent>>,
    /// The graphline's own `control`, when no linkage starts there.
    control: Option<Inbox<Ipc>>,
    /// The graphline's own `signal`, when no linkage ends there.
    signal: Option<Outbox<Ipc>>,
    /// The `control` inboxes a message on the graphline's own `control` is copied to.
    dissemination: Vec<(Core, Inbox<Ipc>)>,
}

impl Graphline {
    /// Builds a graphline of the named `components`, wired by `linkages`: each
    /// `((from, outbox), (to, inbox))` links the box `outbox` of the child `from` to the box `inbox`
    /// of the child `to`, where a name that is no child's means the graphline itself.
    ///
    /// `linkages` is an `Option` to keep Kamaelia's rule that it must be given: `None` is an error,
    /// `Some(vec![])` (with or without components) is a graphline that only runs its children.
    ///
    /// # Errors
    ///
    /// Nothing is left linked after an error.
    ///
    /// * [`Error::InvalidGraph`] if `linkages` is `None` (Kamaelia's `ValueError`); if two children
    ///   have the same name; if a linkage has the graphline at both ends; if a box name is used on
    ///   the graphline both as an inbox (linkage source) and as an outbox (linkage sink); or if
    ///   `inbox`/`control` is used as a graphline outbox or `outbox`/`signal` as a graphline inbox.
    /// * [`Error::NoSuchBox`] if a child has no box of a name in the table.
    /// * [`Error::TypeMismatch`], naming both ends and both types, if the two ends of a linkage
    ///   carry different message types.
    /// * [`Error::InvalidDirection`] for a linkage from a child's inbox to a child's outbox, or
    ///   into a child's outbox from the graphline.
    /// * [`Error::BoxAlreadyLinked`] if a source appears twice (a box feeds at most one other),
    ///   and [`Error::LinkCycle`] if a chain of passthroughs would loop.
    ///
    /// # Examples
    ///
    /// ```
    /// use axon::{Error, FnComponent, Graphline};
    ///
    /// let numbers = || FnComponent::<u64, u64, _>::new("Numbers", |_b| async {});
    /// let words = || FnComponent::<String, String, _>::new("Words", |_b| async {});
    ///
    /// // No linkages at all is an error; an empty table is not.
    /// let err = Graphline::new(vec![("n", Box::new(numbers()))], None).unwrap_err();
    /// assert!(matches!(err, Error::InvalidGraph(_)));
    /// assert!(Graphline::new(vec![("n", Box::new(numbers()))], Some(vec![])).is_ok());
    ///
    /// // Linking boxes of different types names both ends and both types.
    /// let err = Graphline::new(
    ///     vec![("n", Box::new(numbers())), ("w", Box::new(words()))],
    ///     Some(vec![(("n", "outbox"), ("w", "inbox"))]),
    /// )
    /// .unwrap_err();
    /// assert!(matches!(
    ///     err,
    ///     Error::TypeMismatch { source_type: "u64", sink_type: "alloc::string::String", .. }
    /// ));
    ///
    /// // A name that is no component's means the graphline: its `inbox` is made to match.
    /// let g = Graphline::new(
    ///     vec![("w", Box::new(words()))],
    ///     Some(vec![(("self", "inbox"), ("w", "inbox"))]),
    /// )?;
    /// assert!(g.core().inbox_named::<String>("inbox").is_ok());
    /// # Ok::<(), axon::Error>(())
    /// ```
    pub fn new(
        components: Vec<(&str, Box<dyn AnyComponent>)>,
        linkages: Option<Vec<(End<'_>, End<'_>)>>,
    ) -> Result<Self, Error> {
        let Some(linkages) = linkages else {
            return Err(Error::InvalidGraph(
                "a graphline needs its linkages (give an empty list for none)".into(),
            ));
        };
        let core = Core::new("Graphline");
        match Self::wire(&core, &components, &linkages) {
            Ok(wiring) => Ok(Self {
                core,
                children: components.into_iter().map(|(_, c)| c).collect(),
                control: wiring.control,
                signal: wiring.signal,
                dissemination: wiring.dissemination,
            }),
            Err(e) => {
                core.unlink_all();
                Err(e)
            }
        }
    }

    /// Makes the links of the table and the graphline's own `control` and `signal`.
    fn wire(
        core: &Core,
        components: &[(&str, Box<dyn AnyComponent>)],
        linkages: &[(End<'_>, End<'_>)],
    ) -> Result<Wiring, Error> {
        for (i, (name, _)) in components.iter().enumerate() {
            if components[..i].iter().any(|(n, _)| n == name) {
                return Err(Error::InvalidGraph(format!(
                    "two components are named {name:?}"
                )));
            }
        }
        let child = |name: &str| {
            components
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| c.component_core())
        };

        let mut control_wired = false;
        let mut signal_wired = false;
        for &((from, from_box), (to, to_box)) in linkages {
            match (child(from), child(to)) {
                (Some(a), Some(b)) => {
                    core.link_named((a, from_box), (b, to_box))?;
                }
                (None, Some(b)) => {
                    let theirs = b.erased_box(to_box)?;
                    let ours = own_box(core, from_box, Direction::In, &theirs, || {
                        format!("forwarded to {to}'s {to_box}")
                    })?;
                    core.link_named((core, ours.name()), (b, to_box))?;
                    control_wired |= from_box == "control";
                }
                (Some(a), None) => {
                    let theirs = a.erased_box(from_box)?;
                    let ours = own_box(core, to_box, Direction::Out, &theirs, || {
                        format!("{from}'s {from_box}, passed through")
                    })?;
                    core.link_named((a, from_box), (core, ours.name()))?;
                    signal_wired |= to_box == "signal";
                }
                (None, None) => {
                    return Err(Error::InvalidGraph(format!(
                        "linkage ({from:?}, {from_box:?}) -> ({to:?}, {to_box:?}) has the graphline at both ends: neither {from:?} nor {to:?} is a component"
                    )));
                }
            }
        }

        // `core.inbox`/`core.outbox` panic on a taken name, but neither name can be taken here:
        // `own_box` refuses `control` as an outbox and `signal` as an inbox, and using `control` as
        // an inbox (or `signal` as an outbox) sets `control_wired` (`signal_wired`).
        let control = (!control_wired).then(|| {
            core.inbox::<Ipc>("control", "copied to every child without a control linkage")
        });
        let signal = (!signal_wired).then(|| {
            core.outbox::<Ipc>(
                "signal",
                "producerFinished, or the shutdownMicroprocess received, once every child has ended",
            )
        });
        let dissemination = components
            .iter()
            .filter(|(name, _)| {
                !linkages
                    .iter()
                    .any(|&(_, (to, to_box))| to == *name && to_box == "control")
            })
            .filter_map(|(_, c)| {
                let control = c.component_core().inbox_named::<Ipc>("control").ok()?;
                Some((c.component_core().clone(), control))
            })
            .collect();
        Ok(Wiring {
            control,
            signal,
            dissemination,
        })
    }

    /// The graphline's core: use it to reach its boxes by name and type, e.g.
    /// `core().inbox_named::<T>("inbox")`.
    pub fn core(&self) -> &Core {
        &self.core
    }
}

/// What [`Graphline::wire`] made besides the links.
struct Wiring {
    /// The graphline's own `control`, unless a linkage starts there.
    control: Option<Inbox<Ipc>>,
    /// The graphline's own `signal`, unless a linkage ends there.
    signal: Option<Outbox<Ipc>>,
    /// The children's `control` inboxes that messages on the graphline's own `control` are copied
    /// to, with the child's core.
    dissemination: Vec<(Core, Inbox<Ipc>)>,
}

/// The graphline's box `name` facing `dir`, created like `theirs` (the child's box it is linked
/// to) if it does not exist yet.
fn own_box(
    core: &Core,
    name: &str,
    dir: Direction,
    theirs: &Rc<dyn ErasedBox>,
    description: impl FnOnce() -> String,
) -> Result<Rc<dyn ErasedBox>, Error> {
    let (kind, reserved): (&str, &[&str]) = match dir {
        Direction::In => ("inbox", &["outbox", "signal"]),
        Direction::Out => ("outbox", &["inbox", "control"]),
    };
    if reserved.contains(&name) {
        return Err(Error::InvalidGraph(format!(
            "{name:?} cannot be a graphline {kind}"
        )));
    }
    match core.erased_box(name) {
        Ok(existing) if existing.direction() == dir => Ok(existing),
        Ok(_) => Err(Error::InvalidGraph(format!(
            "{name:?} is used on the graphline both as an inbox and as an outbox"
        ))),
        Err(_) => Ok(core.add_box_like(theirs, name, &description(), dir)),
    }
}

impl fmt::Debug for Graphline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graphline")
            .field("core", &self.core)
            .field("children", &self.children)
            .finish_non_exhaustive()
    }
}

impl Component for Graphline {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn main(self) {
        let Self {
            core,
            children,
            control,
            signal,
            dissemination,
        } = self;
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

        let mut shutdown = None;
        loop {
            if let Some(control) = &control {
                while let Some(msg) = control.recv_now() {
                    for (child, inbox) in &dissemination {
                        if !child.is_finished() {
                            // A full control inbox refuses the copy; that child misses it.
                            let _ = inbox.deliver(msg.clone());
                        }
                    }
                    if msg.is_shutdown_microprocess() {
                        shutdown = Some(msg);
                    }
                }
            }
            if reap_children(&core) {
                break;
            }
            sleep_until_woken().await;
        }

        if let Some(signal) = signal {
            let msg = shutdown.unwrap_or_else(|| {
                Ipc::ProducerFinished(ProducerFinished {
                    caller: Some(core.id()),
                    message: None,
                })
            });
            let _ = signal.send(msg);
        }
    }
}
