//! Back-pressure through `kamaelia serve`: a client that sends without reading is slowed by TCP,
//! and the server's memory stays bounded while it waits; once the client reads, every byte arrives
//! intact and in order. On a chat server, connections blasting hundreds of lines at once slow down
//! to what the readers take, and the readers miss none of each other's lines.

mod util;

use std::time::{Duration, Instant};

use util::{echo_server, python, rss_bytes, run_python, Proc, Server, HANG_GUARD, PATTERN_PY};

/// 200 MiB in 64 KiB blocks of the shared pattern.
const BLOCKS: usize = 3200;

/// Allowed growth of the server's resident memory over its idle size.
const RSS_LIMIT: u64 = 64 * 1024 * 1024;

/// Pushes the pattern without reading until the send stalls (no room for 2 s), reports, waits for
/// READ on stdin, then reads and checks everything while sending the rest and half-closing.
const PUSHER_PY: &str = r#"
import select, socket, sys, threading
host, port, blocks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((host, port), timeout=30)
s.setblocking(False)
print("CONNECTED")
k, buf, sent = 0, b"", 0
for _ in range(10_000_000):
    if not buf:
        if k == blocks:
            sys.exit("sent everything without stalling: no back-pressure")
        buf = memoryview(block(k))
        k += 1
    _, w, _ = select.select([], [s], [], 2.0)
    if not w:
        break
    try:
        n = s.send(buf)
    except BlockingIOError:
        n = 0
    sent += n
    buf = buf[n:]
print("STALLED", sent)
if sys.stdin.readline().strip() != "READ":
    sys.exit("expected READ")
s.setblocking(True)
s.settimeout(60)
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
if buf:
    s.sendall(buf)
while k < blocks:
    s.sendall(block(k))
    k += 1
s.shutdown(socket.SHUT_WR)
t.join(240)
if t.is_alive():
    sys.exit(f"no EOF from the server after {check.total} bytes")
if failure:
    sys.exit(f"reader failed: {failure[0]}")
print("OK", check.total)
"#;

/// The largest RSS seen while waiting for a line starting with `prefix` from `peer` (sampling every
/// 10 ms), and the line.
fn sample_until(peer: &mut Proc, pid: u32, prefix: &str, wait: Duration) -> (u64, String) {
    let deadline = Instant::now() + wait;
    let mut peak = rss_bytes(pid);
    loop {
        if let Some(line) = peer.next_line(Duration::from_millis(10)) {
            if line.starts_with(prefix) {
                return (peak.max(rss_bytes(pid)), line);
            }
            println!("pusher: {line}");
        }
        peak = peak.max(rss_bytes(pid));
        assert!(
            Instant::now() < deadline,
            "no {prefix:?} from the pusher within {wait:?}; stderr:\n{}",
            peer.stderr()
        );
    }
}

#[test]
fn a_client_that_does_not_read_is_slowed_and_server_memory_stays_bounded() {
    let mut server = echo_server();
    let pid = server.pid();
    // Idle size: after startup, before any connection.
    std::thread::sleep(Duration::from_millis(200));
    let idle = rss_bytes(pid);

    let script = format!("{PATTERN_PY}\n{PUSHER_PY}");
    let mut pusher = Proc::spawn_lines(
        "pusher",
        python(
            &script,
            &[
                "127.0.0.1".into(),
                server.port().to_string(),
                BLOCKS.to_string(),
            ],
        ),
    );
    pusher.expect_line("CONNECTED", Duration::from_secs(30));
    let (peak_push, stalled) = sample_until(&mut pusher, pid, "STALLED", Duration::from_secs(120));
    // Stay stalled a while longer: memory must not creep up while the client still does not read.
    let mut peak_stalled = peak_push;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(10));
        peak_stalled = peak_stalled.max(rss_bytes(pid));
    }
    pusher.send_line("READ");
    let (peak_drain, ok) = sample_until(&mut pusher, pid, "OK", Duration::from_secs(240));

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "idle RSS {:.1} MiB; {stalled}; peak growth while pushing and stalled {:.1} MiB; \
         peak growth while draining {:.1} MiB",
        mib(idle),
        mib(peak_stalled.saturating_sub(idle)),
        mib(peak_drain.saturating_sub(idle)),
    );
    assert_eq!(ok, format!("OK {}", BLOCKS * 65536));
    assert!(
        peak_stalled.saturating_sub(idle) < RSS_LIMIT,
        "server RSS grew by {:.1} MiB while the client did not read (idle {:.1} MiB)",
        mib(peak_stalled.saturating_sub(idle)),
        mib(idle)
    );
    assert!(
        peak_drain.saturating_sub(idle) < RSS_LIMIT,
        "server RSS grew by {:.1} MiB while the client read (idle {:.1} MiB)",
        mib(peak_drain.saturating_sub(idle)),
        mib(idle)
    );
    pusher.finish(Duration::from_secs(30));
    server.assert_healthy();
}

