//! `Selector`: the intent of Kamaelia's `Code/Python/Kamaelia/Test/Internet/test_Selector.py`
//! (reference §11.3) and of derived case 13 (§11.4), against real loopback sockets and the real
//! `epoll` instance.
//!
//! | Kamaelia test | here |
//! |---|---|
//! | `test_SmokeTest` | [`the_selector_is_a_daemon_component_found_as_the_selector_service`] |
//! | `test_RunsForever` | [`run_returns_when_only_the_selector_is_left`] (it never ends by itself, but as a daemon it does not keep `run` going; Kamaelia's 3.5 s idle self-exit is gone) |
//! | `test_PausesUntilFirstMessage` | [`it_pauses_until_a_request_arrives`] |
//! | `test_shutdownMessageCausesShutdown` | [`shutdown_microprocess_stops_it_and_withdraws_the_service`] |
//! | `test_SendingAReadableMessageResultsInItBeingSelectedAgainst`, `test_ActivityOnReaderResultsInMessageOnReadersService` | [`a_reader_is_notified_once_its_socket_is_readable`] |
//! | `test_WeSendTheSelectorAServiceAndSelectableOnlySelectsTheSelectable` | [`the_notice_names_the_registration_by_its_token`] |
//! | `test_SendingMultipleReadersResultsInAllSelected` | [`every_readable_registration_is_notified`] |
//! | `test_ActivityOnAnyReaderResultsInMessageOnThatReadersService`, `…WriterResultsInMessageOnThatWritersService` | [`each_notice_goes_only_to_its_own_registrant`] |
//! | `test_RemoveReader_ResultsInReaderNoLongerBeingSelectedOrWiredIn`, `test_RemoveWriter_…` | [`removing_a_reader_before_readiness_means_no_notice`], [`removing_a_writer_before_readiness_means_no_notice`] |
//! | derived 13: one-shot | [`notices_are_one_shot_and_must_be_rearmed`] |
//! | derived 13: duplicate ignored | [`a_duplicate_registration_is_ignored_and_the_first_wins`] |
//! | derived 13: readers before writers | [`readers_are_notified_before_writers`] |
//! | (no lost wake-up with edge triggering) | [`readiness_that_came_before_the_request_is_remembered`] |
//!
//! Not ported: `test_SelectIsMockable` (the tests use the real `epoll`, not a mock), and the
//! `…Exceptional…` cases (this selector has no exceptional set: errors and hang-ups are reported
//! as both readable and writable, and the next read or write names them).

mod util;

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;

use axon::ipc::SelectorRequest;
use axon::{Core, FnComponent, Inbox, Ipc, Scheduler};
use kamaelia::internet::{Readiness, SelectorHandle, SelectorMsg, SELECTOR_SERVICE};
use mio::Token;

use util::{read_mio, run, run_until, settle, tcp_pair, tokens, wait_for_bytes};

/// A scheduler with its selector (activated, not yet run) and a registrant's identity.
fn setup() -> (Scheduler, SelectorHandle, Core) {
    let sched = Scheduler::new();
    let selector = SelectorHandle::on(&sched).expect("selector");
    (sched, selector, Core::new("Registrant"))
}

fn new_reader(sel: &SelectorHandle, me: &Core, token: Token, reply: &Inbox<Readiness>) {
    sel.notify()
        .deliver(SelectorRequest::NewReader {
            caller: me.id(),
            reply: reply.clone(),
            selectable: token,
        })
        .unwrap();
}

fn new_writer(sel: &SelectorHandle, me: &Core, token: Token, reply: &Inbox<Readiness>) {
    sel.notify()
        .deliver(SelectorRequest::NewWriter {
            caller: me.id(),
            reply: reply.clone(),
            selectable: token,
        })
        .unwrap();
}

fn remove_reader(sel: &SelectorHandle, me: &Core, token: Token) {
    sel.notify()
        .deliver(SelectorRequest::RemoveReader {
            caller: me.id(),
            selectable: token,
        })
        .unwrap();
}

