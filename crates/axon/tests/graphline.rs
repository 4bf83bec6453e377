//! Ports Kamaelia's `Tests/Python/Kamaelia/Chassis/test_Graphline.py` to [`axon::Graphline`].
//!
//! Kamaelia's `MockChild` spins until told to stop; here it sleeps on a private `stop` inbox, so
//! the messages a test sends into its boxes stay there for the test to read. Kamaelia's linkage
//! tables are kept, with each mock's box types chosen so that every linkage in them type-checks.
//! Where Kamaelia has a bug (reference section 10, bug 13), the fixed behaviour is tested: errors
//! are `Error::InvalidGraph` values, and no boxes leak from one graphline to another.

use std::cell::Cell;
use std::rc::Rc;

use axon::ipc::ShutdownMicroprocess;
use axon::{
    AnyComponent, Boxes, Component, ComponentId, Core, Error, FnComponent, Graphline, Inbox, Ipc,
    Outbox, Scheduler,
};

/// Kamaelia's `MockChild`: records that it ran, reads nothing, ends when `stop` gets a message.
struct MockChild<I: 'static, O: 'static> {
    boxes: Boxes<I, O>,
    stop: Inbox<()>,
    activated: Rc<Cell<bool>>,
}

impl<I: 'static, O: 'static> Component for MockChild<I, O> {
    fn core(&self) -> &Core {
        &self.boxes.core
    }

    async fn main(self) {
        self.activated.set(true);
        self.stop.recv().await;
    }
}

/// What a test keeps of a [`MockChild`] once the child is handed to a graphline.
struct Mock<I: 'static, O: 'static> {
    core: Core,
    inbox: Inbox<I>,
    control: Inbox<Ipc>,
    outbox: Outbox<O>,
    signal: Outbox<Ipc>,
    stop: Inbox<()>,
    activated: Rc<Cell<bool>>,
}

impl<I, O> Mock<I, O> {
    fn stop_now(&self) {
        self.stop.deliver(()).unwrap();
    }

    fn was_activated(&self) -> bool {
        self.activated.get()
    }
}

/// A mock child whose `inbox` carries `I` and `outbox` carries `O`.
fn mock<I: 'static, O: 'static>() -> (Box<dyn AnyComponent>, Mock<I, O>) {
    let boxes = Boxes::<I, O>::new("MockChild");
    let stop = boxes.core.inbox("stop", "ends the mock");
    let activated = Rc::new(Cell::new(false));
    let handle = Mock {
        core: boxes.core.clone(),
        inbox: boxes.inbox.clone(),
        control: boxes.control.clone(),
        outbox: boxes.outbox.clone(),
        signal: boxes.signal.clone(),
        stop: stop.clone(),
        activated: activated.clone(),
    };
    let child = MockChild {
        boxes,
        stop,
        activated,
    };
    (Box::new(child), handle)
}

/// A graphline's named components.
type Components = Vec<(&'static str, Box<dyn AnyComponent>)>;

/// A graphline's linkage table.
type Table = Vec<((&'static str, &'static str), (&'static str, &'static str))>;

/// Three mocks carrying `u64` in and out, named A, B and C.
fn abc() -> (Components, [Mock<u64, u64>; 3]) {
    let (a, ma) = mock();
    let (b, mb) = mock();
    let (c, mc) = mock();
    (vec![("A", a), ("B", b), ("C", c)], [ma, mb, mc])
}

/// Kamaelia's `setup_initialise` + `setup_activate`: a scheduler running the graphline, with a sink
/// for the graphline's `signal`.
struct Harness {
    sched: Scheduler,
    graphline: Core,
    signal: Inbox<Ipc>,
}

impl Harness {
    /// Collects the graphline's `signal` (which must carry `Ipc`), activates it and runs until
    /// idle.
    fn start(graphline: Graphline) -> Self {
        let signal = Core::new("Sink").inbox("signal", "the graphline's signal");
        graphline
            .core()
            .outbox_named::<Ipc>("signal")
            .unwrap()
            .link_to(&signal)
            .unwrap();
        Self::start_with(graphline, signal)
    }

    fn start_with(graphline: Graphline, signal: Inbox<Ipc>) -> Self {
        let sched = Scheduler::new();
        let graphline = sched.activate(graphline);
        sched.run_until_idle(100);
        Self {
            sched,
            graphline,
            signal,
        }
    }

    /// Runs until nothing is runnable; fails if that takes more than 100 cycles.
    fn run(&self) {
        let cycles = self.sched.run_until_idle(100);
        assert!(cycles < 100, "the graph never went idle");
    }

    /// Kamaelia's `sendTo(msg, "control")`.
    fn send_control(&self, msg: Ipc) {
        self.graphline
            .inbox_named::<Ipc>("control")
            .unwrap()
            .deliver(msg)
            .unwrap();
    }

    /// Whether the graphline is still among the scheduler's components (Kamaelia's
    /// `graphline in scheduler.listAllThreads()`).
    fn is_running(&self) -> bool {
        self.sched.components().contains(&self.graphline.id())
    }
}

/// A collector for the graphline's outbox `name`, which must carry `T`.
fn collect<T: 'static>(graphline: &Graphline, name: &str) -> Inbox<T> {
    let sink = Core::new("Sink").inbox("inbox", "collects a graphline outbox");
    graphline
        .core()
        .outbox_named::<T>(name)
        .unwrap()
        .link_to(&sink)
        .unwrap();
    sink
}