/// Two chat clients, `a` and `b`, each reading all the time, exchange numbered lines while blaster
/// connections each send 128 KiB of random bytes (about 500 lines) and then reset or close,
/// several at once (the soak's reset worker, in a burst). Arguments: port, lines each way,
/// blasters at once, blasts each. Prints `OK` once `a` got every line of `b` and `b` every line of
/// `a`, each in order; exits non-zero on an early EOF or a missing line.
const CHAT_BLAST_PY: &str = r#"
import random, socket, struct, sys, threading, time
port, lines, blasters, blasts = (int(a) for a in sys.argv[1:5])
LINGER0 = struct.pack("ii", 1, 0)

def conn():
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

class Reader:
    """Reads a socket to EOF in the background, keeping everything."""
    def __init__(self, s, name):
        self.s, self.name, self.buf, self.end = s, name, bytearray(), None
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()
    def run(self):
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    self.end = "EOF"
                    return
                with self.lock:
                    self.buf += d
        except OSError as e:
            self.end = repr(e)
    def find(self, token, start):
        with self.lock:
            return self.buf.find(token, start)

a, b = conn(), conn()
ra, rb = Reader(a, "a"), Reader(b, "b")
# Both subscribed: b publishes until a hears it (a handler subscribes before it publishes).
deadline = time.time() + 60
for k in range(100_000):
    b.sendall(b"ready-%d\n" % k)
    time.sleep(0.01)
    if ra.find(b"ready-%d\n" % k, 0) >= 0:
        break
    if time.time() > deadline:
        sys.exit("a never heard b")

def blaster(seed):
    rng = random.Random(seed)
    for _ in range(blasts):
        c = conn()
        try:
            c.sendall(rng.randbytes(131072))
        except OSError:
            pass
        if rng.random() < 0.5:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
        c.close()

threads = [threading.Thread(target=blaster, args=(i,)) for i in range(blasters)]
for t in threads:
    t.start()
tag = random.Random(0).randbytes(8).hex().encode()
for k in range(lines):
    a.sendall(b"from-a-%s-%d\n" % (tag, k))
    b.sendall(b"from-b-%s-%d\n" % (tag, k))
for t in threads:
    t.join(120)

def check(reader, sender):
    # every line of `sender`, in order, at `reader`
    at = 0
    for k in range(lines):
        token = b"from-%s-%s-%d\n" % (sender, tag, k)
        while True:
            i = reader.find(token, at)
            if i >= 0:
                at = i + len(token)
                break
            if reader.end is not None:
                sys.exit(f"{reader.name}: {reader.end} while waiting for line {k} of {sender.decode()}")
            if time.time() > deadline + 120:
                sys.exit(f"{reader.name}: line {k} of {sender.decode()} not received (or out of order)")
            time.sleep(0.01)

check(ra, b"b")
check(rb, b"a")
a.close()
b.close()
print("OK")
"#;

#[test]
fn chat_clients_get_every_line_while_other_connections_blast_random_bytes() {
    let mut server = Server::start(&["serve", "--listen", "127.0.0.1:0", "--protocol", "chat"]);
    let args = [
        server.port().to_string(),
        "300".into(),
        "4".into(),
        "4".into(),
    ];
    let out = run_python(
        "chat pair under blasts",
        CHAT_BLAST_PY,
        &args,
        HANG_GUARD * 4,
    );
    assert_eq!(out, vec!["OK"]);
    server.assert_healthy();
}
