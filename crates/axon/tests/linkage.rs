//! Ports `Tests/Python/Axon/test_Linkage.py` (`linkage_Test`), plus the checks a typed port adds:
//! linking by name reports bad types, names and directions with both ends named.
//!
//! Dropped on purpose:
//! * `test_init_noArgs` ("construction without arguments raises TypeError"): a linkage can only be
//!   made by [`axon::link`] / [`Core::link`] from two boxes; wrong pairs and wrong types do not
//!   compile (the `compile_fail` doctests on `axon::Linkable` cover that).
//! * The `pipewidth` / `synchronous` construction arguments: sizes are set on the sink inbox
//!   (`tests/postoffice.rs`).

use axon::{Boxes, Core, Error, Inbox, Outbox};

type B = Boxes<String, String>;

fn comp(kind: &'static str) -> B {
    Boxes::new(kind)
}

/// test_init_minArgs
#[test]
fn a_minimal_link_goes_from_outbox_to_inbox() {
    let (a, b) = (comp("A"), comp("B"));
    let l = axon::link(&a.outbox, &b.inbox).unwrap();
    assert_eq!(l.passthrough(), 0);
    assert_eq!(l.source_pair(), (Some(a.core.id()), "outbox".to_owned()));
    assert_eq!(l.sink_pair(), (Some(b.core.id()), "inbox".to_owned()));
    assert!(l.is_live());
}

/// test_init_specificBoxes
#[test]
fn a_link_can_join_named_boxes() {
    let (a, b) = (comp("A"), comp("B"));
    let po = Core::new("Po");
    let l = po
        .link_named((&a.core, "signal"), (&b.core, "control"))
        .unwrap();
    assert_eq!(l.source_pair(), (Some(a.core.id()), "signal".to_owned()));
    assert_eq!(l.sink_pair(), (Some(b.core.id()), "control".to_owned()));
    assert_eq!(po.linkages(), [l]);
    a.signal.send(axon::Ipc::producer_finished()).unwrap();
    assert!(b
        .control
        .recv_now()
        .is_some_and(|m| m.is_producer_finished()));
}

/// test_init_passthrough0, test_init_passthrough1, test_init_passthrough2
#[test]
fn the_passthrough_mode_follows_the_kinds_of_box_linked() {
    let (a, b) = (comp("A"), comp("B"));
    let po = Core::new("Po");
    let cases = [
        (("outbox", "inbox"), 0),
        (("inbox", "inbox"), 1),
        (("signal", "signal"), 2),
    ];
    for ((src, dst), mode) in cases {
        let l = po.link_named((&a.core, src), (&b.core, dst)).unwrap();
        assert_eq!(l.passthrough(), mode, "{src} -> {dst}");
        assert_eq!(l.source_pair().1, src);
        assert_eq!(l.sink_pair().1, dst);
    }
    // The typed forms agree.
    let (c, d) = (comp("C"), comp("D"));
    assert_eq!(axon::link(&c.outbox, &d.inbox).unwrap().passthrough(), 0);
    assert_eq!(c.inbox.link_to(&d.inbox).unwrap().passthrough(), 1);
    assert_eq!(c.signal.link_to(&d.signal).unwrap().passthrough(), 2);
}

/// test_sourcePair, test_sinkPair
#[test]
fn source_and_sink_pairs_name_the_owner_and_box() {
    let (a, b) = (comp("A"), comp("B"));
    let l = axon::link(&a.signal, &b.control).unwrap();
    assert_eq!(l.source_pair(), (Some(a.core.id()), "signal".to_owned()));
    assert_eq!(l.sink_pair(), (Some(b.core.id()), "control".to_owned()));
    assert!(l.involves(a.core.id()) && l.involves(b.core.id()));
    assert!(!l.involves(Core::new("C").id()));
}

/// test___str__
#[test]
fn display_is_axons_link_format() {
    let (a, b) = (comp("A"), comp("B"));
    let l = axon::link(&a.signal, &b.control).unwrap();
    let expected = format!(
        "Link( source:[{},signal], sink:[{},control] )",
        a.core.name(),
        b.core.name()
    );
    assert_eq!(l.to_string(), expected);
    assert_eq!(format!("{l:?}"), expected);
}

/// test_init_specificBoxes (linking by name checks the message types and names both ends)
#[test]
fn linking_boxes_of_different_types_by_name_fails_naming_both() {
    let a = Core::new("A");
    let b = Core::new("B");
    let out: Outbox<u32> = a.outbox("outbox", "numbers");
    let _inb: Inbox<String> = b.inbox("inbox", "text");
    let err = a.link_named((&a, "outbox"), (&b, "inbox")).unwrap_err();
    let Error::TypeMismatch {
        source,
        source_type,
        sink,
        sink_type,
    } = &err
    else {
        panic!("expected TypeMismatch, got {err:?}");
    };
    assert_eq!(source, &format!("{}.outbox", a.name()));
    assert_eq!(sink, &format!("{}.inbox", b.name()));
    assert!(source_type.contains("u32") && sink_type.contains("String"));
    let text = err.to_string();
    assert!(
        text.contains(&a.name()) && text.contains(&b.name()),
        "{text}"
    );
    assert!(a.linkages().is_empty());
    assert!(!out.is_linked());
}

