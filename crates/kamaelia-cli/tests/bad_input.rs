//! Bad input and hostile conditions: busy ports, unparsable addresses, refused connections, peers
//! that reset mid-transfer, and running out of file descriptors.

mod util;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::{
    cpu_time, echo_server, python, run_python, run_with_input, Proc, Server, BIN, HANG_GUARD,
};

/// Runs `kamaelia ARGS…` with empty stdin and asserts it fails with exactly one stderr line, which
/// starts `error:`, and prints nothing on stdout. Returns that line.
fn assert_one_error_line(args: &[&str]) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("KAMAELIA_LOG", "warn");
    let (status, out, stderr) = run_with_input("kamaelia", cmd, vec![], HANG_GUARD);
    assert!(
        !status.success(),
        "kamaelia {args:?} succeeded; stderr:\n{stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        "",
        "kamaelia {args:?} printed on stdout"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("error:"),
        "kamaelia {args:?} should print one `error:` line, printed:\n{stderr}"
    );
    lines[0].to_owned()
}

#[test]
fn a_busy_port_gives_one_error_line_and_a_failure_exit() {
    let mut server = echo_server();
    let busy = server.addr.to_string();
    let line = assert_one_error_line(&["serve", "--listen", &busy]);
    assert!(line.contains("in use"), "{line}");
    let line = assert_one_error_line(&["relay", "--listen", &busy, "--to", "127.0.0.1:9"]);
    assert!(line.contains("in use"), "{line}");
    server.assert_healthy();
}

#[test]
fn hibernation_is_refused_for_chat_and_for_a_negative_time() {
    let line = assert_one_error_line(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--protocol",
        "chat",
        "--hibernate-after",
        "1",
    ]);
    assert!(line.contains("chat"), "{line}");
    let line = assert_one_error_line(&["serve", "--listen", "127.0.0.1:0", "--hibernate-after=-1"]);
    assert!(line.contains("--hibernate-after"), "{line}");
}

#[test]
fn unparsable_addresses_give_one_error_line_and_a_failure_exit() {
    // None of these reaches a resolver: no network traffic beyond loopback.
    for listen in [
        "not-an-address",
        "127.0.0.1:99999",
        "127.0.0.1:",
        ":80",
        "127.0.0.1:-1",
    ] {
        assert_one_error_line(&["serve", "--listen", listen]);
    }
    for target in ["not-an-address", "127.0.0.1:http", "[::1]"] {
        assert_one_error_line(&["connect", target]);
    }
    assert_one_error_line(&["relay", "--listen", "127.0.0.1:0", "--to", "nowhere"]);
    assert_one_error_line(&["relay", "--listen", "bad", "--to", "127.0.0.1:80"]);
}

/// Holds a port that is bound but not listening, so connecting to it is refused; ends when stdin
/// closes.
const BOUND_NOT_LISTENING_PY: &str = r#"
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
print("PORT", s.getsockname()[1])
sys.stdin.read()
"#;

#[test]
fn a_refused_connect_gives_one_error_line_and_a_failure_exit() {
    let mut holder = Proc::spawn_lines("port holder", python(BOUND_NOT_LISTENING_PY, &[]));
    let port = holder.expect_line("PORT ", HANG_GUARD)[5..].to_owned();
    let line = assert_one_error_line(&["connect", &format!("127.0.0.1:{port}")]);
    assert!(line.to_lowercase().contains("refused"), "{line}");
}

/// Connection A echoes; connection B pushes data without reading until the server is stuck
/// mid-transfer, then resets (SO_LINGER 0). The server must close B only: its descriptor count
/// returns to what it was with A alone, A still echoes, and a new connection C echoes.
const RESET_PY: &str = r#"
import os, select, socket, struct, sys, time
host, port, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def fds():
    return len(os.listdir(f"/proc/{pid}/fd"))
def echo(s, payload):
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        d = s.recv(65536)
        if not d:
            sys.exit("server closed a connection it should keep")
        got += d
    if got != payload:
        sys.exit(f"echo differs: {got[:50]!r}")
a = socket.create_connection((host, port), timeout=20)
echo(a, b"before\n")
with_a = fds()
b = socket.create_connection((host, port), timeout=20)
echo(b, b"b is up\n")
if fds() != with_a + 1:
    sys.exit(f"expected {with_a + 1} server descriptors with B open, found {fds()}")
b.setblocking(False)
chunk = os.urandom(65536)
pushed = 0
while pushed < (64 << 20):
    _, w, _ = select.select([], [b], [], 1.0)
    if not w:
        break
    try:
        pushed += b.send(chunk)
    except BlockingIOError:
        pass
b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
b.close()
for _ in range(1000):
    if fds() == with_a:
        break
    time.sleep(0.01)
else:
    sys.exit(f"the reset connection was not closed: {fds()} server descriptors, {with_a} expected")
echo(a, b"after\n")
c = socket.create_connection((host, port), timeout=20)
echo(c, b"new connection\n" * 1000)
c.close()
a.close()
print("OK", pushed)
"#;

#[test]
fn a_peer_reset_mid_transfer_closes_only_that_connection() {
    let mut server = echo_server();
    let out = run_python(
        "python reset",
        RESET_PY,
        &[
            "127.0.0.1".into(),
            server.port().to_string(),
            server.pid().to_string(),
        ],
        HANG_GUARD,
    );
    println!("{out:?}");
    assert!(out.len() == 1 && out[0].starts_with("OK "), "{out:?}");
    server.assert_healthy();
}

