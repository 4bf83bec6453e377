//! Operator statistics: SIGUSR1 makes `kamaelia serve` print a snapshot of what it is doing to
//! stderr (accepted, open, closed, bytes, close reasons, and a line per open connection).

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use util::{Server, HANG_GUARD};

#[test]
fn sigusr1_prints_a_stats_snapshot_to_stderr() {
    let server = Server::start(&["serve", "--listen", "127.0.0.1:0"]);
    let mut open = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    open.write_all(b"0123456789").unwrap();
    let mut back = [0u8; 10];
    open.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"0123456789");

    server.proc.signal("USR1");
    let deadline = Instant::now() + HANG_GUARD;
    let summary = loop {
        let stderr = server.proc.stderr();
        if let Some(line) = complete_lines(&stderr).find(|l| l.starts_with("stats: accepted=")) {
            break line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no stats line; stderr:\n{stderr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        summary,
        "stats: accepted=1 open=1 closed=0 bytes_in=10 bytes_out=10 close_reasons=[]"
    );
    let local = open.local_addr().unwrap();
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let stderr = server.proc.stderr();
        if complete_lines(&stderr).any(|l| {
            l.starts_with("stats: conn#")
                && l.contains(&format!("<- {local} "))
                && l.ends_with("bytes_in=10 bytes_out=10")
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no per-connection line; stderr:\n{stderr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The server is still serving.
    open.write_all(b"more").unwrap();
    let mut more = [0u8; 4];
    open.read_exact(&mut more).unwrap();
    assert_eq!(&more, b"more");
}

/// The lines of `text` that have their newline: the server writes a line in several pieces, so
/// the last one read may be only partly there.
fn complete_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
}
