//! Message hops: a 10-stage pipeline passing 1,000,000 small messages, axon against the same chain
//! built from tokio tasks and bounded `tokio::sync::mpsc` channels on a current-thread runtime.
//!
//! Both chains use bounded queues of the same depth, one task/component per stage, and the
//! idiomatic receive-then-send loop of each library.
//!
//! Run: `cargo bench -p axon --bench message_hops`
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::time::Duration;

use axon::{Component, Core, Inbox, Outbox, Scheduler};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const MESSAGES: u64 = 1_000_000;
const STAGES: usize = 10;
const DEPTH: usize = 1024;

/// Sends `0..n` then ends.
struct Source {
    core: Core,
    outbox: Outbox<u64>,
    n: u64,
}

impl Component for Source {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn main(self) {
        for i in 0..self.n {
            self.outbox.send_wait(i).await;
        }
    }
}

/// Forwards `n` messages, then ends.
struct Stage {
    core: Core,
    inbox: Inbox<u64>,
    outbox: Outbox<u64>,
    n: u64,
}

impl Component for Stage {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn main(self) {
        for _ in 0..self.n {
            let m = self.inbox.recv().await;
            self.outbox.send_wait(m).await;
        }
    }
}

/// Receives `n` messages and checks their sum.
struct Sink {
    core: Core,
    inbox: Inbox<u64>,
    n: u64,
}

impl Component for Sink {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn main(self) {
        let mut sum = 0u64;
        for _ in 0..self.n {
            sum = sum.wrapping_add(self.inbox.recv().await);
        }
        assert_eq!(
            sum,
            self.n * (self.n - 1) / 2,
            "axon chain lost or changed messages"
        );
    }
}

fn axon_chain(n: u64) {
    let sched = Scheduler::new();
    let core = Core::new("Source");
    let source = Source {
        outbox: core.outbox("outbox", ""),
        core,
        n,
    };
    let mut prev = source.outbox.clone();
    let mut stages = Vec::with_capacity(STAGES);
    for _ in 0..STAGES {
        let core = Core::new("Stage");
        let stage = Stage {
            inbox: core.inbox("inbox", ""),
            outbox: core.outbox("outbox", ""),
            core,
            n,
        };
        stage.inbox.set_size(Some(DEPTH));
        axon::link(&prev, &stage.inbox).expect("link");
        prev = stage.outbox.clone();
        stages.push(stage);
    }
    let core = Core::new("Sink");
    let sink = Sink {
        inbox: core.inbox("inbox", ""),
        core,
        n,
    };
    sink.inbox.set_size(Some(DEPTH));
    axon::link(&prev, &sink.inbox).expect("link");
    sched.activate(source);
    for s in stages {
        sched.activate(s);
    }
    sched.activate(sink);
    sched.run();
}

fn tokio_chain(rt: &tokio::runtime::Runtime, n: u64) {
    rt.block_on(async move {
        let (tx0, mut rx) = tokio::sync::mpsc::channel::<u64>(DEPTH);
        let source = tokio::spawn(async move {
            for i in 0..n {
                tx0.send(i).await.expect("send");
            }
        });
        let mut stages = Vec::with_capacity(STAGES);
        for _ in 0..STAGES {
            let (tx, next_rx) = tokio::sync::mpsc::channel::<u64>(DEPTH);
            let mut my_rx = std::mem::replace(&mut rx, next_rx);
            stages.push(tokio::spawn(async move {
                for _ in 0..n {
                    let m = my_rx.recv().await.expect("recv");
                    tx.send(m).await.expect("send");
                }
            }));
        }
        let sink = tokio::spawn(async move {
            let mut sum = 0u64;
            for _ in 0..n {
                sum = sum.wrapping_add(rx.recv().await.expect("recv"));
            }
            assert_eq!(sum, n * (n - 1) / 2, "tokio chain lost or changed messages");
        });
        source.await.expect("source");
        for s in stages {
            s.await.expect("stage");
        }
        sink.await.expect("sink");
    });
}

fn hops(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let mut group = c.benchmark_group("pipeline_10_stages");
    group.throughput(Throughput::Elements(MESSAGES));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_with_input(BenchmarkId::new("axon", MESSAGES), &MESSAGES, |b, &n| {
        b.iter(|| axon_chain(n))
    });
    group.bench_with_input(
        BenchmarkId::new("tokio_mpsc", MESSAGES),
        &MESSAGES,
        |b, &n| b.iter(|| tokio_chain(&rt, n)),
    );
    group.finish();
}

criterion_group!(benches, hops);
criterion_main!(benches);