fn remove_writer(sel: &SelectorHandle, me: &Core, token: Token) {
    sel.notify()
        .deliver(SelectorRequest::RemoveWriter {
            caller: me.id(),
            selectable: token,
        })
        .unwrap();
}

#[test]
fn the_selector_is_a_daemon_component_found_as_the_selector_service() {
    let (sched, sel, me) = setup();
    assert_eq!(SELECTOR_SERVICE, "selector");
    let (core, inbox) = sched.service("selector").expect("the selector service");
    assert_eq!(inbox, "notify");
    assert_eq!(core.kind(), "Selector");
    assert!(core.is_daemon());
    assert!(core.is_activated());
    let inbox_names: Vec<String> = core.inboxes().into_iter().map(|(n, _)| n).collect();
    assert_eq!(inbox_names, ["notify", "control"]);

    // A second lookup finds the same selector, not a new one.
    let again = SelectorHandle::on(&sched).unwrap();
    let (mut ours, _peer) = tcp_pair();
    let token = again.register(&mut ours).unwrap();
    assert_eq!(sel.registrations(), 1);
    assert_eq!(sched.service("selector").unwrap().0, core);

    // The registry's inbox is the handle's `notify`.
    let notify: Inbox<SelectorMsg> = sched.service_inbox("selector").unwrap();
    let reply = me.inbox::<Readiness>("ReadReady", "notices");
    notify
        .deliver(SelectorRequest::NewReader {
            caller: me.id(),
            reply,
            selectable: token,
        })
        .unwrap();
    assert_eq!(sel.notify().len(), 1);

    // A component finds it too, through the scheduler it runs on.
    let seen = Rc::new(RefCell::new(None));
    let out = seen.clone();
    sched.activate(FnComponent::<(), (), _>::new(
        "Finder",
        move |_b| async move {
            let found = SelectorHandle::current().expect("current selector");
            *out.borrow_mut() = Some(found.registrations());
        },
    ));
    run(&sched);
    assert_eq!(*seen.borrow(), Some(1));
}

#[test]
fn run_returns_when_only_the_selector_is_left() {
    let (sched, _sel, _me) = setup();
    let (core, _) = sched.service("selector").unwrap();
    // With nothing else to run, `run` returns (bounded by the watchdog in `run`), stopping the
    // selector and withdrawing the service.
    run(&sched);
    assert!(core.is_finished());
    assert!(sched.service("selector").is_err());
    assert!(sched.is_empty());
}

#[test]
fn it_pauses_until_a_request_arrives() {
    let (sched, sel, me) = setup();
    let (core, _) = sched.service("selector").unwrap();
    settle(&sched);
    assert!(core.is_paused(), "an idle selector sleeps");
    assert!(!core.is_finished(), "and does not end by itself");
    let (mut ours, _peer) = tcp_pair();
    let token = sel.register(&mut ours).unwrap();
    let reply = me.inbox::<Readiness>("ReadReady", "notices");
    new_reader(&sel, &me, token, &reply);
    assert!(!core.is_paused(), "a request wakes it");
    sched.try_tick();
    assert!(sel.notify().is_empty(), "and it takes the request");
}

#[test]
fn shutdown_microprocess_stops_it_and_withdraws_the_service() {
    let (sched, _sel, _me) = setup();
    let (core, _) = sched.service("selector").unwrap();
    settle(&sched);
    core.inbox_named::<Ipc>("control")
        .unwrap()
        .deliver(Ipc::shutdown_microprocess())
        .unwrap();
    run_until(&sched, "the selector to end", || core.is_finished());
    assert!(sched.service("selector").is_err());
    // A later lookup starts a fresh selector.
    let _fresh = SelectorHandle::on(&sched).unwrap();
    let (fresh, _) = sched.service("selector").unwrap();
    assert_ne!(fresh, core);
    assert!(!fresh.is_finished());
}