/// The server's descriptor limit in the exhaustion test.
const FD_LIMIT: usize = 64;

/// Opens "keep" connections, then connections until one is not accepted (its byte is not echoed
/// while the server holds every descriptor it may), then floods for 1 s while the test measures the
/// server's CPU, then closes the flood and checks a new connection is served.
const FD_FLOOD_PY: &str = r#"
import os, socket, sys, time
host, port, pid, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def fds():
    # Descriptors inherited above the limit (e.g. a jobserver pipe) take no slot below it.
    return sum(1 for f in os.listdir(f"/proc/{pid}/fd") if int(f) < limit)
def echoes(s, payload, wait):
    s.settimeout(wait)
    s.sendall(payload)
    got = b""
    try:
        while len(got) < len(payload):
            d = s.recv(65536)
            if not d:
                sys.exit("server closed a connection it should keep")
            got += d
    except socket.timeout:
        return False
    if got != payload:
        sys.exit(f"echo differs: {got[:50]!r}")
    return True
keep = [socket.create_connection((host, port), timeout=20) for _ in range(4)]
for i, s in enumerate(keep):
    if not echoes(s, f"keep {i}\n".encode(), 20):
        sys.exit(f"keep connection {i} got no echo")
flood = []
accepted = 0
for i in range(1000):
    s = socket.create_connection((host, port), timeout=20)
    flood.append(s)
    # A connection the server cannot accept stays in the listen backlog: no echo. Once the
    # server holds every descriptor it may, a short wait tells; otherwise wait as long as it takes.
    if echoes(s, b"x", 0.5 if fds() >= limit else 20):
        accepted += 1
    elif fds() >= limit:
        break
    else:
        sys.exit(f"connection {i} got no echo but the server holds only {fds()} descriptors")
else:
    sys.exit("the server never ran out of descriptors")
print("EXHAUSTED", accepted, fds())
for i, s in enumerate(keep):
    if not echoes(s, f"still {i}\n".encode(), 20):
        sys.exit(f"keep connection {i} stopped echoing when descriptors ran out")
print("FLOOD_START")
end = time.monotonic() + 1.0
while time.monotonic() < end:
    s = socket.create_connection((host, port), timeout=20)
    s.sendall(b"y")
    flood.append(s)
    time.sleep(0.01)
print("FLOOD_END", len(flood))
for i, s in enumerate(keep):
    if not echoes(s, f"after flood {i}\n".encode(), 20):
        sys.exit(f"keep connection {i} stopped echoing during the flood")
for s in flood:
    s.close()
c = socket.create_connection((host, port), timeout=20)
if not echoes(c, b"new connection\n", 30):
    sys.exit("a new connection was not served after the flood closed")
c.close()
for i, s in enumerate(keep):
    if not echoes(s, f"end {i}\n".encode(), 20):
        sys.exit(f"keep connection {i} stopped echoing")
    s.close()
print("OK")
"#;

#[test]
fn running_out_of_file_descriptors_does_not_spin_or_break_existing_connections() {
    let mut server = Server::start_sh(
        &format!("ulimit -n {FD_LIMIT}"),
        &["serve", "--listen", "127.0.0.1:0"],
    );
    let pid = server.pid();
    let mut flood = Proc::spawn_lines(
        "python fd flood",
        python(
            FD_FLOOD_PY,
            &[
                "127.0.0.1".into(),
                server.port().to_string(),
                pid.to_string(),
                FD_LIMIT.to_string(),
            ],
        ),
    );
    let exhausted = flood.expect_line("EXHAUSTED", HANG_GUARD);
    println!("{exhausted}");
    flood.expect_line("FLOOD_START", HANG_GUARD);
    let (cpu0, t0) = (cpu_time(pid), Instant::now());
    let flood_end = flood.expect_line("FLOOD_END", HANG_GUARD);
    let (cpu, wall) = (cpu_time(pid) - cpu0, t0.elapsed());
    println!(
        "{flood_end}: server CPU {cpu:?} over {wall:?} ({:.1}%)",
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
    );
    flood.expect_line("OK", HANG_GUARD);
    println!("server stderr:\n{}", server.proc.stderr());
    let status = flood.finish(Duration::from_secs(10));
    assert!(status.success(), "{}", flood.stderr());
    assert!(
        cpu.as_secs_f64() < 0.2 * wall.as_secs_f64(),
        "the server used {cpu:?} of CPU in {wall:?} while out of descriptors: it spins"
    );
    server.assert_healthy();
}

#[test]
fn a_refused_connect_fails_without_waiting_for_stdin() {
    // stdin is a pipe held open: the failure must not wait for input to end.
    let mut holder = Proc::spawn_lines("port holder", python(BOUND_NOT_LISTENING_PY, &[]));
    let port = holder.expect_line("PORT ", HANG_GUARD)[5..].to_owned();
    let mut cmd = Command::new(BIN);
    cmd.args(["connect", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut connect = Proc::spawn("kamaelia connect", cmd);
    let _held = connect.child().stdin.take();
    let status = connect.finish(HANG_GUARD);
    assert!(!status.success());
}