/// A shutdownMicroprocess that can be told apart from any other.
fn marked_shutdown() -> ShutdownMicroprocess {
    ShutdownMicroprocess {
        caller: Some(ComponentId(u64::MAX)),
        microprocesses: vec![ComponentId(u64::MAX - 1)],
    }
}

fn status(msg: Option<Ipc>) -> String {
    match msg {
        Some(Ipc::Status(s)) => s,
        other => panic!("expected a status message, got {other:?}"),
    }
}

/// Asserts `msg` is a producerFinished sent by the graphline `core` itself.
fn assert_own_producer_finished(msg: Option<Ipc>, core: &Core) {
    match msg {
        Some(Ipc::ProducerFinished(p)) => {
            assert_eq!(p.caller, Some(core.id()));
            assert_eq!(p.message, None);
        }
        other => panic!("expected the graphline's producerFinished, got {other:?}"),
    }
}

/// Asserts none of `cores` holds a message in any inbox (Kamaelia's "and nowhere else").
fn assert_nothing_ready(cores: &[&Core]) {
    for core in cores {
        assert_eq!(core.any_ready(), None, "{} got a message", core.name());
    }
}

// ----- construction ----------------------------------------------------------------------------

#[test]
fn no_arguments_is_an_invalid_graph() {
    // test_smokeTest: Kamaelia raised TypeError where its test wants ValueError.
    assert!(matches!(
        Graphline::new(Vec::new(), None),
        Err(Error::InvalidGraph(_))
    ));
}

#[test]
fn components_without_linkages_is_an_invalid_graph() {
    let (components, mocks) = abc();
    let err = Graphline::new(components, None).unwrap_err();
    assert!(matches!(err, Error::InvalidGraph(_)), "{err:?}");
    // Nothing was wired.
    for m in &mocks {
        assert!(!m.outbox.is_linked());
        assert!(!m.signal.is_linked());
    }
}

#[test]
fn components_with_empty_linkages_is_valid() {
    let (components, mocks) = abc();
    let g = Graphline::new(components, Some(vec![])).unwrap();
    for m in &mocks {
        assert!(!m.outbox.is_linked());
    }
    let mut boxes = g.core().box_names();
    boxes.sort();
    assert_eq!(boxes, ["control", "signal"]);
}

#[test]
fn no_components_with_empty_linkages_is_valid_and_ends_at_once() {
    let g = Graphline::new(Vec::new(), Some(vec![])).unwrap();
    let h = Harness::start(g);
    assert!(h.graphline.is_finished());
    assert_own_producer_finished(h.signal.recv_now(), &h.graphline);
}

// ----- children and activation -----------------------------------------------------------------

#[test]
fn components_become_children_once_activated_and_run() {
    let (components, mocks) = abc();
    let g = Graphline::new(components, Some(vec![])).unwrap();
    let h = Harness::start(g);
    let children = h.graphline.children();
    assert_eq!(children.len(), 3);
    for m in &mocks {
        assert!(children.contains(&m.core));
    }
}

