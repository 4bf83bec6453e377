//! A three-stage pipeline built from a custom component graph: a producer, a transformer and a
//! printer, wired with `pipeline!`, shutting down by passing `producerFinished` down the line.
//!
//! Run: `cargo run -p axon --example pipeline`
//!
//! `unwrap` and `expect` are used for brevity; a graph that fails to link is a programming error.

use axon::{pipeline, Boxes, Component, Core, FnComponent, Ipc, Msg, Scheduler};

/// Emits the words of a sentence, one message each, then `producerFinished`.
struct Words {
    boxes: Boxes<(), String>,
    text: &'static str,
}

impl Component for Words {
    fn core(&self) -> &Core {
        &self.boxes.core
    }

    async fn main(self) {
        for w in self.text.split_whitespace() {
            self.boxes.outbox.send_wait(w.to_owned()).await;
        }
        let _ = self.boxes.signal.send(Ipc::producer_finished());
    }
}

/// Reverses each word; passes its shutdown on.
fn reverse() -> impl Component {
    FnComponent::<String, String, _>::new("Reverse", |b| async move {
        loop {
            match b.next().await {
                Msg::Data(w) => b.outbox.send_wait(w.chars().rev().collect()).await,
                Msg::Control(c) => {
                    let _ = b.signal.send(c);
                    return;
                }
            }
        }
    })
}

/// Prints each message on its own line (Kamaelia's `ConsoleEchoer`).
fn console_echoer() -> impl Component {
    FnComponent::<String, (), _>::new("ConsoleEchoer", |b| async move {
        while let Msg::Data(line) = b.next().await {
            println!("{line}");
        }
    })
}

fn main() {
    let words = Words {
        boxes: Boxes::new("Words"),
        text: "components talk only through boxes",
    };
    let graph = pipeline![words, reverse(), console_echoer()].expect("pipeline links");
    let sched = Scheduler::new();
    sched.activate(graph);
    sched.run();
}
