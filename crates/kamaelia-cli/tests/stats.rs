//! Operator statistics: SIGUSR1 makes `kamaelia serve` print a snapshot of what it is doing to
//! stderr (accepted, open, closed, bytes, close reasons, and a line per open connection).

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use util::{Server, HANG_GUARD};

#[test]
fn sigusr1_prints_a_stats_snapshot_to_stderr() {
    let server = Server::start(&["serve", "--listen", "127.0.0.1:0", "--hibernate-after", "0"]);
    let mut open = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    round_trip(&mut open, b"0123456789");

    let summary = sample(&server, 0);
    assert_eq!(
        summary,
        "stats: accepted=1 open=1 hibernating=0 closed=0 bytes_in=10 bytes_out=10 close_reasons=[]"
    );
    let local = open.local_addr().unwrap();
    wait_for_line(&server, "a per-connection line", |l| {
        l.starts_with("stats: conn#")
            && l.contains(&format!("<- {local} "))
            && l.ends_with("bytes_in=10 bytes_out=10")
    });
    // The server is still serving.
    round_trip(&mut open, b"more");
}

#[test]
fn idle_echo_connections_hibernate_and_wake_under_the_same_id() {
    let server = Server::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--hibernate-after",
        "0.05",
    ]);
    let mut a = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    round_trip(&mut a, b"0123456789");
    // Ask until the snapshot shows it hibernating (a snapshot per signal).
    let deadline = Instant::now() + HANG_GUARD;
    let mut asked = 0;
    let asleep = loop {
        let line = sample(&server, asked);
        asked += 1;
        if line.contains(" hibernating=1 ") {
            break line;
        }
        assert!(Instant::now() < deadline, "never hibernated: {line}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        asleep,
        "stats: accepted=1 open=1 hibernating=1 closed=0 bytes_in=10 bytes_out=10 close_reasons=[]"
    );
    // It wakes on the next bytes, and its counts go on from where they were.
    round_trip(&mut a, b"more");
    let awake = sample(&server, asked);
    let fields: Vec<&str> = awake
        .split(' ')
        .filter(|f| !f.starts_with("hibernating="))
        .collect();
    assert_eq!(
        fields.join(" "),
        "stats: accepted=1 open=1 closed=0 bytes_in=14 bytes_out=14 close_reasons=[]"
    );
}

/// Sends `msg` and reads the same bytes back.
fn round_trip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, msg);
}

/// Sends SIGUSR1 and returns the summary line it printed: the one after the `before` summaries
/// already printed.
fn sample(server: &Server, before: usize) -> String {
    server.proc.signal("USR1");
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let stderr = server.proc.stderr();
        if let Some(line) = complete_lines(&stderr)
            .filter(|l| l.starts_with("stats: accepted="))
            .nth(before)
        {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no stats line; stderr:\n{stderr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a complete stderr line that satisfies `want`.
fn wait_for_line(server: &Server, what: &str, want: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let stderr = server.proc.stderr();
        if complete_lines(&stderr).any(&want) {
            return;
        }
        assert!(Instant::now() < deadline, "no {what}; stderr:\n{stderr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The lines of `text` that have their newline: the last one read may be only partly there.
fn complete_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
}