#[test]
fn unactivated_graphline_has_no_children() {
    let (components, _mocks) = abc();
    let g = Graphline::new(components, Some(vec![])).unwrap();
    assert!(g.core().children().is_empty());
}

#[test]
fn activates_unlinked_children_only_when_activated() {
    let (components, mocks) = abc();
    let g = Graphline::new(components, Some(vec![])).unwrap();
    for m in &mocks {
        assert!(!m.was_activated());
        assert!(!m.core.is_activated());
    }
    let _h = Harness::start(g);
    for m in &mocks {
        assert!(m.was_activated());
    }
}

#[test]
fn activates_linked_children_only_when_activated() {
    let (components, mocks) = abc();
    let g = Graphline::new(
        components,
        Some(vec![
            (("A", "outbox"), ("B", "inbox")),
            (("B", "outbox"), ("C", "inbox")),
            (("C", "outbox"), ("A", "inbox")),
        ]),
    )
    .unwrap();
    for m in &mocks {
        assert!(!m.was_activated());
    }
    let _h = Harness::start(g);
    for m in &mocks {
        assert!(m.was_activated());
    }
}

// ----- linkages between children ---------------------------------------------------------------

#[test]
fn linkage_between_components_carries_data_there_only() {
    let (components, [a, b, c]) = abc();
    let g = Graphline::new(components, Some(vec![(("A", "outbox"), ("B", "inbox"))])).unwrap();
    let h = Harness::start(g);

    a.outbox.send(42).unwrap();
    h.run();
    assert_eq!(b.inbox.recv_now(), Some(42));
    assert_nothing_ready(&[&a.core, &b.core, &c.core]);
    assert!(h.signal.is_empty());
}

#[test]
fn several_linkages_between_components_each_carry_data_there_only() {
    // A's inbox takes what C signals; C's outbox feeds D's control: the box types follow.
    let (a, ma) = mock::<Ipc, u64>();
    let (b, mb) = mock::<u64, u64>();
    let (c, mc) = mock::<u64, Ipc>();
    let (d, md) = mock::<u64, u64>();
    let g = Graphline::new(
        vec![("A", a), ("B", b), ("C", c), ("D", d)],
        Some(vec![
            (("A", "outbox"), ("B", "inbox")),
            (("C", "outbox"), ("D", "control")),
            (("C", "signal"), ("A", "inbox")),
            (("B", "signal"), ("A", "control")),
        ]),
    )
    .unwrap();
    let h = Harness::start(g);
    let all = [&ma.core, &mb.core, &mc.core, &md.core];

    ma.outbox.send(1).unwrap();
    h.run();
    assert_eq!(mb.inbox.recv_now(), Some(1));
    assert_nothing_ready(&all);

    mc.outbox.send(Ipc::Status("C out".into())).unwrap();
    h.run();
    assert_eq!(status(md.control.recv_now()), "C out");
    assert_nothing_ready(&all);

    mc.signal.send(Ipc::Status("C signal".into())).unwrap();
    h.run();
    assert_eq!(status(ma.inbox.recv_now()), "C signal");
    assert_nothing_ready(&all);

    mb.signal.send(Ipc::Status("B signal".into())).unwrap();
    h.run();
    assert_eq!(status(ma.control.recv_now()), "B signal");
    assert_nothing_ready(&all);

    assert!(h.signal.is_empty());
}

#[test]
fn terminates_when_all_children_have_terminated_and_not_before() {
    let (components, mocks) = abc();
    let g = Graphline::new(components, Some(vec![(("A", "outbox"), ("B", "inbox"))])).unwrap();
    let h = Harness::start(g);

    for _ in 0..2 {
        h.run();
        assert!(h.is_running());
    }
    for (i, m) in mocks.iter().enumerate() {
        assert!(h.is_running(), "ended before child {i} did");
        m.stop_now();
        h.run();
        assert_eq!(h.graphline.children().len(), 2 - i);
    }
    assert!(!h.is_running());
    assert!(h.graphline.is_finished());
    assert!(h.sched.is_empty());
}

// ----- passthroughs ----------------------------------------------------------------------------

