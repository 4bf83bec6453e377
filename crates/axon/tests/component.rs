//! Ports `Tests/Python/Axon/test_Component.py` (`Component_Test`), plus the `str()` cases of
//! `test___str__.py` and `test_util.py` ("unique per instance and stable").
//! `MessageDeliveryNotifications_Test` from the same file is in `tests/delivery_notifications.rs`.
//!
//! Dropped on purpose:
//! * `test_main_smokeTest`, `test_main_closedowntest`, `test_initialiseComponent`,
//!   `test_mainBody`, `test_closeDownComponent`: the old-style `initialiseComponent` / `mainBody` /
//!   `closeDownComponent` protocol does not exist; a component has one async `main`.
//! * `test__closeDownMicroprocess_smoketest`, `test__closeDownMicroprocess_None`: they check that a
//!   stub returns `None` (no knock-on); there is no such hook. What close-down *does* is tested by
//!   `linkages_a_component_made_are_removed_when_it_finishes`.
//! * The `pipewidth` / `synchronous` arguments of `test_link`: links take no size arguments; the
//!   sink's [`Inbox::set_size`] does that and is tested in `tests/postoffice.rs`.
//! * The `Usescomponents` attribute of `test_SmokeTest_NoArguments`: no such attribute.
//! * The rest of `test_util.py` (`logError`, `production`, `axonRaise`, `removeAll`, `listSubset`,
//!   `testInterface`, `safeList`, `Finality`): Python helpers with no counterpart; the standard
//!   library and the type system cover them.

use std::cell::Cell;
use std::collections::HashSet;
use std::rc::Rc;

use axon::{Boxes, Component, Core, FnComponent, Inbox, Ipc, Scheduler};

type B = Boxes<String, String>;

fn comp(kind: &'static str) -> B {
    Boxes::new(kind)
}

/// test_SmokeTest_NoArguments
#[test]
fn new_component_has_the_four_default_boxes_and_nothing_else() {
    let c = comp("Test");
    let names = |v: Vec<(String, String)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names(c.core.inboxes()), ["inbox", "control"]);
    assert_eq!(names(c.core.outboxes()), ["outbox", "signal"]);
    assert!(c.core.inboxes().iter().all(|(_, d)| !d.is_empty()));
    assert!(c.inbox.is_empty() && c.control.is_empty());
    assert!(!c.outbox.is_linked() && !c.signal.is_linked());
    assert!(c.core.children().is_empty());
    assert!(c.core.linkages().is_empty());
    assert_eq!(c.core.any_ready(), None);
    assert!(!c.core.is_activated());
}

/// test___str__strict
#[test]
fn display_shows_the_name_then_inboxes_then_outboxes() {
    let c = comp("TComponent");
    assert_eq!(
        c.core.to_string(),
        format!(
            "Component TComponent_{} [ inboxes : [\"inbox\", \"control\"] outboxes : [\"outbox\", \"signal\"] ]",
            c.core.id().0
        )
    );
    let (name, _extra): (_, Inbox<u8>) = c.core.add_inbox("extra", "added later");
    assert!(c
        .core
        .to_string()
        .contains(&format!("\"control\", \"{name}\"]")));
}

/// test___str__relaxed
#[test]
fn display_says_it_is_a_component_and_gives_its_name() {
    let c = comp("TComponent");
    let s = c.core.to_string();
    assert!(s.starts_with("Component "));
    assert!(s.contains(&c.core.name()));
}

/// test___str__ (test___str__.py, test_util.py: `str()` unique per instance and stable)
#[test]
fn names_and_strings_are_unique_per_instance_and_stable() {
    let cores: Vec<Core> = (0..50).map(|_| Core::new("Same")).collect();
    let names: HashSet<String> = cores.iter().map(Core::name).collect();
    let strings: HashSet<String> = cores.iter().map(ToString::to_string).collect();
    assert_eq!(
        names.len(),
        50,
        "same kind, different instances, different names"
    );
    assert_eq!(strings.len(), 50);

    let c = FnComponent::<(), (), _>::new("Stable", |_b| async {});
    let core = c.core().clone();
    let (name, text) = (core.name(), core.to_string());
    assert_eq!(core.clone().name(), name, "clones are the same component");
    let sched = Scheduler::new();
    sched.activate(c);
    assert_eq!(core.name(), name, "unchanged by activation");
    sched.run();
    assert!(core.is_finished());
    assert_eq!(core.name(), name, "unchanged by finishing");
    assert_eq!(core.to_string(), text);
}