#[test]
fn a_reader_is_notified_once_its_socket_is_readable() {
    let (sched, sel, me) = setup();
    let (mut ours, mut peer) = tcp_pair();
    let token = sel.register(&mut ours).unwrap();
    let reply = me.inbox::<Readiness>("ReadReady", "notices");
    new_reader(&sel, &me, token, &reply);
    settle(&sched);
    assert!(reply.is_empty(), "nothing to read yet: no notice");
    peer.write_all(b"hello").unwrap();
    run_until(&sched, "a read notice", || !reply.is_empty());
    assert_eq!(tokens(&reply), [token.0]);
    assert_eq!(read_mio(&mut ours), b"hello");
}

#[test]
fn notices_are_one_shot_and_must_be_rearmed() {
    let (sched, sel, me) = setup();
    let (mut ours, mut peer) = tcp_pair();
    let token = sel.register(&mut ours).unwrap();
    let reply = me.inbox::<Readiness>("ReadReady", "notices");
    new_reader(&sel, &me, token, &reply);
    peer.write_all(b"one").unwrap();
    run_until(&sched, "the first notice", || !reply.is_empty());
    assert_eq!(tokens(&reply), [token.0]);
    assert_eq!(read_mio(&mut ours), b"one"); // drained to WouldBlock, as a registrant does

    peer.write_all(b"two").unwrap();
    wait_for_bytes(&ours, 3);
    settle(&sched);
    assert!(reply.is_empty(), "no second notice without a new request");

    // The readiness was not lost: asking again delivers it.
    new_reader(&sel, &me, token, &reply);
    run_until(&sched, "the re-armed notice", || !reply.is_empty());
    assert_eq!(tokens(&reply), [token.0]);
    assert_eq!(read_mio(&mut ours), b"two");
    settle(&sched);
    assert!(reply.is_empty(), "exactly one notice per request");
}

#[test]
fn readiness_that_came_before_the_request_is_remembered() {
    let (sched, sel, me) = setup();
    let (mut ours, mut peer) = tcp_pair();
    let token = sel.register(&mut ours).unwrap();
    peer.write_all(b"early").unwrap();
    wait_for_bytes(&ours, 5);
    // The edge is consumed by `epoll_wait` while nobody has asked.
    settle(&sched);
    let reads = me.inbox::<Readiness>("ReadReady", "read notices");
    let writes = me.inbox::<Readiness>("SendReady", "write notices");
    new_reader(&sel, &me, token, &reads);
    new_writer(&sel, &me, token, &writes);
    // Edge-triggered: no new edge will come, so only the remembered readiness can answer.
    run_until(&sched, "the remembered notices", || {
        !reads.is_empty() && !writes.is_empty()
    });
    assert_eq!(tokens(&reads), [token.0]);
    assert_eq!(tokens(&writes), [token.0]);
    assert_eq!(read_mio(&mut ours), b"early");
}

#[test]
fn a_duplicate_registration_is_ignored_and_the_first_wins() {
    let (sched, sel, me) = setup();
    let (mut ours, mut peer) = tcp_pair();
    let token = sel.register(&mut ours).unwrap();
    let first = me.inbox::<Readiness>("first", "the first registrant");
    let second = me.inbox::<Readiness>("second", "the duplicate");
    new_reader(&sel, &me, token, &first);
    new_reader(&sel, &me, token, &first); // the same registrant twice: still one notice
    new_reader(&sel, &me, token, &second);
    peer.write_all(b"x").unwrap();
    run_until(&sched, "the first registrant's notice", || {
        !first.is_empty()
    });
    settle(&sched);
    assert_eq!(tokens(&first), [token.0]);
    assert!(second.is_empty(), "the duplicate gets nothing");
    assert_eq!(read_mio(&mut ours), b"x");

    // The duplicate was dropped, not queued behind the first: the next readiness reaches nobody
    // until someone asks again.
    peer.write_all(b"y").unwrap();
    wait_for_bytes(&ours, 1);
    settle(&sched);
    assert!(first.is_empty() && second.is_empty());
    new_reader(&sel, &me, token, &second);
    run_until(&sched, "the second registrant's notice", || {
        !second.is_empty()
    });
    assert_eq!(tokens(&second), [token.0]);
    assert!(first.is_empty());
}