/// Names that are no child's, so each means the graphline (Kamaelia's `selectionOfUnusedNames`).
const UNUSED_NAMES: [&str; 6] = ["", "self", "flurble", "a", "component", "pig"];

#[test]
fn unknown_name_as_source_passes_graphline_inbox_and_control_through() {
    for name in UNUSED_NAMES {
        // B's inbox carries strings, so the graphline's `control` does too.
        let (a, ma) = mock::<u64, u64>();
        let (b, mb) = mock::<String, u64>();
        let (c, mc) = mock::<u64, u64>();
        let g = Graphline::new(
            vec![("A", a), ("B", b), ("C", c)],
            Some(vec![
                ((name, "inbox"), ("A", "control")),
                ((name, "control"), ("B", "inbox")),
                (("C", "outbox"), ("A", "inbox")),
            ]),
        )
        .unwrap();
        let h = Harness::start(g);
        let all = [&ma.core, &mb.core, &mc.core];

        let inbox = h.graphline.inbox_named::<Ipc>("inbox").unwrap();
        inbox.deliver(Ipc::Status(format!("{name} in"))).unwrap();
        h.run();
        assert_eq!(status(ma.control.recv_now()), format!("{name} in"));
        assert_nothing_ready(&all);

        let control = h.graphline.inbox_named::<String>("control").unwrap();
        control.deliver(format!("{name} control")).unwrap();
        h.run();
        assert_eq!(mb.inbox.recv_now(), Some(format!("{name} control")));
        assert_nothing_ready(&all);
        assert!(h.signal.is_empty());
    }
}

#[test]
fn unknown_name_and_new_box_as_source_creates_a_graphline_inbox() {
    for name in UNUSED_NAMES {
        let (components, [ma, mb, mc]) = abc();
        let g = Graphline::new(
            components,
            Some(vec![
                ((name, "novel-inbox"), ("A", "control")),
                ((name, "another-novel-inbox"), ("B", "inbox")),
                (("C", "outbox"), ("A", "inbox")),
            ]),
        )
        .unwrap();
        let inboxes: Vec<String> = g.core().inboxes().into_iter().map(|(n, _)| n).collect();
        assert_eq!(inboxes, ["novel-inbox", "another-novel-inbox", "control"]);
        let h = Harness::start(g);
        let all = [&ma.core, &mb.core, &mc.core];

        let novel = h.graphline.inbox_named::<Ipc>("novel-inbox").unwrap();
        novel.deliver(Ipc::Status("novel".into())).unwrap();
        h.run();
        assert_eq!(status(ma.control.recv_now()), "novel");
        assert_nothing_ready(&all);

        let another = h
            .graphline
            .inbox_named::<u64>("another-novel-inbox")
            .unwrap();
        another.deliver(5).unwrap();
        h.run();
        assert_eq!(mb.inbox.recv_now(), Some(5));
        assert_nothing_ready(&all);
    }
}

#[test]
fn unknown_name_as_sink_passes_child_outboxes_through() {
    for name in UNUSED_NAMES {
        let (components, [ma, mb, mc]) = abc();
        let g = Graphline::new(
            components,
            Some(vec![
                (("A", "outbox"), (name, "signal")),
                (("B", "signal"), (name, "outbox")),
                (("C", "outbox"), ("A", "inbox")),
            ]),
        )
        .unwrap();
        // The graphline's `signal` carries what A's outbox does, and its `outbox` carries Ipc.
        let signal = collect::<u64>(&g, "signal");
        let outbox = collect::<Ipc>(&g, "outbox");
        let h = Harness::start_with(g, Core::new("Unused").inbox("unused", ""));
        let all = [&ma.core, &mb.core, &mc.core];

        ma.outbox.send(3).unwrap();
        h.run();
        assert_eq!(signal.recv_now(), Some(3));
        assert_nothing_ready(&all);

        mb.signal.send(Ipc::Status("B".into())).unwrap();
        h.run();
        assert_eq!(status(outbox.recv_now()), "B");
        assert_nothing_ready(&all);
        assert!(signal.is_empty());
    }
}