/// test_addChildren, test___addChild
#[test]
fn add_children_makes_every_argument_a_child_once_without_activating_it() {
    let parent = Core::new("Parent");
    let (c1, c2) = (Core::new("Child"), Core::new("Child"));
    parent.add_children([&c1, &c2]);
    let children = parent.children();
    assert_eq!(children, [c1.clone(), c2.clone()]);
    assert!(!c1.is_activated() && !c2.is_activated());
}

/// test_childComponents
#[test]
fn children_lists_every_child() {
    let parent = Core::new("Parent");
    let kids: Vec<Core> = (0..3).map(|_| Core::new("Child")).collect();
    parent.add_children(&kids);
    assert_eq!(parent.children(), kids);
    assert!(kids.iter().all(|k| k.children().is_empty()));
}

/// test_removeChild
#[test]
fn remove_child_forgets_it_and_removes_the_parents_links_involving_it() {
    let parent = comp("Parent");
    let (a, b, other) = (comp("A"), comp("B"), comp("Other"));
    parent.core.add_children([&a.core, &b.core, &other.core]);
    let into_a = parent.core.link(&parent.inbox, &a.inbox).unwrap();
    let a_to_b = parent.core.link(&a.outbox, &b.inbox).unwrap();
    let b_out = parent.core.link(&b.outbox, &parent.outbox).unwrap();
    let other_sig = parent.core.link(&other.signal, &b.control).unwrap();
    // A link involving `a` made by someone else is not the parent's to remove.
    let by_a = a.core.link(&a.signal, &other.control).unwrap();

    parent.core.remove_child(&a.core);

    assert_eq!(parent.core.children(), [b.core.clone(), other.core.clone()]);
    assert!(!into_a.is_live() && !a_to_b.is_live());
    assert!(b_out.is_live() && other_sig.is_live() && by_a.is_live());
    assert_eq!(parent.core.linkages(), [b_out, other_sig]);
    parent.inbox.deliver("to parent".into()).unwrap();
    assert_eq!(parent.inbox.recv_now().as_deref(), Some("to parent"));
    assert!(a.inbox.is_empty());
}

/// test_removeChild, test___addChild (a child ending wakes its parent; a removed child does not)
#[test]
fn a_child_ending_wakes_its_parent_unless_removed() {
    fn parent_counting_wakes() -> (impl Component, Rc<Cell<u32>>) {
        let wakes = Rc::new(Cell::new(0));
        let w = wakes.clone();
        let p = FnComponent::<(), (), _>::new("Parent", move |b| async move {
            loop {
                b.core.pause().await;
                w.set(w.get() + 1);
            }
        });
        (p, wakes)
    }
    let sched = Scheduler::new();
    let (parent, wakes) = parent_counting_wakes();
    let (removed_parent, removed_wakes) = parent_counting_wakes();
    let child = FnComponent::<(), (), _>::new("Child", |b| async move {
        b.core.pause().await; // until the test wakes it
    });
    let removed_child = FnComponent::<(), (), _>::new("Child", |b| async move {
        b.core.pause().await;
    });
    parent.core().add_child(child.core());
    Component::core(&removed_parent).add_child(removed_child.core());
    Component::core(&removed_parent).remove_child(removed_child.core());
    let (child, removed_child) = (sched.activate(child), sched.activate(removed_child));
    sched.activate(parent);
    sched.activate(removed_parent);
    sched.run_until_idle(10);
    assert_eq!((wakes.get(), removed_wakes.get()), (0, 0));

    sched.wake(child.id());
    sched.wake(removed_child.id());
    sched.run_until_idle(10);
    assert!(child.is_finished() && removed_child.is_finished());
    assert_eq!(wakes.get(), 1, "the parent was woken by its child ending");
    assert_eq!(removed_wakes.get(), 0, "a removed child no longer wakes it");
}

/// Axon's `TComponent`: a component whose constructor links `tc1` outbox→`tc2` inbox and
/// signal→control.
fn tcomponent() -> (B, B, B) {
    let t = comp("TComponent");
    let (tc1, tc2) = (comp("tc1"), comp("tc2"));
    t.core.link(&tc1.outbox, &tc2.inbox).unwrap();
    t.core.link(&tc1.signal, &tc2.control).unwrap();
    (t, tc1, tc2)
}

