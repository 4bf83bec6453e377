//! Ports `Tests/Python/Axon/test_Postoffice.py`: `postoffice_Test`, `linkagechaining_Test` and
//! `SizeLimitedBoxes_Test`.
//!
//! A component's postoffice is the list of linkages it made: [`Core::link`], [`Core::linkages`],
//! [`Core::unlink`], [`Core::unlink_component`], [`Core::unlink_all`].
//!
//! Dropped on purpose:
//! * `test___str__` and the `debugname` variant of `test_init` (postoffice_Test): there is no
//!   postoffice object to print or name; each linkage prints itself (`tests/linkage.rs`).
//! * The mock-based halves of `test_linkestablishes` / `test_linkdisengages` ("only the sink's
//!   `addsource` / `removesource` is called"): they spy on Axon internals. Their observable intent
//!   is kept: after linking, messages flow in each passthrough mode and the sink gains no target;
//!   after unlinking, they stop.

use axon::{Boxes, Core, Error, Inbox, Outbox};

type B = Boxes<String, String>;

fn comp(kind: &'static str) -> B {
    Boxes::new(kind)
}

fn msg(s: &str) -> String {
    s.to_owned()
}

// ---------------------------------------------------------------------------------------------
// postoffice_Test

/// test_init
#[test]
fn a_new_postoffice_is_empty() {
    assert!(Core::new("Fresh").linkages().is_empty());
    assert!(comp("Fresh").core.linkages().is_empty());
}

/// test_linkestablishes (outbox → inbox, passthrough 0)
#[test]
fn linking_outbox_to_inbox_delivers() {
    let (po, a, b) = (Core::new("Po"), comp("A"), comp("B"));
    let l = po.link(&a.outbox, &b.inbox).unwrap();
    assert_eq!(l.passthrough(), 0);
    assert!(l.is_live() && a.outbox.is_linked());
    a.outbox.send(msg("x")).unwrap();
    assert_eq!(b.inbox.recv_now(), Some(msg("x")));
}

/// test_linkestablishes (inbox → inbox, passthrough 1)
#[test]
fn linking_inbox_to_inbox_forwards() {
    let (po, a, b) = (Core::new("Po"), comp("A"), comp("B"));
    let l = po.link(&a.inbox, &b.inbox).unwrap();
    assert_eq!(l.passthrough(), 1);
    a.inbox.deliver(msg("x")).unwrap();
    assert!(
        !a.inbox.data_ready(),
        "the forwarded inbox holds nothing itself"
    );
    assert_eq!(b.inbox.recv_now(), Some(msg("x")));
}

/// test_linkestablishes (outbox → outbox, passthrough 2)
#[test]
fn linking_outbox_to_outbox_exposes_it() {
    let (po, a, b, c) = (Core::new("Po"), comp("A"), comp("B"), comp("C"));
    let l = po.link(&a.outbox, &b.outbox).unwrap();
    assert_eq!(l.passthrough(), 2);
    assert!(
        !b.outbox.is_linked(),
        "the sink gains a source, not a target"
    );
    a.outbox.send(msg("dropped")).unwrap(); // b.outbox goes nowhere yet
    po.link(&b.outbox, &c.inbox).unwrap();
    a.outbox.send(msg("x")).unwrap();
    assert_eq!(c.inbox.drain().collect::<Vec<_>>(), [msg("x")]);
}

/// test_linkregistered
#[test]
fn link_registers_the_linkage_with_its_maker() {
    let (po, a, b) = (Core::new("Po"), comp("A"), comp("B"));
    let l = po.link(&a.outbox, &b.inbox).unwrap();
    assert_eq!(po.linkages(), [l]);
    assert!(a.core.linkages().is_empty() && b.core.linkages().is_empty());
    let unrecorded = axon::link(&b.outbox, &a.inbox).unwrap();
    assert!(unrecorded.is_live());
    assert_eq!(po.linkages().len(), 1, "a bare link is nobody's");
}