#[test]
fn unknown_name_and_new_box_as_sink_creates_a_graphline_outbox() {
    for name in UNUSED_NAMES {
        let (components, [ma, mb, mc]) = abc();
        let g = Graphline::new(
            components,
            Some(vec![
                (("A", "outbox"), (name, "novel-boxname")),
                (("B", "signal"), (name, "another-novel-boxname")),
                (("C", "outbox"), ("A", "inbox")),
            ]),
        )
        .unwrap();
        let outboxes: Vec<String> = g.core().outboxes().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            outboxes,
            ["novel-boxname", "another-novel-boxname", "signal"]
        );
        let novel = collect::<u64>(&g, "novel-boxname");
        let another = collect::<Ipc>(&g, "another-novel-boxname");
        let h = Harness::start(g);
        let all = [&ma.core, &mb.core, &mc.core];

        ma.outbox.send(8).unwrap();
        h.run();
        assert_eq!(novel.recv_now(), Some(8));
        assert_nothing_ready(&all);

        mb.signal.send(Ipc::Status("B".into())).unwrap();
        h.run();
        assert_eq!(status(another.recv_now()), "B");
        assert_nothing_ready(&all);
        assert!(h.signal.is_empty());
    }
}

// ----- shutdown --------------------------------------------------------------------------------

#[test]
fn emits_producer_finished_when_children_end_without_shutdown_received() {
    // emissionOfShutdownSignal_1
    let (components, mocks) = abc();
    let g = Graphline::new(components, Some(vec![(("A", "outbox"), ("B", "inbox"))])).unwrap();
    let h = Harness::start(g);
    h.run();
    assert!(h.signal.is_empty(), "emitted before the children ended");

    for m in &mocks {
        m.stop_now();
    }
    h.run();
    assert!(h.graphline.is_finished());
    assert_own_producer_finished(h.signal.recv_now(), &h.graphline);
    assert!(h.signal.is_empty());
}

#[test]
fn emits_the_shutdown_it_received_when_children_end() {
    // emissionOfShutdownSignal_2
    let (components, mocks) = abc();
    let g = Graphline::new(components, Some(vec![(("A", "outbox"), ("B", "inbox"))])).unwrap();
    let h = Harness::start(g);
    assert!(h.signal.is_empty());

    h.send_control(Ipc::ShutdownMicroprocess(marked_shutdown()));
    h.run();
    assert!(h.signal.is_empty(), "emitted before the children ended");

    for m in &mocks {
        m.stop_now();
    }
    h.run();
    match h.signal.recv_now() {
        Some(Ipc::ShutdownMicroprocess(s)) => assert_eq!(s, marked_shutdown()),
        other => panic!("expected the shutdownMicroprocess sent in, got {other:?}"),
    }
    assert!(h.signal.is_empty());
}

#[test]
fn wired_control_carries_messages_along_its_linkage_only() {
    // receivesShutdownPassesThru
    let (components, [ma, mb, mc]) = abc();
    let g = Graphline::new(components, Some(vec![(("", "control"), ("A", "control"))])).unwrap();
    let h = Harness::start(g);

    h.send_control(Ipc::ShutdownMicroprocess(marked_shutdown()));
    h.run();
    match ma.control.recv_now() {
        Some(Ipc::ShutdownMicroprocess(s)) => assert_eq!(s, marked_shutdown()),
        other => panic!("expected the shutdownMicroprocess, got {other:?}"),
    }
    assert_nothing_ready(&[&ma.core, &mb.core, &mc.core]);
}

#[test]
fn unwired_control_is_copied_to_children_without_control_linkages() {
    // receivesShutdownDisseminated
    let (a, ma) = mock::<u64, Ipc>();
    let (b, mb) = mock::<u64, u64>();
    let (c, mc) = mock::<u64, u64>();
    let g = Graphline::new(
        vec![("A", a), ("B", b), ("C", c)],
        // B's control is fed by A, so B gets no copy.
        Some(vec![(("A", "outbox"), ("B", "control"))]),
    )
    .unwrap();
    let h = Harness::start(g);

    h.send_control(Ipc::ShutdownMicroprocess(marked_shutdown()));
    h.run();
    for m in [&ma.control, &mc.control] {
        match m.recv_now() {
            Some(Ipc::ShutdownMicroprocess(s)) => assert_eq!(s, marked_shutdown()),
            other => panic!("expected a copy of the shutdownMicroprocess, got {other:?}"),
        }
    }
    assert!(mb.control.is_empty());
    assert_nothing_ready(&[&ma.core, &mb.core, &mc.core]);
}