#[test]
fn removing_a_reader_before_readiness_means_no_notice() {
    let (sched, sel, me) = setup();
    let (mut ours, mut peer) = tcp_pair();
    let token = sel.register(&mut ours).unwrap();
    let reply = me.inbox::<Readiness>("ReadReady", "notices");
    new_reader(&sel, &me, token, &reply);
    remove_reader(&sel, &me, token);
    settle(&sched);
    peer.write_all(b"data").unwrap();
    wait_for_bytes(&ours, 4);
    settle(&sched);
    assert!(reply.is_empty(), "removed: no notice");
    // The readiness did happen (and is kept for the next request).
    new_reader(&sel, &me, token, &reply);
    run_until(&sched, "a notice after asking again", || !reply.is_empty());
    assert_eq!(tokens(&reply), [token.0]);
}

#[test]
fn removing_a_writer_before_readiness_means_no_notice() {
    let (sched, sel, me) = setup();
    let (mut ours, _peer) = tcp_pair();
    let token = sel.register(&mut ours).unwrap();
    let reply = me.inbox::<Readiness>("SendReady", "notices");
    // Both requests are taken before the first wait reports the fresh socket writable.
    new_writer(&sel, &me, token, &reply);
    remove_writer(&sel, &me, token);
    settle(&sched);
    assert!(reply.is_empty(), "removed: no notice");
    new_writer(&sel, &me, token, &reply);
    run_until(&sched, "a notice after asking again", || !reply.is_empty());
    assert_eq!(tokens(&reply), [token.0]);
}

#[test]
fn removing_an_unknown_registration_is_ignored() {
    let (sched, sel, me) = setup();
    let (mut ours, mut peer) = tcp_pair();
    let token = sel.register(&mut ours).unwrap();
    remove_reader(&sel, &me, Token(token.0 + 100));
    remove_writer(&sel, &me, Token(token.0 + 100));
    let reply = me.inbox::<Readiness>("ReadReady", "notices");
    new_reader(&sel, &me, token, &reply);
    peer.write_all(b"z").unwrap();
    run_until(&sched, "the notice", || !reply.is_empty());
    assert_eq!(tokens(&reply), [token.0]);
    let (core, _) = sched.service("selector").unwrap();
    assert!(!core.is_finished());
}

#[test]
fn the_notice_names_the_registration_by_its_token() {
    let (sched, sel, me) = setup();
    let mut pairs: Vec<_> = (0..3).map(|_| tcp_pair()).collect();
    let toks: Vec<Token> = pairs
        .iter_mut()
        .map(|(ours, _)| sel.register(ours).unwrap())
        .collect();
    assert_eq!(
        toks.iter().collect::<std::collections::HashSet<_>>().len(),
        3,
        "distinct tokens"
    );
    let reply = me.inbox::<Readiness>("ReadReady", "every socket's notices");
    for t in &toks {
        new_reader(&sel, &me, *t, &reply);
    }
    settle(&sched);
    assert!(reply.is_empty());
    pairs[1].1.write_all(b"b").unwrap();
    run_until(&sched, "the second socket's notice", || !reply.is_empty());
    settle(&sched);
    assert_eq!(tokens(&reply), [toks[1].0]);
    pairs[2].1.write_all(b"c").unwrap();
    run_until(&sched, "the third socket's notice", || !reply.is_empty());
    settle(&sched);
    assert_eq!(tokens(&reply), [toks[2].0]);
}