/// test_linkderegisters
#[test]
fn unlink_removes_only_that_linkage() {
    let (po, a, b) = (Core::new("Po"), comp("A"), comp("B"));
    let l1 = po.link(&a.outbox, &b.inbox).unwrap();
    let l2 = po.link(&b.outbox, &a.inbox).unwrap();
    let l3 = po.link(&a.signal, &b.control).unwrap();
    po.unlink(&l2);
    assert_eq!(po.linkages(), [l1.clone(), l3.clone()]);
    assert!(l1.is_live() && !l2.is_live() && l3.is_live());
    b.outbox.send(msg("x")).unwrap();
    assert!(a.inbox.is_empty());
    a.outbox.send(msg("y")).unwrap();
    assert_eq!(b.inbox.recv_now(), Some(msg("y")));
    po.unlink(&l2); // twice: nothing
    assert_eq!(po.linkages().len(), 2);
}

/// test_componentlinksderegisters
#[test]
fn unlink_component_removes_exactly_the_links_involving_it() {
    let (po, a, b, c) = (Core::new("Po"), comp("A"), comp("B"), comp("C"));
    let ab = po.link(&a.outbox, &b.inbox).unwrap();
    let ca = po.link(&c.outbox, &a.inbox).unwrap();
    let bc = po.link(&b.outbox, &c.inbox).unwrap();
    let ab_sig = po.link(&a.signal, &b.control).unwrap();
    // A link involving `a` that `po` did not make stays.
    let by_c = c.core.link(&b.signal, &a.control).unwrap();
    po.unlink_component(&a.core);
    assert_eq!(po.linkages(), std::slice::from_ref(&bc));
    assert!(!ab.is_live() && !ca.is_live() && !ab_sig.is_live());
    assert!(bc.is_live() && by_c.is_live());
    assert_eq!(c.core.linkages(), [by_c]);
}

/// test_linkdisengages (all three passthrough modes)
#[test]
fn an_unlinked_linkage_no_longer_carries_messages() {
    let (po, a, b, c) = (Core::new("Po"), comp("A"), comp("B"), comp("C"));
    let mode0 = po.link(&a.outbox, &b.inbox).unwrap();
    let mode1 = po.link(&b.inbox, &c.inbox).unwrap();
    let mode2 = po.link(&c.outbox, &a.outbox).unwrap();
    a.outbox.send(msg("through both")).unwrap();
    assert_eq!(c.inbox.recv_now(), Some(msg("through both")));
    c.outbox.send(msg("via a")).unwrap();
    assert_eq!(
        c.inbox.recv_now(),
        Some(msg("via a")),
        "c.outbox -> a.outbox -> b.inbox -> c.inbox"
    );

    po.unlink(&mode1);
    a.outbox.send(msg("stops at b")).unwrap();
    assert_eq!(b.inbox.recv_now(), Some(msg("stops at b")));
    assert!(c.inbox.is_empty());

    po.unlink(&mode2);
    c.outbox.send(msg("dropped")).unwrap();
    assert!(b.inbox.is_empty() && c.inbox.is_empty());

    po.unlink(&mode0);
    a.outbox.send(msg("dropped")).unwrap();
    assert!(a.inbox.is_empty() && b.inbox.is_empty() && c.inbox.is_empty());
    assert!(!a.outbox.is_linked() && !c.outbox.is_linked());
    assert!(po.linkages().is_empty());
}

/// test_BoxAlreadyLinkedToDestinationException
#[test]
fn a_linked_source_cannot_be_linked_again_until_unlinked() {
    let (po, a, b, c) = (Core::new("Po"), comp("A"), comp("B"), comp("C"));
    let first = po.link(&a.outbox, &b.inbox).unwrap();
    let err = po.link(&a.outbox, &c.inbox).unwrap_err();
    assert_eq!(
        err,
        Error::BoxAlreadyLinked {
            source: format!("{}.outbox", a.core.name()),
            current_sink: format!("{}.inbox", b.core.name()),
        }
    );
    assert_eq!(
        po.linkages(),
        std::slice::from_ref(&first),
        "the failed link is not recorded"
    );
    a.outbox.send(msg("x")).unwrap();
    assert_eq!(
        b.inbox.recv_now(),
        Some(msg("x")),
        "the first link is untouched"
    );
    // Many-to-one is fine.
    po.link(&c.outbox, &b.inbox).unwrap();
    po.unlink(&first);
    po.link(&a.outbox, &c.inbox).unwrap();
    a.outbox.send(msg("y")).unwrap();
    assert_eq!(c.inbox.recv_now(), Some(msg("y")));
    assert!(b.inbox.is_empty());
}