/// test_init_specificBoxes (an unknown box name is reported, not a panic)
#[test]
fn linking_an_unknown_box_by_name_fails() {
    let (a, b) = (comp("A"), comp("B"));
    assert_eq!(
        a.core
            .link_named((&a.core, "nope"), (&b.core, "inbox"))
            .unwrap_err(),
        Error::NoSuchBox {
            component: a.core.name(),
            name: "nope".into()
        }
    );
    assert_eq!(
        a.core
            .link_named((&a.core, "outbox"), (&b.core, "nope"))
            .unwrap_err(),
        Error::NoSuchBox {
            component: b.core.name(),
            name: "nope".into()
        }
    );
    assert!(!a.outbox.is_linked());
}

/// test_init_passthrough* (inbox → outbox is no passthrough mode)
#[test]
fn linking_an_inbox_to_an_outbox_by_name_fails() {
    let (a, b) = (comp("A"), comp("B"));
    assert_eq!(
        a.core
            .link_named((&a.core, "inbox"), (&b.core, "outbox"))
            .unwrap_err(),
        Error::InvalidDirection {
            source: format!("{}.inbox", a.core.name()),
            sink: format!("{}.outbox", b.core.name()),
        }
    );
}

/// A chain that would loop back on itself is refused.
#[test]
fn a_link_that_would_close_a_loop_is_refused() {
    let (a, b, c) = (comp("A"), comp("B"), comp("C"));
    a.inbox.link_to(&b.inbox).unwrap();
    b.inbox.link_to(&c.inbox).unwrap();
    assert!(matches!(
        c.inbox.link_to(&a.inbox),
        Err(Error::LinkCycle { .. })
    ));
    assert!(matches!(
        a.outbox.link_to(&a.outbox),
        Err(Error::LinkCycle { .. })
    ));
    a.inbox.deliver("still works".into()).unwrap();
    assert_eq!(c.inbox.recv_now().as_deref(), Some("still works"));
}

/// Dropping a linkage handle does not cut the link; unlinking twice does nothing.
#[test]
fn a_linkage_handle_controls_only_its_own_link() {
    let (a, b, c) = (comp("A"), comp("B"), comp("C"));
    drop(axon::link(&a.outbox, &b.inbox).unwrap());
    a.outbox.send("kept".into()).unwrap();
    assert_eq!(b.inbox.recv_now().as_deref(), Some("kept"));
    a.outbox.unlink();

    let l = axon::link(&a.outbox, &c.inbox).unwrap();
    assert_eq!(l.clone(), l);
    l.unlink();
    l.unlink();
    assert!(!l.is_live());
    let again = axon::link(&a.outbox, &c.inbox).unwrap();
    assert_ne!(again, l);
    assert!(!l.is_live(), "an old handle does not describe a new link");
    l.unlink(); // a stale handle cuts nothing
    assert!(again.is_live());
    a.outbox.send("new link".into()).unwrap();
    assert_eq!(c.inbox.recv_now().as_deref(), Some("new link"));
}

/// Many outboxes feed one inbox (a selector's or a server's, one per open connection), and they
/// are cut in an order unlike the order they were linked, some relinked, some dropped without an
/// unlink: after every step each outbox still linked delivers to the inbox, each one cut does not.
#[test]
fn cutting_any_of_many_links_into_one_inbox_leaves_the_others_delivering() {
    let sink = comp("Sink");
    let mut feeders: Vec<Option<(B, axon::Linkage)>> = (0..100)
        .map(|_| {
            let f = comp("Feeder");
            let l = axon::link(&f.outbox, &sink.inbox).unwrap();
            Some((f, l))
        })
        .collect();
    let check = |feeders: &[Option<(B, axon::Linkage)>]| {
        for (i, f) in feeders.iter().enumerate() {
            if let Some((f, l)) = f {
                assert!(l.is_live(), "feeder {i} is still linked");
                f.outbox.send(format!("from {i}")).unwrap();
                assert_eq!(sink.inbox.recv_now(), Some(format!("from {i}")));
            }
        }
        assert_eq!(sink.inbox.recv_now(), None);
    };
    check(&feeders);
    for step in 0..100usize {
        let i = (step * 37) % 100; // every index once, scattered
        let Some((f, l)) = feeders[i].take() else {
            continue;
        };
        match step % 4 {
            // Cut, and the cut outbox no longer reaches the sink.
            0 | 1 => {
                l.unlink();
                assert!(!l.is_live());
                f.outbox.send("cut".to_owned()).unwrap();
                assert_eq!(sink.inbox.recv_now(), None);
            }
            // Cut and linked again: a new linkage, in a new place in the sink's list.
            2 => {
                l.unlink();
                let again = axon::link(&f.outbox, &sink.inbox).unwrap();
                feeders[i] = Some((f, again));
            }
            // Dropped without an unlink: the sink forgets it when its list is next tidied.
            _ => drop((f, l)),
        }
        check(&feeders);
    }
    // Linking more after all that still works (the list is tidied as it grows).
    let late: Vec<(B, axon::Linkage)> = (0..300)
        .map(|_| {
            let f = comp("Late");
            let l = axon::link(&f.outbox, &sink.inbox).unwrap();
            (f, l)
        })
        .collect();
    for (f, l) in late.iter().rev() {
        f.outbox.send("late".to_owned()).unwrap();
        assert_eq!(sink.inbox.recv_now(), Some("late".to_owned()));
        l.unlink();
    }
    check(&feeders);
}
