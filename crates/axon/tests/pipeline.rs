//! Ports Kamaelia's `Tests/Python/Kamaelia/Chassis/test_Pipeline.py` to [`axon::Pipeline`].
//!
//! Kamaelia's `MockChild` spins until told to stop; here it sleeps on a private `stop` inbox, so
//! the messages a test delivers to its `inbox` and `control` stay there for the test to read.

use std::cell::Cell;
use std::rc::Rc;

use axon::{
    AnyComponent, Boxes, Component, Core, Error, FnComponent, Inbox, Ipc, Outbox, Pipeline,
    Scheduler,
};

/// Kamaelia's `MockChild`: records that it ran, reads nothing, ends when `stop` gets a message.
struct MockChild {
    boxes: Boxes<u64, u64>,
    stop: Inbox<()>,
    activated: Rc<Cell<bool>>,
}

impl Component for MockChild {
    fn core(&self) -> &Core {
        &self.boxes.core
    }

    async fn main(self) {
        self.activated.set(true);
        self.stop.recv().await;
    }
}

/// What a test keeps of a [`MockChild`] once the child is handed to a pipeline.
struct Mock {
    core: Core,
    inbox: Inbox<u64>,
    control: Inbox<Ipc>,
    outbox: Outbox<u64>,
    signal: Outbox<Ipc>,
    stop: Inbox<()>,
    activated: Rc<Cell<bool>>,
}

impl Mock {
    fn stop_now(&self) {
        self.stop.deliver(()).unwrap();
    }

    fn was_activated(&self) -> bool {
        self.activated.get()
    }
}