/// `signal` and `control` carry [`Ipc`]; the strings Axon's tests send there become `status`.
fn status(s: &str) -> Ipc {
    Ipc::Status(s.to_owned())
}

fn text(m: Option<Ipc>) -> Option<String> {
    m.map(|m| m.to_string())
}

/// test_dataReady
#[test]
fn data_ready_tracks_whether_an_inbox_holds_messages() {
    let (_t, tc1, tc2) = tcomponent();
    assert!(!tc2.inbox.data_ready() && !tc2.core.data_ready("inbox"));
    tc1.outbox.send("a".into()).unwrap();
    assert!(tc2.inbox.data_ready() && tc2.core.data_ready("inbox"));
    assert_eq!(tc2.core.any_ready().as_deref(), Some("inbox"));
    tc2.inbox.recv_now();
    assert!(!tc2.inbox.data_ready() && !tc2.core.data_ready("inbox"));
    tc1.outbox.send("b".into()).unwrap();
    tc1.outbox.send("c".into()).unwrap();
    tc2.inbox.recv_now();
    assert!(
        tc2.core.data_ready("inbox"),
        "still data after a double send"
    );
    tc2.inbox.recv_now();
    assert!(!tc2.core.data_ready("inbox"));

    assert!(!tc2.core.data_ready("control"));
    tc1.signal.send(status("a")).unwrap();
    assert!(tc2.control.data_ready() && tc2.core.data_ready("control"));
    assert!(!tc2.core.data_ready("inbox"), "only the box written to");
    assert_eq!(tc2.core.any_ready().as_deref(), Some("control"));
    tc2.control.recv_now();
    assert!(!tc2.core.data_ready("control"));
    tc1.signal.send(status("b")).unwrap();
    tc1.signal.send(status("c")).unwrap();
    tc2.control.recv_now();
    assert!(tc2.core.data_ready("control"));
    tc2.control.recv_now();
    assert!(!tc2.core.data_ready("control"));
    assert_eq!(tc2.core.any_ready(), None);
    assert!(!tc2.core.data_ready("no such box"));
}

/// test_link
#[test]
fn link_records_each_linkage_with_its_ends_and_passthrough_mode() {
    let parent = comp("Parent");
    let (ac, bc) = (comp("A"), comp("B"));
    parent.core.add_children([&ac.core, &bc.core]);
    parent.core.link(&ac.outbox, &bc.inbox).unwrap();
    parent.core.link(&bc.outbox, &parent.outbox).unwrap();
    parent.core.link(&parent.inbox, &ac.inbox).unwrap();
    let recorded: Vec<_> = parent
        .core
        .linkages()
        .iter()
        .map(|l| (l.source_pair(), l.sink_pair(), l.passthrough()))
        .collect();
    let end = |c: &B, n: &str| (Some(c.core.id()), n.to_owned());
    assert_eq!(
        recorded,
        [
            (end(&ac, "outbox"), end(&bc, "inbox"), 0),
            (end(&bc, "outbox"), end(&parent, "outbox"), 2),
            (end(&parent, "inbox"), end(&ac, "inbox"), 1),
        ]
    );
    assert!(ac.core.linkages().is_empty() && bc.core.linkages().is_empty());
}

/// test_recv
#[test]
fn recv_now_takes_messages_oldest_first_and_none_when_empty() {
    let (_t, tc1, tc2) = tcomponent();
    assert_eq!(tc2.inbox.recv_now(), None);
    tc1.outbox.send("inbox1".into()).unwrap();
    tc1.outbox.send("inbox2".into()).unwrap();
    assert_eq!(tc2.inbox.recv_now().as_deref(), Some("inbox1"));
    assert_eq!(tc2.inbox.recv_now().as_deref(), Some("inbox2"));
    assert_eq!(tc2.inbox.recv_now(), None);
    tc1.signal.send(status("control1")).unwrap();
    tc1.signal.send(status("control2")).unwrap();
    assert_eq!(
        text(tc2.control.recv_now()).as_deref(),
        Some("status(control1)")
    );
    assert_eq!(
        text(tc2.control.recv_now()).as_deref(),
        Some("status(control2)")
    );
    assert!(tc2.control.recv_now().is_none());
    assert!(tc2.inbox.is_empty(), "the other inbox was not touched");
}

