//! The `kamaelia` binary end to end, against peers that are not our code: Python's `socket`
//! module, `nc` (netcat-openbsd) and `socat`.

mod util;

use std::process::{Command, Stdio};
use std::time::Duration;

use util::{
    echo_server, random_bytes, require, run_python, run_with_input, Proc, Server, BIN, HANG_GUARD,
};

/// Sends N random bytes, half-closes, reads to EOF on a thread, and checks the echo is identical.
const ECHO_CLIENT_PY: &str = r#"
import os, socket, sys, threading
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = os.urandom(n)
s = socket.create_connection((host, port), timeout=60)
got = []
def reader():
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        got.append(b)
t = threading.Thread(target=reader, daemon=True)
t.start()
s.sendall(data)
s.shutdown(socket.SHUT_WR)
t.join(120)
if t.is_alive():
    sys.exit("no EOF from the server")
back = b"".join(got)
if back != data:
    m = min(len(back), len(data))
    i = next((i for i in range(m) if back[i] != data[i]), m)
    sys.exit(f"sent {len(data)} bytes, got {len(back)} back, first difference at byte {i}")
s.close()
print("OK", len(back))
"#;

const TEN_MB: usize = 10 * 1024 * 1024;

fn args(v: &[&dyn ToString]) -> Vec<String> {
    v.iter().map(|a| a.to_string()).collect()
}

#[test]
fn ten_megabytes_echo_back_identical_after_half_close() {
    let mut server = echo_server();
    let out = run_python(
        "python echo client",
        ECHO_CLIENT_PY,
        &args(&[&"127.0.0.1", &server.port(), &TEN_MB]),
        HANG_GUARD,
    );
    assert_eq!(out, vec![format!("OK {TEN_MB}")]);
    server.assert_healthy();
}

#[test]
fn netcat_gets_ten_megabytes_echoed_back() {
    require("nc");
    let mut server = echo_server();
    let data = random_bytes(TEN_MB, 7);
    let mut nc = Command::new("nc");
    // -N: shut down the write side at stdin EOF; nc then exits when the server closes.
    nc.args(["-N", "127.0.0.1", &server.port().to_string()]);
    let (status, out, stderr) = run_with_input("nc", nc, data.clone(), HANG_GUARD);
    assert!(status.success(), "nc failed ({status}): {stderr}");
    assert_eq!(out.len(), data.len(), "nc got {} bytes back", out.len());
    assert!(out == data, "the echoed bytes differ");
    server.assert_healthy();
}