/// test_unlinkAll (`postoffice.unlinkAll`, used at close-down)
#[test]
fn unlink_all_removes_every_linkage_the_component_made_and_no_other() {
    let (po, a, b) = (Core::new("Po"), comp("A"), comp("B"));
    let (_, strings): (_, Inbox<String>) = b.core.add_inbox("strings", "a second string inbox");
    let mine = [
        po.link(&a.outbox, &b.inbox).unwrap(),
        po.link(&a.inbox, &strings).unwrap(),
    ];
    let theirs = b.core.link(&b.outbox, &a.inbox).unwrap();
    po.unlink_all();
    assert!(po.linkages().is_empty());
    assert!(mine.iter().all(|l| !l.is_live()));
    assert!(theirs.is_live());
}

// ---------------------------------------------------------------------------------------------
// linkagechaining_Test

/// test_Simple
#[test]
fn chain_outbox_to_inbox() {
    let (po, src, dst) = (Core::new("Po"), comp("Src"), comp("Dst"));
    po.link(&src.outbox, &dst.inbox).unwrap();
    for i in 0..5 {
        src.outbox.send(i.to_string()).unwrap();
    }
    assert!(dst.inbox.drain().eq((0..5).map(|i| i.to_string())));
}

/// The three-box chain of the passthrough tests, linked in the given order.
fn inbox_chain(simple_first: bool) -> (B, B, B) {
    let (po, src, mid, dst) = (Core::new("Po"), comp("Src"), comp("Mid"), comp("Dst"));
    if simple_first {
        po.link(&src.outbox, &mid.inbox).unwrap();
        po.link(&mid.inbox, &dst.inbox).unwrap();
    } else {
        po.link(&mid.inbox, &dst.inbox).unwrap();
        po.link(&src.outbox, &mid.inbox).unwrap();
    }
    (src, mid, dst)
}

/// test_SimpleThenInboxPassthrough, test_InboxPassthroughThenNormal
#[test]
fn chain_outbox_to_inbox_to_inbox_reaches_the_end_in_either_link_order() {
    for simple_first in [true, false] {
        let (src, mid, dst) = inbox_chain(simple_first);
        src.outbox.send(msg("a")).unwrap();
        src.outbox.send(msg("b")).unwrap();
        assert!(mid.inbox.is_empty(), "order {simple_first}");
        assert_eq!(dst.inbox.drain().collect::<Vec<_>>(), [msg("a"), msg("b")]);
    }
}

/// test_SimpleThenOutboxPassthrough, test_OutboxPassthroughThenNormal
#[test]
fn chain_outbox_to_outbox_to_inbox_reaches_the_end_in_either_link_order() {
    for simple_first in [true, false] {
        let (po, src, mid, dst) = (Core::new("Po"), comp("Src"), comp("Mid"), comp("Dst"));
        if simple_first {
            po.link(&mid.outbox, &dst.inbox).unwrap();
            po.link(&src.outbox, &mid.outbox).unwrap();
        } else {
            po.link(&src.outbox, &mid.outbox).unwrap();
            po.link(&mid.outbox, &dst.inbox).unwrap();
        }
        src.outbox.send(msg("a")).unwrap();
        mid.outbox.send(msg("b")).unwrap();
        assert_eq!(dst.inbox.drain().collect::<Vec<_>>(), [msg("a"), msg("b")]);
    }
}

