//! The chat handler's framing path, driven directly: bytes go into a `ChatHandler`'s inbox in
//! chunks the input chooses, the client then finishes (`producerFinished`), and another subscriber
//! of the same `Backplane` collects what was published.
//!
//! Input: byte 0 seeds the chunking, byte 1 (bit 0) says whether the client finishes
//! (`producerFinished`: the remainder is published) or the handler is told to stop
//! (`shutdownMicroprocess`, as when the backplane drops it: no remainder); the rest is the stream.
//! Invariants: the handler publishes exactly the lines `LineSplitter::new(MAX_LINE)` makes of the
//! whole stream (plus the remainder when the client finished), in order, so they concatenate to
//! the stream; and the handler ends.
#![no_main]

use kamaelia::axon::{Core, Inbox, Ipc, Scheduler};
use kamaelia::bytes::Bytes;
use kamaelia::protocols::chat::{ChatHandler, LineSplitter, MAX_LINE};
use kamaelia::util::{Backplane, BackplaneMsg};
use libfuzzer_sys::fuzz_target;

/// Scheduler cycles allowed per step: far more than the few a step needs.
const CYCLES: usize = 1000;

fuzz_target!(|data: &[u8]| {
    let [seed, mode, stream @ ..] = data else {
        return;
    };
    let finishes = mode & 1 == 0;

    let sched = Scheduler::new();
    let backplane = Backplane::new();
    let bp = backplane.handle();
    sched.activate(backplane);

    // A listener on the backplane: a bare core, never activated, with an unbounded inbox.
    let probe = Core::new("probe");
    let heard: Inbox<Bytes> = probe.inbox("inbox", "published lines");
    let probe_control: Inbox<Ipc> = probe.inbox("control", "dropped by the backplane");
    bp.send(BackplaneMsg::Subscribe {
        id: probe.id(),
        data: heard.clone(),
        control: probe_control.clone(),
    })
    .expect("a subscription is always taken");

    let handler = sched.activate(ChatHandler::new(bp.clone()));
    let inbox: Inbox<Bytes> = handler.inbox_named("inbox").expect("handler inbox");
    let control: Inbox<Ipc> = handler.inbox_named("control").expect("handler control");
    sched.run_until_idle(CYCLES);

    let mut rest = stream;
    let mut mix = *seed;
    while let Some(&b) = rest.first() {
        mix = mix.rotate_left(5) ^ b;
        // Up to 4 KiB per read, so lines span reads and several reads queue up between runs.
        let n = (usize::from(mix) * 17 % 4096).clamp(1, rest.len());
        inbox
            .deliver(Bytes::copy_from_slice(&rest[..n]))
            .expect("handler inbox is unbounded");
        rest = &rest[n..];
        if mix & 0x80 != 0 {
            sched.run_until_idle(CYCLES);
        }
    }
    sched.run_until_idle(CYCLES);
    let end = if finishes {
        Ipc::producer_finished()
    } else {
        Ipc::shutdown_microprocess()
    };
    control.deliver(end).expect("handler control is unbounded");
    sched.run_until_idle(CYCLES);
    assert!(handler.is_finished(), "the handler did not end");
    assert!(
        probe_control.recv_now().is_none(),
        "the listener was dropped"
    );

    let got: Vec<Bytes> = heard.drain().collect();
    let mut s = LineSplitter::new(MAX_LINE);
    let mut want = s.push(stream);
    if finishes {
        want.extend(s.finish());
    }
    assert_eq!(got, want, "published lines differ from the stream's lines");
});