#[test]
fn unwired_control_and_signal_pass_shutdown_on_after_children_end() {
    // receivesShutdownAndPropagates
    let (a, ma) = mock::<u64, Ipc>();
    let (b, mb) = mock::<u64, u64>();
    let (c, mc) = mock::<u64, u64>();
    let g = Graphline::new(
        vec![("A", a), ("B", b), ("C", c)],
        Some(vec![(("A", "outbox"), ("B", "control"))]),
    )
    .unwrap();
    let h = Harness::start(g);

    h.send_control(Ipc::ShutdownMicroprocess(marked_shutdown()));
    h.run();
    assert!(h.is_running());
    assert!(h.signal.is_empty());

    for m in [&ma.stop, &mb.stop, &mc.stop] {
        m.deliver(()).unwrap();
    }
    h.run();
    assert!(!h.is_running());
    match h.signal.recv_now() {
        Some(Ipc::ShutdownMicroprocess(s)) => assert_eq!(s, marked_shutdown()),
        other => panic!("expected the shutdownMicroprocess sent in, got {other:?}"),
    }
    assert!(h.signal.is_empty());
}

#[test]
fn unwired_control_and_signal_emit_own_producer_finished_after_other_messages() {
    // receivesShutdownAndPropagates2
    let (a, ma) = mock::<u64, Ipc>();
    let (b, mb) = mock::<u64, u64>();
    let (c, mc) = mock::<u64, u64>();
    let g = Graphline::new(
        vec![("A", a), ("B", b), ("C", c)],
        Some(vec![(("A", "outbox"), ("B", "control"))]),
    )
    .unwrap();
    let h = Harness::start(g);

    // A producerFinished from someone else: the graphline sends its own, not this one.
    let sent = Ipc::ProducerFinished(axon::ipc::ProducerFinished {
        caller: Some(ComponentId(u64::MAX)),
        message: Some("not this one".into()),
    });
    h.send_control(sent);
    h.run();
    assert!(h.is_running());
    assert!(h.signal.is_empty());

    for m in [&ma.stop, &mb.stop, &mc.stop] {
        m.deliver(()).unwrap();
    }
    h.run();
    assert!(!h.is_running());
    assert_own_producer_finished(h.signal.recv_now(), &h.graphline);
    assert!(h.signal.is_empty());
}

#[test]
fn wired_control_and_unwired_signal_always_emit_producer_finished() {
    // receivesShutdownAndPropagates23
    let possible = [
        Ipc::producer_finished(),
        Ipc::ShutdownMicroprocess(marked_shutdown()),
        Ipc::Status("flurble".into()),
    ];
    for msg in possible {
        let (a, ma) = mock::<u64, Ipc>();
        let (b, mb) = mock::<u64, u64>();
        let (c, mc) = mock::<u64, u64>();
        let g = Graphline::new(
            vec![("A", a), ("B", b), ("C", c)],
            Some(vec![
                (("", "control"), ("A", "control")),
                (("A", "outbox"), ("B", "control")),
            ]),
        )
        .unwrap();
        let h = Harness::start(g);

        h.send_control(msg.clone());
        h.run();
        assert!(h.is_running());
        assert!(h.signal.is_empty());
        // It went to A alone.
        assert!(ma.control.recv_now().is_some());
        assert!(mb.control.is_empty() && mc.control.is_empty());

        for m in [&ma.stop, &mb.stop, &mc.stop] {
            m.deliver(()).unwrap();
        }
        h.run();
        assert!(!h.is_running());
        assert_own_producer_finished(h.signal.recv_now(), &h.graphline);
        assert!(h.signal.is_empty(), "after {msg}");
    }
}