/// test_InboxPassthrougthDeletion
#[test]
fn removing_an_inbox_passthrough_stops_delivery_at_the_middle_inbox() {
    let (po, src, mid, dst) = (Core::new("Po"), comp("Src"), comp("Mid"), comp("Dst"));
    po.link(&src.outbox, &mid.inbox).unwrap();
    let pass = po.link(&mid.inbox, &dst.inbox).unwrap();
    src.outbox.send(msg("before")).unwrap();
    po.unlink(&pass);
    src.outbox.send(msg("after")).unwrap();
    assert_eq!(
        dst.inbox.drain().collect::<Vec<_>>(),
        [msg("before")],
        "delivered stays put"
    );
    assert_eq!(mid.inbox.drain().collect::<Vec<_>>(), [msg("after")]);
}

/// test_InboxPassthrougthDeletion (a longer chain cut in the middle, then relinked elsewhere)
#[test]
fn cutting_a_long_chain_redirects_everything_upstream_of_the_cut() {
    let (po, s1, s2, m, t1, t2) = (
        Core::new("Po"),
        comp("S1"),
        comp("S2"),
        comp("M"),
        comp("T1"),
        comp("T2"),
    );
    po.link(&s1.outbox, &s2.outbox).unwrap();
    po.link(&s2.outbox, &m.inbox).unwrap();
    let cut = po.link(&m.inbox, &t1.inbox).unwrap();
    s1.outbox.send(msg("1")).unwrap();
    assert_eq!(t1.inbox.recv_now(), Some(msg("1")));
    po.unlink(&cut);
    po.link(&m.inbox, &t2.inbox).unwrap();
    s1.outbox.send(msg("2")).unwrap();
    s2.outbox.send(msg("3")).unwrap();
    m.inbox.deliver(msg("4")).unwrap();
    assert!(t1.inbox.is_empty());
    assert_eq!(
        t2.inbox.drain().collect::<Vec<_>>(),
        [msg("2"), msg("3"), msg("4")]
    );
}

/// Axon's link: messages already waiting in the source's own storage move on to the new sink.
#[test]
fn linking_an_inbox_onwards_moves_what_it_already_holds() {
    let (po, mid, dst) = (Core::new("Po"), comp("Mid"), comp("Dst"));
    mid.inbox.deliver(msg("early")).unwrap();
    dst.inbox.deliver(msg("already there")).unwrap();
    po.link(&mid.inbox, &dst.inbox).unwrap();
    assert!(mid.inbox.is_empty());
    assert_eq!(
        dst.inbox.drain().collect::<Vec<_>>(),
        [msg("already there"), msg("early")]
    );
}

// ---------------------------------------------------------------------------------------------
// SizeLimitedBoxes_Test

fn sized(size: usize) -> (Outbox<String>, Inbox<String>) {
    let (po, src, dst) = (Core::new("Po"), comp("Src"), comp("Dst"));
    po.link(&src.outbox, &dst.inbox).unwrap();
    dst.inbox.set_size(Some(size));
    (src.outbox, dst.inbox)
}

/// test_smoketest
#[test]
fn set_size_sets_the_limit() {
    let c = comp("C");
    assert_eq!(c.inbox.size(), None, "unlimited by default");
    c.inbox.set_size(Some(5));
    assert_eq!(c.inbox.size(), Some(5));
}

/// test_BoxSizeGetsLimited, test_ExceedBoxSizeAndGetException
#[test]
fn a_full_inbox_refuses_the_next_message_and_hands_it_back() {
    let (out, inbox) = sized(5);
    for i in 0..5 {
        out.send(i.to_string()).unwrap();
    }
    assert!(!out.has_room());
    let err = out.send(msg("sixth")).unwrap_err();
    assert_eq!((err.len, err.size), (5, 5));
    assert_eq!(
        err.to_string(),
        "no space in inbox: it holds 5 of at most 5 messages"
    );
    assert_eq!(err.into_inner(), "sixth");
    assert_eq!(inbox.len(), 5, "the refused message was not stored");
    assert_eq!(inbox.deliver(msg("direct")).unwrap_err().message, "direct");
}

#[test]
fn has_box_finds_inboxes_and_outboxes_by_name() {
    let c = comp("C");
    assert!(c.core.has_box("inbox") && c.core.has_box("outbox") && c.core.has_box("signal"));
    assert!(!c.core.has_box("makessl"));
}

