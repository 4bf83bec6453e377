//! Axon: Kamaelia's component model in Rust.
//!
//! Programs are built from *components*: small concurrent units that talk only through named,
//! typed boxes. A component reads its [`Inbox`]es and writes its [`Outbox`]es; a [`Linkage`] wires
//! an outbox to another component's inbox; a single-threaded [`Scheduler`] runs the components
//! cooperatively, blocking (never spinning) when none is runnable.
//!
//! | Kamaelia / Axon | here |
//! |---|---|
//! | `component` with `Inboxes`/`Outboxes` dicts | a type with a [`Core`] and typed boxes, implementing [`Component`] |
//! | `self.send(msg, "outbox")`, `self.recv("inbox")` | [`Outbox::send`], [`Inbox::recv_now`] / [`Inbox::recv`]`.await` |
//! | `dataReady`, `anyReady` | [`Inbox::data_ready`], [`Core::data_ready`], [`Core::any_ready`] |
//! | `self.pause(); yield 1` | [`Core::pause`]`.await`, or awaiting an empty inbox |
//! | `self.link((a,"outbox"), (b,"inbox"))` | [`link`], [`Core::link`] (typed, checked at compile time), [`Core::link_named`] (checked at link time) |
//! | `noSpaceInBox` | [`NoSpaceInBox`] (message handed back) or [`Outbox::send_wait`]`.await` |
//! | `Axon.Ipc`, `Kamaelia.IPC` | [`Ipc`] |
//! | Coordinating Assistant Tracker | [`Scheduler::register_service`] and friends, per scheduler |
//! | `threadedcomponent` | [`ThreadedComponent`] |
//! | `Pipeline`, `Graphline` | [`Pipeline`], [`Graphline`] |
//!
//! # Example: a three-component pipeline
//!
//! ```
//! use axon::{pipeline, Component, FnComponent, Inbox, Ipc, Msg, Scheduler};
//!
//! /// Emits 1..=5, then producerFinished.
//! fn count() -> impl Component {
//!     FnComponent::<(), u64, _>::new("Count", |b| async move {
//!         for n in 1..=5 {
//!             b.outbox.send_wait(n).await;
//!         }
//!         let _ = b.signal.send(Ipc::producer_finished());
//!     })
//! }
//!
//! /// Squares numbers; forwards its shutdown and stops.
//! fn square() -> impl Component {
//!     FnComponent::<u64, u64, _>::new("Square", |b| async move {
//!         loop {
//!             match b.next().await {
//!                 Msg::Data(n) => b.outbox.send_wait(n * n).await,
//!                 Msg::Control(c) => return drop(b.signal.send(c)),
//!             }
//!         }
//!     })
//! }
//!
//! /// Adds everything up and reports the sum when its producer finishes.
//! fn total() -> impl Component {
//!     FnComponent::<u64, u64, _>::new("Total", |b| async move {
//!         let mut sum = 0;
//!         while let Msg::Data(n) = b.next().await {
//!             sum += n;
//!         }
//!         let _ = b.outbox.send(sum);
//!     })
//! }
//!
//! let graph = pipeline![count(), square(), total()]?;
//! let result: Inbox<u64> = axon::Core::new("Test").inbox("inbox", "the sum");
//! graph.core().outbox_named::<u64>("outbox")?.link_to(&result)?;
//!
//! let sched = Scheduler::new();
//! sched.activate(graph);
//! sched.run(); // returns when every component has finished
//! assert_eq!(result.recv_now(), Some(1 + 4 + 9 + 16 + 25));
//! # Ok::<(), axon::Error>(())
//! ```
//!
//! # Waking rules
//!
//! A paused component is polled again only when: a message is delivered to any of its inboxes; a
//! consumer collects a message from an inbox its outbox feeds, while it waits for room
//! ([`Outbox::send_wait`]) or is in [`Core::pause`]; a timer it set fires ([`sleep`]); a child ends;
//! or its [`Waker`](std::task::Waker) is woken from another thread. Same-thread wakes are plain
//! queue pushes on `Rc` data: no atomics.
#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

mod boxes;
mod chassis;
mod children;
mod component;
mod error;
pub mod ipc;
mod linkage;
mod scheduler;
mod threaded;
mod time;
mod timers;

pub use boxes::{BoxDecl, Deliveries, DeliveryFlag, Inbox, Outbox, Recv, SendWait};
pub use chassis::{Graphline, Pipeline};
pub use component::{AnyComponent, Boxes, Component, ComponentId, Core, FnComponent, Msg, Pause};
pub use error::{Error, NoSpaceInBox};
pub use ipc::Ipc;
pub use linkage::{link, Linkable, Linkage};
pub use scheduler::{
    hand_off, run_handed_off, spawn, spawn_boxed, Driver, Failure, Scheduler, ThreadParker, Unpark,
};
pub use threaded::{ThreadContext, ThreadedComponent};
pub use time::{now, sleep, sleep_until, timeout, yield_now, Elapsed, Sleep, YieldNow};