#[test]
fn wired_signal_gets_nothing_from_the_graphline_itself() {
    // doesNotPropagateShutdownMsg
    let (a, ma) = mock::<u64, Ipc>();
    let (b, mb) = mock::<u64, u64>();
    let (c, mc) = mock::<u64, u64>();
    let g = Graphline::new(
        vec![("A", a), ("B", b), ("C", c)],
        Some(vec![
            (("A", "signal"), ("", "signal")),
            (("A", "outbox"), ("B", "control")),
        ]),
    )
    .unwrap();
    let h = Harness::start(g);

    h.send_control(Ipc::producer_finished());
    h.send_control(Ipc::shutdown_microprocess());
    h.run();
    assert!(h.is_running());
    assert!(h.signal.is_empty());

    for m in [&ma.stop, &mb.stop, &mc.stop] {
        m.deliver(()).unwrap();
    }
    h.run();
    assert!(!h.is_running());
    assert!(h.signal.is_empty());
}

#[test]
fn wired_control_and_signal_emit_nothing_of_the_graphline_own() {
    // manuallyImplementedShutdownOverrides
    let (components, [ma, mb, mc]) = abc();
    let g = Graphline::new(
        components,
        Some(vec![
            (("", "control"), ("A", "control")),
            (("A", "signal"), ("", "signal")),
            (("B", "outbox"), ("C", "inbox")),
        ]),
    )
    .unwrap();
    // No linkage names the graphline's `outbox`, so it has none.
    assert!(matches!(
        g.core().outbox_named::<u64>("outbox"),
        Err(Error::NoSuchBox { .. })
    ));
    let h = Harness::start(g);
    let all = [&ma.core, &mb.core, &mc.core];
    h.run();
    assert!(h.signal.is_empty());

    h.send_control(Ipc::Status("to A".into()));
    h.run();
    assert_eq!(status(ma.control.recv_now()), "to A");
    assert_nothing_ready(&all);

    ma.signal.send(Ipc::Status("from A".into())).unwrap();
    h.run();
    assert_eq!(status(h.signal.recv_now()), "from A");
    assert_nothing_ready(&all);

    mb.outbox.send(4).unwrap();
    h.run();
    assert_eq!(mc.inbox.recv_now(), Some(4));
    assert_nothing_ready(&all);

    h.run();
    assert!(h.signal.is_empty());
    for m in [&ma, &mb, &mc] {
        m.stop_now();
    }
    h.run();
    assert!(!h.is_running());
    assert!(h.signal.is_empty());
}

// ----- beyond Kamaelia's tests: typed boxes and bug 13 ------------------------------------------

#[test]
fn boxes_do_not_leak_between_graphlines() {
    let (components, _mocks) = abc();
    let first =
        Graphline::new(components, Some(vec![(("self", "extra"), ("A", "inbox"))])).unwrap();
    assert!(first.core().box_names().contains(&"extra".to_owned()));

    let (components, _mocks) = abc();
    let second = Graphline::new(components, Some(vec![])).unwrap();
    let mut boxes = second.core().box_names();
    boxes.sort();
    assert_eq!(boxes, ["control", "signal"]);
}

#[test]
fn linkage_between_different_types_is_a_type_mismatch_naming_both_ends() {
    let (a, ma) = mock::<u64, u64>();
    let (b, mb) = mock::<String, u64>();
    let err = Graphline::new(
        vec![("A", a), ("B", b)],
        Some(vec![(("A", "outbox"), ("B", "inbox"))]),
    )
    .unwrap_err();
    assert_eq!(
        err,
        Error::TypeMismatch {
            source: format!("{}.outbox", ma.core.name()),
            source_type: "u64",
            sink: format!("{}.inbox", mb.core.name()),
            sink_type: "alloc::string::String",
        }
    );
}