#[test]
fn find_inbox_and_find_outbox_match_name_direction_and_type() {
    let c = comp("C");
    let sslready: Inbox<u32> = c.core.inbox("sslready", "an optional box");
    let found = c
        .core
        .find_inbox::<u32>("sslready")
        .expect("an inbox of u32");
    assert!(
        c.core.find_inbox::<String>("sslready").is_none(),
        "another type"
    );
    assert!(
        c.core.find_outbox::<u32>("sslready").is_none(),
        "an inbox, not an outbox"
    );
    assert!(c.core.find_inbox::<u32>("makessl").is_none(), "absent");
    assert!(c.core.find_outbox::<String>("outbox").is_some());
    assert!(c.core.find_inbox::<String>("outbox").is_none());
    // The handle found is the box itself.
    found.deliver(7).unwrap();
    assert_eq!(sslready.recv_now(), Some(7));
}

#[test]
fn a_linkage_equals_its_clones_and_not_a_later_link_between_the_same_boxes() {
    let (po, a, b) = (Core::new("Po"), comp("A"), comp("B"));
    let first = po.link(&a.outbox, &b.inbox).unwrap();
    assert_eq!(first, first.clone());
    po.unlink(&first);
    let second = po.link(&a.outbox, &b.inbox).unwrap();
    assert_ne!(first, second);
    assert!(!first.is_live() && second.is_live());
    assert_eq!(po.linkages(), std::slice::from_ref(&second));
    po.unlink(&first); // the old handle cuts nothing
    assert!(second.is_live());
    let other = po.link(&a.signal, &b.control).unwrap();
    assert_ne!(second, other);
}

#[test]
fn a_core_made_with_room_for_its_boxes_behaves_like_any_other() {
    let core = Core::with_capacity("Roomy", 2);
    let inbox: Inbox<u8> = core.inbox("inbox", "");
    let extra: Vec<Inbox<u8>> = (0..5)
        .map(|i| core.add_inbox("more", &i.to_string()).1)
        .collect();
    assert_eq!(
        core.box_names(),
        ["inbox", "more", "more1", "more2", "more3", "more4"]
    );
    extra[4].deliver(1).unwrap();
    assert!(inbox.is_empty());
    assert_eq!(core.inbox_named::<u8>("more4").unwrap().recv_now(), Some(1));
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "already has a box named \"inbox\"")]
fn declaring_a_box_name_twice_is_caught_in_debug_builds() {
    let core = Core::new("Twice");
    let _first: Inbox<u8> = core.inbox("inbox", "");
    let _second: Inbox<u8> = core.inbox("inbox", "");
}

#[test]
fn all_collected_says_whether_the_destination_inbox_is_empty_through_a_chain() {
    let lonely = comp("Lonely");
    assert!(lonely.outbox.all_collected(), "unlinked: nothing waits");
    // src.outbox -> mid.outbox (passthrough to a parent) -> dst.inbox
    let (po, src, mid, dst) = (Core::new("Po"), comp("Src"), comp("Mid"), comp("Dst"));
    po.link(&src.outbox, &mid.outbox).unwrap();
    po.link(&mid.outbox, &dst.inbox).unwrap();
    assert!(src.outbox.all_collected());
    src.outbox.send(msg("one")).unwrap();
    assert!(!src.outbox.all_collected());
    assert!(!mid.outbox.all_collected());
    assert_eq!(dst.inbox.recv_now().as_deref(), Some("one"));
    assert!(src.outbox.all_collected());
}

/// test_removingFromInboxAllowsYouToPutMoreIn
#[test]
fn collecting_makes_room_for_exactly_as_many_more() {
    let (out, inbox) = sized(5);
    for i in 0..5 {
        out.send(i.to_string()).unwrap();
    }
    for _ in 0..3 {
        inbox.recv_now().unwrap();
    }
    for i in 5..8 {
        out.send(i.to_string()).unwrap();
    }
    assert!(out.send(msg("too many")).is_err());
    assert!(inbox.drain().eq((3..8).map(|i| i.to_string())));
}

