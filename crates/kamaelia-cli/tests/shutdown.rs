//! Graceful shutdown: SIGTERM stops `kamaelia serve` accepting, lets a transfer in progress
//! finish, and the process exits 0.

mod util;

use std::io::{Read, Write};
use std::time::Duration;

use util::{python, Proc, Server, HANG_GUARD, PATTERN_PY};

/// 10 MiB in 64 KiB blocks of the shared pattern.
const BLOCKS: usize = 160;

/// Sends half the pattern (reading the echo on a thread), reports HALF, waits for TERMED, checks
/// that new connections are refused, sends the rest, half-closes and checks every byte came back.
const TRANSFER_PY: &str = r#"
import socket, sys, threading, time
host, port, blocks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((host, port), timeout=60)
check = Checker()
failure = []
def reader():
    try:
        while True:
            d = s.recv(1 << 20)
            if not d:
                break
            check.feed(d)
        check.done(blocks)
    except BaseException as e:
        failure.append(repr(e))
t = threading.Thread(target=reader, daemon=True)
t.start()
half = blocks // 2
for k in range(half):
    s.sendall(block(k))
print("HALF")
if sys.stdin.readline().strip() != "TERMED":
    sys.exit("expected TERMED")
# The listener closes on the signal: new connections are soon refused. Any accepted meanwhile is
# closed at once and finishes cleanly.
for _ in range(1000):
    try:
        probe = socket.create_connection((host, port), timeout=10)
    except ConnectionRefusedError:
        break
    probe.close()
    time.sleep(0.01)
else:
    sys.exit("the server still accepts connections after SIGTERM")
print("REFUSED")
for k in range(half, blocks):
    s.sendall(block(k))
s.shutdown(socket.SHUT_WR)
t.join(120)
if t.is_alive():
    sys.exit(f"no EOF from the server after {check.total} bytes")
if failure:
    sys.exit(f"reader failed: {failure[0]}")
print("OK", check.total)
"#;

#[test]
fn sigterm_lets_a_transfer_in_progress_finish_then_exits_zero() {
    // A long drain deadline: the transfer must finish because it is drained, not because it is fast.
    let mut server = Server::start(&["serve", "--listen", "127.0.0.1:0", "--drain-timeout", "120"]);
    let script = format!("{PATTERN_PY}\n{TRANSFER_PY}");
    let mut client = Proc::spawn_lines(
        "python transfer",
        python(
            &script,
            &[
                "127.0.0.1".into(),
                server.port().to_string(),
                BLOCKS.to_string(),
            ],
        ),
    );
    client.expect_line("HALF", HANG_GUARD);
    server.proc.signal("TERM");
    client.send_line("TERMED");
    client.expect_line("REFUSED", HANG_GUARD);
    let ok = client.expect_line("OK", HANG_GUARD);
    assert_eq!(ok, format!("OK {}", BLOCKS * 65536));
    let status = client.finish(Duration::from_secs(10));
    assert!(status.success(), "{}", client.stderr());

    let status = server.proc.finish(HANG_GUARD);
    let stderr = server.proc.stderr();
    assert!(status.success(), "server exit {status}; stderr:\n{stderr}");
    assert!(
        stderr.contains("0 closed at the deadline"),
        "the server should report a clean drain; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_second_sigterm_exits_at_once_and_signals_need_no_thread() {
    // A drain deadline longer than any wait here: only the second signal can end the process.
    let mut server = Server::start(&["serve", "--listen", "127.0.0.1:0", "--drain-timeout", "120"]);
    // Signals reach the server through its event loop, not a thread of their own: a process with
    // one thread has cheaper malloc and system calls in glibc.
    let tasks = std::fs::read_dir(format!("/proc/{}/task", server.pid()))
        .expect("the server's /proc/PID/task")
        .count();
    assert_eq!(tasks, 1, "the server runs on one thread");

    // An open connection keeps the drain going after the first signal.
    let mut conn = std::net::TcpStream::connect(server.addr).expect("connect");
    conn.write_all(b"ping").unwrap();
    let mut echoed = [0u8; 4];
    conn.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping");

    server.proc.signal("TERM");
    // The first signal has been handled once the listener is closed (signals of one kind that
    // arrive together would count once).
    let refused = (0..2_000).any(|_| {
        let refused = std::net::TcpStream::connect(server.addr).is_err();
        if !refused {
            std::thread::sleep(Duration::from_millis(5));
        }
        refused
    });
    assert!(refused, "the listener stayed open after SIGTERM");
    assert!(server.proc.is_running(), "{}", server.proc.stderr());

    server.proc.signal("TERM");
    let status = server.proc.finish(HANG_GUARD);
    let stderr = server.proc.stderr();
    assert_eq!(status.code(), Some(128 + 15), "stderr:\n{stderr}");
    assert!(stderr.contains("second signal: exiting now"), "{stderr}");
    // The connection was not drained: the process ended under it.
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
}