#[test]
fn passthroughs_into_one_graphline_outbox_must_agree_on_type() {
    let (a, _ma) = mock::<u64, u64>();
    let (b, _mb) = mock::<u64, String>();
    let err = Graphline::new(
        vec![("A", a), ("B", b)],
        Some(vec![
            (("A", "outbox"), ("self", "outbox")),
            (("B", "outbox"), ("self", "outbox")),
        ]),
    )
    .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::TypeMismatch {
                source_type: "alloc::string::String",
                sink_type: "u64",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn malformed_tables_are_errors_and_leave_nothing_linked() {
    let cases: Vec<(Table, &str)> = vec![
        (
            vec![(("self", "inbox"), ("self", "outbox"))],
            "graphline at both ends",
        ),
        (
            vec![(("A", "outbox"), ("self", "control"))],
            "control as an outbox",
        ),
        (
            vec![(("self", "signal"), ("A", "inbox"))],
            "signal as an inbox",
        ),
        (
            vec![
                (("self", "x"), ("A", "inbox")),
                (("A", "outbox"), ("self", "x")),
            ],
            "x both ways",
        ),
    ];
    for (linkages, why) in cases {
        let (components, [ma, ..]) = abc();
        let err = Graphline::new(components, Some(linkages)).unwrap_err();
        assert!(matches!(err, Error::InvalidGraph(_)), "{why}: {err:?}");
        assert!(!ma.outbox.is_linked(), "{why}: left a link behind");
    }

    let (components, [ma, ..]) = abc();
    let err = Graphline::new(
        components,
        Some(vec![
            (("A", "outbox"), ("B", "inbox")),
            (("A", "nonesuch"), ("B", "inbox")),
        ]),
    )
    .unwrap_err();
    assert_eq!(
        err,
        Error::NoSuchBox {
            component: ma.core.name(),
            name: "nonesuch".into()
        }
    );
    assert!(!ma.outbox.is_linked(), "the first linkage was left behind");

    let (a, _) = mock::<u64, u64>();
    let (b, _) = mock::<u64, u64>();
    let err = Graphline::new(vec![("A", a), ("A", b)], Some(vec![])).unwrap_err();
    assert!(matches!(err, Error::InvalidGraph(_)), "{err:?}");
}

#[test]
fn control_copies_reach_a_nested_pipeline_through_its_passthrough() {
    let (a, ma) = mock::<u64, u64>();
    let (inner, mi) = mock::<u64, u64>();
    let pipeline = axon::Pipeline::new(vec![inner]).unwrap();
    let g = Graphline::new(vec![("A", a), ("P", Box::new(pipeline))], Some(vec![])).unwrap();
    let h = Harness::start(g);

    h.send_control(Ipc::Status("everyone".into()));
    h.run();
    assert_eq!(status(ma.control.recv_now()), "everyone");
    assert_eq!(status(mi.control.recv_now()), "everyone");
}

#[test]
fn graphline_runs_a_real_graph_to_completion() {
    // The children stop on the copied shutdown; its sum leaves through the graphline's outbox.
    let numbers = FnComponent::<u64, u64, _>::new("Numbers", |b| async move {
        for n in 1..=4 {
            b.outbox.send_wait(n).await;
        }
        let _ = b.signal.send(Ipc::producer_finished());
    });
    let total = FnComponent::<u64, u64, _>::new("Total", |b| async move {
        let mut sum = 0;
        while let axon::Msg::Data(n) = b.next().await {
            sum += n;
        }
        let _ = b.outbox.send(sum);
    });
    let g = Graphline::new(
        vec![("numbers", Box::new(numbers)), ("total", Box::new(total))],
        Some(vec![
            (("numbers", "outbox"), ("total", "inbox")),
            (("numbers", "signal"), ("total", "control")),
            (("total", "outbox"), ("self", "outbox")),
        ]),
    )
    .unwrap();
    let out = collect::<u64>(&g, "outbox");
    let signal = collect::<Ipc>(&g, "signal");
    let sched = Scheduler::new();
    let core = sched.activate(g);
    sched.run();
    assert_eq!(out.recv_now(), Some(10));
    assert_own_producer_finished(signal.recv_now(), &core);
}

#[test]
fn graphline_sleeps_when_messages_are_stranded_in_a_passthrough_inbox() {
    // Once A has ended, the graphline's `inbox` forwards nowhere and what is sent there stays.
    let (components, [ma, mb, _mc]) = abc();
    let g = Graphline::new(components, Some(vec![(("self", "inbox"), ("A", "inbox"))])).unwrap();
    let h = Harness::start(g);
    ma.stop_now();
    h.run();
    assert!(ma.core.is_finished());

    let inbox = h.graphline.inbox_named::<u64>("inbox").unwrap();
    inbox.deliver(1).unwrap();
    h.run();
    assert_eq!(inbox.len(), 1);
    assert!(h.is_running());
    assert!(mb.inbox.is_empty());
}