#[test]
fn printf_hello_through_connect_prints_hello() {
    let mut server = echo_server();
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!(
            "printf 'hello\\n' | \"{BIN}\" connect 127.0.0.1:{}",
            server.port()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (status, out, stderr) = run_with_input("printf | kamaelia connect", sh, vec![], HANG_GUARD);
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");
    assert_eq!(String::from_utf8_lossy(&out), "hello\n");
    assert_eq!(stderr, "");
    server.assert_healthy();
}

/// Three clients: first until each has heard every other (so all are subscribed), then each sends
/// one line; each must get exactly the other two and never its own.
const CHAT_CLIENTS_PY: &str = r#"
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
N = 3
socks = [socket.create_connection((host, port), timeout=10) for _ in range(N)]
for s in socks:
    s.setblocking(False)
bufs = [b""] * N
lines = [[] for _ in range(N)]
def pump(i):
    for _ in range(1000):
        try:
            d = socks[i].recv(65536)
        except BlockingIOError:
            return
        if not d:
            sys.exit(f"client {i}: the server closed the connection; it saw {lines[i]}")
        bufs[i] += d
        while b"\n" in bufs[i]:
            line, bufs[i] = bufs[i].split(b"\n", 1)
            lines[i].append(line.decode())
def senders(i, kind):
    return {int(l.split()[1]) for l in lines[i] if l.startswith(kind + " ")}
def others(i):
    return set(range(N)) - {i}
for rnd in range(200):
    for i, s in enumerate(socks):
        s.sendall(f"sync {i} {rnd}\n".encode())
    time.sleep(0.05)
    for i in range(N):
        pump(i)
    if all(senders(i, "sync") == others(i) for i in range(N)):
        break
else:
    sys.exit(f"the clients never heard each other: {lines}")
for i, s in enumerate(socks):
    s.sendall(f"msg {i} hello from client {i}\n".encode())
for _ in range(1000):
    if all(senders(i, "msg") == others(i) for i in range(N)):
        break
    time.sleep(0.02)
    for i in range(N):
        pump(i)
for i in range(N):
    own = [l for l in lines[i] if int(l.split()[1]) == i]
    if own:
        sys.exit(f"client {i} got its own lines back: {own}")
    msgs = sorted(l for l in lines[i] if l.startswith("msg "))
    want = sorted(f"msg {j} hello from client {j}" for j in others(i))
    if msgs != want:
        sys.exit(f"client {i} got {msgs}, expected {want}")
for s in socks:
    s.close()
print("OK")
"#;

#[test]
fn three_chat_clients_see_each_others_lines_and_not_their_own() {
    let mut server = Server::start(&["serve", "--listen", "127.0.0.1:0", "--protocol", "chat"]);
    let out = run_python(
        "python chat clients",
        CHAT_CLIENTS_PY,
        &args(&[&"127.0.0.1", &server.port()]),
        HANG_GUARD,
    );
    assert_eq!(out, vec!["OK"]);
    server.assert_healthy();
}

fn relay_to(target: &Server) -> Server {
    Server::start(&[
        "relay",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &format!("127.0.0.1:{}", target.port()),
    ])
}

#[test]
fn relay_passes_ten_megabytes_both_ways_python() {
    let mut echo = echo_server();
    let mut relay = relay_to(&echo);
    let out = run_python(
        "python client via relay",
        ECHO_CLIENT_PY,
        &args(&[&"127.0.0.1", &relay.port(), &TEN_MB]),
        HANG_GUARD,
    );
    assert_eq!(out, vec![format!("OK {TEN_MB}")]);
    relay.assert_healthy();
    echo.assert_healthy();
}

#[test]
fn relay_passes_ten_megabytes_both_ways_socat() {
    require("socat");
    let mut echo = echo_server();
    let mut relay = relay_to(&echo);
    let data = random_bytes(TEN_MB, 11);
    let mut socat = Command::new("socat");
    // -t: after stdin EOF (half-close sent), wait this long for the other direction to end.
    socat.args(["-t", "60", "-", &format!("TCP:127.0.0.1:{}", relay.port())]);
    let (status, out, stderr) = run_with_input("socat", socat, data.clone(), HANG_GUARD);
    assert!(status.success(), "socat failed ({status}): {stderr}");
    assert_eq!(out.len(), data.len(), "socat got {} bytes back", out.len());
    assert!(out == data, "the relayed bytes differ");
    relay.assert_healthy();
    echo.assert_healthy();
}

/// N connections open at once from one process (non-blocking sockets and selectors), each sending
/// SIZE random bytes, half-closing and reading to EOF; each echo must be identical.
const MANY_CLIENTS_PY: &str = r#"
import os, resource, selectors, socket, sys, time
host, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft != resource.RLIM_INFINITY and soft < n + 64:
    want = n + 1024 if hard == resource.RLIM_INFINITY else min(hard, n + 1024)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
sel = selectors.DefaultSelector()
R, W = selectors.EVENT_READ, selectors.EVENT_WRITE
for i in range(n):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((host, port))
    sel.register(s, R | W, {"i": i, "s": s, "data": memoryview(os.urandom(size)), "sent": 0,
                            "got": bytearray(), "wdone": False})
open_now = n
peak = n
done = 0
deadline = time.monotonic() + 100
while done < n:
    if time.monotonic() > deadline:
        sys.exit(f"only {done} of {n} connections finished in time")
    for key, ev in sel.select(timeout=1):
        c = key.data
        s = c["s"]
        try:
            if ev & W and not c["wdone"]:
                try:
                    c["sent"] += s.send(c["data"][c["sent"]:c["sent"] + 65536])
                except BlockingIOError:
                    pass
                if c["sent"] == size:
                    s.shutdown(socket.SHUT_WR)
                    c["wdone"] = True
                    sel.modify(s, R, c)
            if ev & R:
                try:
                    d = s.recv(1 << 17)
                except BlockingIOError:
                    continue
                if d:
                    c["got"] += d
                    continue
                if not c["wdone"]:
                    sys.exit(f"connection {c['i']}: EOF after sending only {c['sent']} bytes")
                if c["got"] != c["data"]:
                    sys.exit(f"connection {c['i']}: echo differs ({len(c['got'])} bytes back)")
                sel.unregister(s)
                s.close()
                done += 1
        except OSError as e:
            sys.exit(f"connection {c['i']}: {e!r}")
print("OK", done)
"#;

#[test]
fn a_thousand_concurrent_connections_each_echo_64_kib() {
    // 1,000 connections need more than a 1,024-descriptor default leaves comfortably.
    let mut server = Server::start_sh(
        "ulimit -n 4096 2>/dev/null || true",
        &["serve", "--listen", "127.0.0.1:0"],
    );
    let out = run_python(
        "python 1000 clients",
        MANY_CLIENTS_PY,
        &args(&[&"127.0.0.1", &server.port(), &1000, &(64 * 1024)]),
        Duration::from_secs(120),
    );
    assert_eq!(out, vec!["OK 1000"]);
    server.assert_healthy();
}

#[test]
fn a_relay_to_a_host_name_passes_200_concurrent_connections() {
    // `localhost` may also resolve to ::1, where nothing listens: those attempts are refused and
    // the next address is tried (then tried first). The connections share lookups.
    let mut echo = echo_server();
    let mut relay = Server::start(&[
        "relay",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &format!("localhost:{}", echo.port()),
    ]);
    let out = run_python(
        "python 200 clients via a relay to localhost",
        MANY_CLIENTS_PY,
        &args(&[&"127.0.0.1", &relay.port(), &200, &(16 * 1024)]),
        Duration::from_secs(120),
    );
    assert_eq!(out, vec!["OK 200"]);
    relay.assert_healthy();
    echo.assert_healthy();
}

#[test]
fn a_relay_says_which_connections_could_not_reach_the_target() {
    // Nothing listens on the target port. The first connection looks `localhost` up through a
    // client; the second connects with a bare adapter if `localhost` has one address here (then
    // its line names the address), through a client again if it has more. Both failures are
    // logged, by default, and each client sees its connection closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut relay = Server::start_default_log(&[
        "relay",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &format!("localhost:{closed}"),
    ]);
    for _ in 0..2 {
        let mut s = std::net::TcpStream::connect(relay.addr).expect("connect to the relay");
        s.set_read_timeout(Some(HANG_GUARD)).unwrap();
        let mut got = Vec::new();
        let read = std::io::Read::read_to_end(&mut s, &mut got);
        assert!(read.is_ok() && got.is_empty(), "{read:?} {got:?}");
    }
    let failures = |stderr: &str| -> Vec<String> {
        stderr
            .lines()
            .filter(|l| l.contains("cannot connect to"))
            .map(str::to_owned)
            .collect()
    };
    let start = std::time::Instant::now();
    while failures(&relay.proc.stderr()).len() < 2 {
        assert!(
            start.elapsed() < HANG_GUARD,
            "not two such lines; stderr:\n{}",
            relay.proc.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let lines = failures(&relay.proc.stderr());
    assert!(
        lines[0].contains(&format!(
            "cannot connect to localhost:{closed}: Connection refused"
        )),
        "{lines:?}"
    );
    let second = [
        format!("cannot connect to localhost:{closed}: Connection refused"),
        format!("cannot connect to 127.0.0.1:{closed}: Connection refused"),
    ];
    assert!(
        second.iter().any(|w| lines[1].contains(w.as_str())),
        "{lines:?}"
    );
    relay.assert_healthy();
}

/// A server that sends "bye" and closes as soon as a client connects.
const BYE_SERVER_PY: &str = r#"
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
print("PORT", s.getsockname()[1])
c, _ = s.accept()
c.sendall(b"bye\n")
c.close()
print("CLOSED")
"#;

#[test]
fn connect_exits_once_the_peer_has_closed_even_if_stdin_has_not_ended() {
    let mut peer = Proc::spawn_lines("python bye server", util::python(BYE_SERVER_PY, &[]));
    let port = peer.expect_line("PORT ", HANG_GUARD)[5..].to_owned();
    let mut cmd = Command::new(BIN);
    cmd.args(["connect", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // stdin is a pipe this test holds open until the end: it never ends while connect runs.
    let mut connect = Proc::spawn("kamaelia connect", cmd);
    let _stdin_held_open = connect.child().stdin.take();
    let mut stdout = connect.child().stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        out
    });
    let mut stderr = connect.child().stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut out);
        out
    });
    peer.expect_line("CLOSED", HANG_GUARD);
    let status = connect.wait_timeout(Duration::from_secs(30));
    let err = util::join_bounded(err_reader, Duration::from_secs(5)).unwrap_or_default();
    let status = status.unwrap_or_else(|| {
        panic!("kamaelia connect still runs 30 s after the peer closed; stderr:\n{err}")
    });
    let out = util::join_bounded(reader, Duration::from_secs(5)).unwrap_or_default();
    assert!(status.success(), "exit {status}; stderr:\n{err}");
    assert_eq!(out, "bye\n");
}
