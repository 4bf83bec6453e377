//! Memory of idle components: activates 100,000 components with the four default boxes, lets
//! each run until it waits on its empty inbox, and reports the growth of the process's resident
//! memory per component. Target: at most 1 KiB each.
//!
//! Run: `cargo bench -p axon --bench idle_memory`

use axon::{Boxes, Component, Core, Scheduler};

const COMPONENTS: usize = 100_000;

/// Waits for a message that never comes.
struct Idle {
    boxes: Boxes<u64, u64>,
}

impl Component for Idle {
    fn core(&self) -> &Core {
        &self.boxes.core
    }

    async fn main(self) {
        let m = self.boxes.inbox.recv().await;
        let _ = self.boxes.outbox.send(m);
    }
}

/// Resident set size in bytes, from /proc/self/statm.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run a small smoke
    // version then, so the target stays cheap in test runs.
    let n = if std::env::args().any(|a| a == "--bench") {
        COMPONENTS
    } else {
        1_000
    };
    let sched = Scheduler::new();
    let before = rss();
    for _ in 0..n {
        sched.activate(Idle {
            boxes: Boxes::new("Idle"),
        });
    }
    // One cycle polls every component once; each then sleeps on its empty inbox.
    sched.try_tick();
    let after = rss();
    assert_eq!(sched.len(), n, "every component should still be waiting");
    let per = after.saturating_sub(before) as f64 / n as f64;
    println!(
        "idle_memory: {n} idle components (4 default boxes each), resident growth {:.1} MiB, {per:.0} bytes per component (target <= 1024)",
        after.saturating_sub(before) as f64 / (1024.0 * 1024.0)
    );
}