/// test_send
#[test]
fn send_delivers_in_order_and_an_unlinked_send_is_dropped() {
    let (_t, tc1, tc2) = tcomponent();
    tc1.outbox.send("ba".into()).unwrap();
    assert_eq!(tc2.inbox.recv_now().as_deref(), Some("ba"));
    tc1.signal.send(status("bing")).unwrap();
    tc1.signal.send(status("boom")).unwrap();
    assert_eq!(
        tc2.control
            .drain()
            .map(|m| m.to_string())
            .collect::<Vec<_>>(),
        ["status(bing)", "status(boom)"]
    );
    for x in 0..1000 {
        tc1.outbox.send(x.to_string()).unwrap();
        assert_eq!(tc2.inbox.recv_now(), Some(x.to_string()));
    }
    for x in 0..1000 {
        tc1.outbox.send(x.to_string()).unwrap();
    }
    assert!(tc2.inbox.drain().eq((0..1000).map(|x| x.to_string())));

    let lonely = comp("Lonely");
    assert!(lonely.outbox.send("nowhere".into()).is_ok(), "a null sink");
    assert!(lonely.inbox.is_empty());
    assert!(lonely.outbox.has_room());
}

/// test_linkagesRemovedOnComponentShutdown
#[test]
fn linkages_a_component_made_are_removed_when_it_finishes() {
    let (a, b, d) = (comp("a"), comp("b"), comp("d"));
    let c = FnComponent::<String, String, _>::new("c", |_b| async {});
    let cb = c.boxes();
    cb.core.link(&a.outbox, &b.inbox).unwrap();
    cb.core.link(&cb.outbox, &b.outbox).unwrap();
    cb.core.link(&cb.inbox, &a.inbox).unwrap();
    d.core.link(&d.outbox, &cb.inbox).unwrap();
    d.core.link(&b.outbox, &d.inbox).unwrap();

    let msg = || "hello".to_owned();
    d.outbox.send(msg()).unwrap();
    assert_eq!(a.inbox.recv_now(), Some(msg()));
    cb.outbox.send(msg()).unwrap();
    assert_eq!(d.inbox.recv_now(), Some(msg()));
    a.outbox.send(msg()).unwrap();
    assert_eq!(b.inbox.recv_now(), Some(msg()));

    let (c_in, c_out) = (cb.inbox.clone(), cb.outbox.clone());
    let sched = Scheduler::new();
    let c = sched.activate(c);
    sched.run();
    assert!(c.is_finished());
    assert!(c.linkages().is_empty());

    let bye = || "bye".to_owned();
    d.outbox.send(bye()).unwrap();
    assert_eq!(c_in.recv_now(), Some(bye()), "d's link into c remains");
    assert!(!a.inbox.data_ready(), "c's passthrough into a is gone");
    c_out.send(bye()).unwrap();
    assert!(!d.inbox.data_ready(), "c's outbox passthrough is gone");
    b.outbox.send(bye()).unwrap();
    assert_eq!(d.inbox.recv_now(), Some(bye()), "d's link from b remains");
    a.outbox.send(bye()).unwrap();
    assert!(!b.inbox.data_ready(), "c's link a->b is gone");
    assert_eq!(d.core.linkages().len(), 2);
    assert!(d.core.linkages().iter().all(|l| l.is_live()));
}

/// test_linkagesRemovedOnComponentShutdown (a link c made, later cut and remade by someone else,
/// is not c's to remove)
#[test]
fn finishing_leaves_alone_a_link_someone_else_remade_between_the_same_boxes() {
    let (a, b, d) = (comp("a"), comp("b"), comp("d"));
    let c = FnComponent::<String, String, _>::new("c", |_b| async {});
    let old = c.core().link(&a.outbox, &b.inbox).unwrap();
    a.outbox.unlink();
    assert!(!old.is_live());
    let remade = d.core.link(&a.outbox, &b.inbox).unwrap();
    assert!(remade.is_live());
    assert!(!old.is_live(), "the old handle is for the old link");

    let sched = Scheduler::new();
    sched.activate(c);
    sched.run();
    assert!(remade.is_live(), "d's link survives c finishing");
    a.outbox.send("still linked".into()).unwrap();
    assert_eq!(b.inbox.recv_now().as_deref(), Some("still linked"));
}
