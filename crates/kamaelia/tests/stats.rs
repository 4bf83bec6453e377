//! Server statistics: `ServerCore`'s `sampleStats` → `stats` snapshots, with per-connection
//! traffic counters, open/closed counts and close reasons (the reliability issue's "stats outbox").

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

use axon::{Inbox, Ipc, Scheduler};
use kamaelia::chassis::{ServerConfig, ServerCore, ServerStats};
use kamaelia::protocols::Echo;
use util::{collector, run_until, take_all};

/// Asks for one snapshot and steps the scheduler until it arrives.
fn sample(sched: &Scheduler, request: &Inbox<()>, stats: &Inbox<ServerStats>) -> ServerStats {
    request.deliver(()).unwrap();
    run_until(sched, "a stats snapshot", || stats.data_ready());
    let mut got = take_all(stats);
    assert_eq!(got.len(), 1, "one request, one snapshot");
    got.remove(0)
}

/// Writes `data` and reads the same number of bytes back, stepping the scheduler meanwhile.
fn round_trip(sched: &Scheduler, s: &mut TcpStream, data: &[u8]) {
    s.write_all(data).unwrap();
    s.set_nonblocking(true).unwrap();
    let mut back = Vec::new();
    let mut buf = [0u8; 4096];
    run_until(sched, "the echo", || {
        match s.read(&mut buf) {
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read: {e}"),
        }
        back.len() >= data.len()
    });
    s.set_nonblocking(false).unwrap();
    assert_eq!(back, data);
}

#[test]
fn snapshots_count_connections_bytes_and_close_reasons() {
    let sched = Scheduler::new();
    let server = ServerCore::new(
        "127.0.0.1:0".parse().unwrap(),
        |_| Box::new(Echo::new()),
        ServerConfig::default(),
    )
    .expect("bind");
    let addr = server.local_addr();
    let request = server.sample_stats().clone();
    let control = server.control().clone();
    let stats: Inbox<ServerStats> = collector("stats");
    server.stats().link_to(&stats).unwrap();
    let server_core = sched.activate(server);

    let empty = sample(&sched, &request, &stats);
    assert_eq!(empty, ServerStats::default());

    let mut a = TcpStream::connect(addr).unwrap();
    let mut b = TcpStream::connect(addr).unwrap();
    round_trip(&sched, &mut a, b"hello");
    round_trip(&sched, &mut b, &[7u8; 1000]);

    let two_open = sample(&sched, &request, &stats);
    assert_eq!(two_open.accepted, 2);
    assert_eq!(two_open.closed, 0);
    assert_eq!(two_open.open.len(), 2);
    assert_eq!((two_open.bytes_in, two_open.bytes_out), (1005, 1005));
    let first = &two_open.open[0];
    assert_eq!(first.connection.peer, a.local_addr().unwrap());
    assert_eq!((first.bytes_in, first.bytes_out), (5, 5));
    assert_eq!(
        (two_open.open[1].bytes_in, two_open.open[1].bytes_out),
        (1000, 1000)
    );

    // One closes cleanly (half-close, then the echo server finishes too).
    a.shutdown(Shutdown::Write).unwrap();
    let closed = (0..10_000).any(|_| sample(&sched, &request, &stats).closed == 1);
    assert!(closed, "the first connection never closed");
    let one_closed = sample(&sched, &request, &stats);
    assert_eq!(one_closed.accepted, 2);
    assert_eq!(one_closed.closed, 1);
    assert_eq!(one_closed.open.len(), 1);
    assert_eq!(one_closed.open[0].connection.peer, b.local_addr().unwrap());
    assert_eq!(
        one_closed.close_reasons.get("peer closed").copied(),
        Some(1),
        "{:?}",
        one_closed.close_reasons
    );
    // Bytes of closed connections stay in the totals.
    assert_eq!((one_closed.bytes_in, one_closed.bytes_out), (1005, 1005));

    control.deliver(Ipc::shutdown_microprocess()).unwrap();
    run_until(&sched, "the server to end", || server_core.is_finished());
    drop(b);
}