fn mock_child() -> (Box<dyn AnyComponent>, Mock) {
    let boxes = Boxes::<u64, u64>::new("MockChild");
    let stop = boxes.core.inbox("stop", "ends the mock");
    let activated = Rc::new(Cell::new(false));
    let mock = Mock {
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
    (Box::new(child), mock)
}

fn mock_children(n: usize) -> (Vec<Box<dyn AnyComponent>>, Vec<Mock>) {
    (0..n).map(|_| mock_child()).unzip()
}

/// The text of an [`Ipc::Status`], to tell test messages apart.
fn status(msg: Option<Ipc>) -> Option<String> {
    match msg {
        Some(Ipc::Status(s)) => Some(s),
        other => panic!("expected a status message, got {other:?}"),
    }
}

/// Kamaelia's `setup_test`: a pipeline of `n` mock children, its `outbox` and `signal` collected in
/// a sink, activated and run until idle.
struct Harness {
    sched: Scheduler,
    pipeline: Core,
    mocks: Vec<Mock>,
    outbox: Inbox<u64>,
    signal: Inbox<Ipc>,
}

impl Harness {
    fn new(n: usize) -> Self {
        let (children, mocks) = mock_children(n);
        let pipeline = Pipeline::new(children).unwrap();
        let sink = Core::new("Sink");
        let outbox = sink.inbox("outbox", "the pipeline's outbox");
        let signal = sink.inbox("signal", "the pipeline's signal");
        let core = pipeline.core().clone();
        core.outbox_named::<u64>("outbox")
            .unwrap()
            .link_to(&outbox)
            .unwrap();
        core.outbox_named::<Ipc>("signal")
            .unwrap()
            .link_to(&signal)
            .unwrap();
        let sched = Scheduler::new();
        sched.activate(pipeline);
        sched.run_until_idle(100);
        Self {
            sched,
            pipeline: core,
            mocks,
            outbox,
            signal,
        }
    }
}

#[test]
fn activates_children_only_when_activated() {
    let (children, mocks) = mock_children(3);
    let pipeline = Pipeline::new(children).unwrap();
    for m in &mocks {
        assert!(!m.core.is_activated());
        assert!(!m.was_activated());
    }
    assert!(pipeline.core().children().is_empty());

    let sched = Scheduler::new();
    let core = sched.activate(pipeline);
    sched.run_until_idle(10);

    for m in &mocks {
        assert!(m.core.is_activated());
        assert!(m.was_activated());
    }
    let children: Vec<Core> = mocks.iter().map(|m| m.core.clone()).collect();
    assert_eq!(core.children(), children);
}

#[test]
fn terminates_only_when_all_children_have_terminated() {
    let h = Harness::new(3);
    assert!(!h.pipeline.is_finished());

    for (i, m) in h.mocks.iter().enumerate() {
        assert!(
            !h.pipeline.is_finished(),
            "pipeline ended before child {i} did"
        );
        m.stop_now();
        h.sched.run_until_idle(100);
        assert!(m.core.is_finished());
        // Only the stopped children have ended.
        for later in &h.mocks[i + 1..] {
            assert!(!later.core.is_finished());
        }
        assert_eq!(h.pipeline.children().len(), 2 - i);
    }

    assert!(h.pipeline.is_finished());
    assert!(h.sched.is_empty());
}

#[test]
fn children_wired_outbox_to_inbox() {
    let h = Harness::new(4);

    h.mocks[0].outbox.send(100).unwrap();
    for (i, child) in h.mocks[1..3].iter().enumerate() {
        let expected = 100 + i as u64;
        assert_eq!(child.inbox.recv_now(), Some(expected));
        child.outbox.send(expected + 1).unwrap();
    }
    assert_eq!(h.mocks[3].inbox.recv_now(), Some(102));

    // Nothing went anywhere else.
    for m in &h.mocks {
        assert_eq!(m.core.any_ready(), None);
    }
    assert!(h.outbox.is_empty());
}

#[test]
fn children_wired_signal_to_control() {
    let h = Harness::new(4);

    h.mocks[0]
        .signal
        .send(Ipc::Status("from 0".into()))
        .unwrap();
    for (i, child) in h.mocks[1..3].iter().enumerate() {
        assert_eq!(
            status(child.control.recv_now()).as_deref(),
            Some(format!("from {i}").as_str())
        );
        child
            .signal
            .send(Ipc::Status(format!("from {}", i + 1)))
            .unwrap();
    }
    assert_eq!(
        status(h.mocks[3].control.recv_now()).as_deref(),
        Some("from 2")
    );

    for m in &h.mocks {
        assert_eq!(m.core.any_ready(), None);
    }
    assert!(h.signal.is_empty());
}

#[test]
fn first_child_wired_to_parent_inboxes() {
    let h = Harness::new(4);

    h.pipeline
        .inbox_named::<u64>("inbox")
        .unwrap()
        .deliver(7)
        .unwrap();
    assert_eq!(h.mocks[0].inbox.recv_now(), Some(7));

    h.pipeline
        .inbox_named::<Ipc>("control")
        .unwrap()
        .deliver(Ipc::Status("stop?".into()))
        .unwrap();
    assert_eq!(
        status(h.mocks[0].control.recv_now()).as_deref(),
        Some("stop?")
    );

    for m in &h.mocks {
        assert_eq!(m.core.any_ready(), None);
    }
}

#[test]
fn last_child_wired_to_parent_outboxes() {
    let h = Harness::new(4);

    h.mocks[3].outbox.send(9).unwrap();
    assert_eq!(h.outbox.recv_now(), Some(9));

    h.mocks[3].signal.send(Ipc::producer_finished()).unwrap();
    assert!(matches!(
        h.signal.recv_now(),
        Some(Ipc::ProducerFinished(_))
    ));

    assert!(h.outbox.is_empty());
    assert!(h.signal.is_empty());
}

#[test]
fn pipeline_sleeps_when_messages_are_stranded_in_its_inbox() {
    // Once the first child has ended, the pipeline's `inbox` no longer forwards anywhere and a
    // message sent to it stays there. The pipeline must still sleep until its next child ends.
    let h = Harness::new(2);
    h.mocks[0].stop_now();
    h.sched.run_until_idle(100);
    assert!(h.mocks[0].core.is_finished());

    let inbox = h.pipeline.inbox_named::<u64>("inbox").unwrap();
    inbox.deliver(5).unwrap();
    let cycles = h.sched.run_until_idle(100);
    assert!(
        cycles < 100,
        "the pipeline kept running with a message in its inbox"
    );
    assert_eq!(inbox.len(), 1);
    assert!(!h.pipeline.is_finished());

    h.mocks[1].stop_now();
    h.sched.run_until_idle(100);
    assert!(h.pipeline.is_finished());
}

#[test]
fn mismatched_neighbours_are_a_type_mismatch_naming_both_ends() {
    let (numbers, mock) = mock_child();
    let words = FnComponent::<String, String, _>::new("Words", |_b| async {});
    let words_name = words.core().name();
    let err = Pipeline::new(vec![numbers, Box::new(words)]).unwrap_err();
    assert_eq!(
        err,
        Error::TypeMismatch {
            source: format!("{}.outbox", mock.core.name()),
            source_type: "u64",
            sink: format!("{words_name}.inbox"),
            sink_type: "alloc::string::String",
        }
    );
}

#[test]
fn no_children_is_an_invalid_graph() {
    assert!(matches!(
        Pipeline::new(Vec::new()),
        Err(Error::InvalidGraph(_))
    ));
}