#[test]
fn every_readable_registration_is_notified() {
    let (sched, sel, me) = setup();
    let mut pairs: Vec<_> = (0..3).map(|_| tcp_pair()).collect();
    let toks: Vec<Token> = pairs
        .iter_mut()
        .map(|(ours, _)| sel.register(ours).unwrap())
        .collect();
    let reply = me.inbox::<Readiness>("ReadReady", "every socket's notices");
    for t in &toks {
        new_reader(&sel, &me, *t, &reply);
    }
    for (_, peer) in &mut pairs {
        peer.write_all(b"!").unwrap();
    }
    let mut got = Vec::new();
    run_until(&sched, "three notices", || {
        got.extend(tokens(&reply));
        got.len() >= 3
    });
    settle(&sched);
    got.extend(tokens(&reply));
    got.sort_unstable();
    let mut want: Vec<usize> = toks.iter().map(|t| t.0).collect();
    want.sort_unstable();
    assert_eq!(got, want);
}

#[test]
fn each_notice_goes_only_to_its_own_registrant() {
    let (sched, sel, me) = setup();
    let (mut a, mut peer_a) = tcp_pair();
    let (mut b, _peer_b) = tcp_pair();
    let (ta, tb) = (sel.register(&mut a).unwrap(), sel.register(&mut b).unwrap());
    let read_a = me.inbox::<Readiness>("readA", "A readable");
    let read_b = me.inbox::<Readiness>("readB", "B readable");
    let write_b = me.inbox::<Readiness>("writeB", "B writable");
    new_reader(&sel, &me, ta, &read_a);
    new_reader(&sel, &me, tb, &read_b);
    new_writer(&sel, &me, tb, &write_b);
    // B is writable from the start; only A becomes readable.
    peer_a.write_all(b"a").unwrap();
    run_until(&sched, "A's read notice and B's write notice", || {
        !read_a.is_empty() && !write_b.is_empty()
    });
    settle(&sched);
    assert_eq!(tokens(&read_a), [ta.0]);
    assert_eq!(tokens(&write_b), [tb.0]);
    assert!(read_b.is_empty(), "B is not readable");
}

#[test]
fn readers_are_notified_before_writers() {
    let (sched, sel, me) = setup();
    let (mut ours, mut peer) = tcp_pair();
    let token = sel.register(&mut ours).unwrap();
    // Two registrants; whichever is woken first runs first (the run queue is FIFO), so the log
    // shows the order of the notices.
    let log: Rc<RefCell<Vec<&'static str>>> = Rc::default();
    let recorder = |what: &'static str| {
        let log = log.clone();
        FnComponent::<Readiness, (), _>::new("Recorder", move |b| async move {
            let _ = b.inbox.recv().await;
            log.borrow_mut().push(what);
        })
    };
    let writer = recorder("writer");
    let reader = recorder("reader");
    // The writer asks (and is activated) first: only the selector's rule can put the reader first.
    new_writer(&sel, &me, token, &writer.boxes().inbox);
    new_reader(&sel, &me, token, &reader.boxes().inbox);
    sched.activate(writer);
    sched.activate(reader);
    // Readable and writable before the first wait: one event carries both.
    peer.write_all(b"both").unwrap();
    wait_for_bytes(&ours, 4);
    run_until(&sched, "both notices", || log.borrow().len() == 2);
    assert_eq!(*log.borrow(), ["reader", "writer"]);
}

#[test]
fn a_deregistered_socket_gets_no_notice_and_frees_its_registration() {
    let (sched, sel, me) = setup();
    let (mut ours, mut peer) = tcp_pair();
    let token = sel.register(&mut ours).unwrap();
    let reply = me.inbox::<Readiness>("ReadReady", "notices");
    new_reader(&sel, &me, token, &reply);
    sel.deregister(&mut ours, token).unwrap();
    assert_eq!(sel.registrations(), 0);
    peer.write_all(b"late").unwrap();
    wait_for_bytes(&ours, 4);
    settle(&sched);
    assert!(reply.is_empty());
}