/// test_SizeLimitMidLinkageChainHasNoEffect
#[test]
fn a_size_limit_in_the_middle_of_a_chain_has_no_effect() {
    let (po, src, mid, dst) = (Core::new("Po"), comp("Src"), comp("Mid"), comp("Dst"));
    po.link(&src.outbox, &mid.inbox).unwrap();
    let pass = po.link(&mid.inbox, &dst.inbox).unwrap();
    mid.inbox.set_size(Some(2));
    for i in 0..10 {
        src.outbox.send(i.to_string()).unwrap();
    }
    assert_eq!(dst.inbox.len(), 10);

    // test_SizeLimitMidLinkageChainComesIntoEffectIfChainBroken
    po.unlink(&pass);
    src.outbox.send(msg("1")).unwrap();
    src.outbox.send(msg("2")).unwrap();
    let err = src.outbox.send(msg("3")).unwrap_err();
    assert_eq!((err.len, err.size), (2, 2));
    assert_eq!(mid.inbox.len(), 2);
}

/// test_SizeLimitMidLinkageChainHasNoEffect (the final box's limit applies all along the chain)
#[test]
fn the_final_inbox_limit_applies_to_every_box_of_the_chain() {
    let (po, src, mid, dst) = (Core::new("Po"), comp("Src"), comp("Mid"), comp("Dst"));
    po.link(&src.outbox, &mid.outbox).unwrap();
    po.link(&mid.outbox, &dst.inbox).unwrap();
    dst.inbox.set_size(Some(2));
    src.outbox.send(msg("1")).unwrap();
    mid.outbox.send(msg("2")).unwrap();
    assert!(!src.outbox.has_room() && !mid.outbox.has_room());
    assert!(src.outbox.send(msg("3")).is_err());
    assert!(mid.outbox.send(msg("3")).is_err());
}

/// test_SettingSizeLimitToNoneSetsToUnlimited
#[test]
fn a_size_of_none_means_unlimited() {
    let (out, inbox) = sized(5);
    inbox.set_size(None);
    assert_eq!(inbox.size(), None);
    for i in 0..1000 {
        out.send(i.to_string()).unwrap();
    }
    assert_eq!(inbox.len(), 1000);
}

/// test_TurningOffSizeLimit
#[test]
fn turning_the_limit_off_on_a_full_inbox_accepts_more() {
    let (out, inbox) = sized(5);
    for i in 0..5 {
        out.send(i.to_string()).unwrap();
    }
    assert!(out.send(msg("refused")).is_err());
    inbox.set_size(None);
    for i in 5..20 {
        out.send(i.to_string()).unwrap();
    }
    assert!(inbox.drain().eq((0..20).map(|i| i.to_string())));
}

/// Shrinking the limit below what a box holds keeps the messages and refuses new ones until it
/// drains below the limit.
#[test]
fn shrinking_the_limit_keeps_what_is_held() {
    let (out, inbox) = sized(10);
    for i in 0..6 {
        out.send(i.to_string()).unwrap();
    }
    inbox.set_size(Some(3));
    assert_eq!(inbox.len(), 6);
    assert!(out.send(msg("x")).is_err());
    for _ in 0..4 {
        inbox.recv_now();
    }
    out.send(msg("fits")).unwrap();
    assert!(out.send(msg("x")).is_err());
}

/// test_AllProducersExperienceSameSizeLimit
#[test]
fn every_producer_sharing_a_destination_sees_the_same_limit() {
    let po = Core::new("Po");
    let dst = comp("Dst");
    dst.inbox.set_size(Some(5));
    let producers: Vec<B> = (0..5).map(|_| comp("Src")).collect();
    for p in &producers {
        po.link(&p.outbox, &dst.inbox).unwrap();
    }
    for (i, p) in producers.iter().enumerate() {
        p.outbox.send(i.to_string()).unwrap();
    }
    for p in &producers {
        let err = p.outbox.send(msg("no room")).unwrap_err();
        assert_eq!((err.len, err.size), (5, 5));
    }
    dst.inbox.recv_now();
    producers[3].outbox.send(msg("one more")).unwrap();
    for p in &producers {
        assert!(p.outbox.send(msg("no room")).is_err());
    }
}
