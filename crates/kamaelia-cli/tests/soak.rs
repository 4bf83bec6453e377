//! Soak tests against the real `kamaelia` binary: connection churn, and a long mixed load. What they
//! check is what a long-running server must not do: keep descriptors of connections that are gone,
//! or grow its resident memory with the number of connections it has served.
//!
//! * 200,000 connect / one-byte echo / close cycles (one in eight closed with a reset) leave the
//!   server with the descriptors it started with, and its resident memory within 10% of where it
//!   was after the first quarter of the cycles.
//! * A 5-minute mixed load (echo of random sizes, half-closes, resets, a pool of idle connections,
//!   chat pairs on a chat server that resetting connections blast with up to 128 KiB of lines at
//!   once) leaves both servers with their starting descriptors, and their resident memory at the
//!   end of the load within 10% of where it settled after the first minute; every chat pair gets
//!   all its lines. Ignored by `cargo test` for its length: `.ci/run` runs it after the workspace
//!   tests, as `cargo test -p kamaelia-cli --test soak -- --ignored`. `KAMAELIA_SOAK_SECS`
//!   shortens it for a quick local try.
//!
//! The clients are Python processes (not our code). Every process is killed by its id when its
//! guard drops; every loop is bounded in count and in time; traffic stays on loopback (the churn
//! clients bind to 127.0.0.2–127.0.0.254 so that their TIME_WAIT entries spread over many source
//! addresses instead of exhausting one address's ephemeral ports). Nothing asserts how long anything
//! took: the deadlines are hang guards, the assertions are resource readings.

mod util;

use std::thread;
use std::time::{Duration, Instant};

use util::{fd_count, python, rss_bytes, Proc, Server};

/// How long one batch of client processes may run before the test gives up (a hang guard: a
/// batch of 50,000 debug-build cycles takes well under a minute on an idle 2-core machine).
const BATCH_GUARD: Duration = Duration::from_secs(900);

/// How long a server may take to close what its clients closed, and for its memory to settle.
const SETTLE: Duration = Duration::from_secs(20);

/// Allowed resident memory growth, as a fraction of the reference reading.
const RSS_SLACK: f64 = 0.10;

/// `N` cycles of connect, send one byte, read it back, close; every eighth close is a reset
/// (SO_LINGER 0). Worker `W` of `K` binds to the 127.0.0.x addresses with x ≡ W (mod K), x in
/// 2..=254, in turn. Prints `DONE cycles resets`.
const CHURN_PY: &str = r#"
import socket, struct, sys
host, port, n, worker, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
LINGER0 = struct.pack("ii", 1, 0)
srcs = [f"127.0.0.{a}" for a in range(2, 255) if a % workers == worker % workers]
resets = 0
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.bind((srcs[i % len(srcs)], 0))
        s.connect((host, port))
        b = bytes([i & 0xFF])
        s.sendall(b)
        got = s.recv(1)
        if got != b:
            raise SystemExit(f"cycle {i}: sent {b!r}, got {got!r}")
        if i % 8 == 7:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
            resets += 1
    finally:
        s.close()
print(f"DONE {n} {resets}")
"#;

/// Waits (bounded by [`SETTLE`]) for the server's descriptor count to come back to `want`; returns
/// the last count read.
fn settle_fds(pid: u32, want: usize) -> usize {
    let deadline = Instant::now() + SETTLE;
    loop {
        let n = fd_count(pid);
        if n == want || Instant::now() >= deadline {
            return n;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Resident memory once the server has been quiet for a moment: the lowest of a few readings a
/// little apart (a reading taken while the last connections are being torn down would be high).
fn settled_rss(pid: u32) -> u64 {
    thread::sleep(Duration::from_millis(500));
    (0..5)
        .map(|_| {
            thread::sleep(Duration::from_millis(100));
            rss_bytes(pid)
        })
        .min()
        .expect("five readings")
}

fn kib(bytes: u64) -> u64 {
    bytes / 1024
}

/// Runs `cycles` churn cycles against `server`, split between `workers` Python processes running
/// at once; asserts each completed them all.
fn churn(server: &Server, cycles: usize, workers: usize) {
    let port = server.port().to_string();
    let mut procs: Vec<Proc> = (0..workers)
        .map(|w| {
            let n = cycles / workers + usize::from(w < cycles % workers);
            let args = [
                "127.0.0.1".to_owned(),
                port.clone(),
                n.to_string(),
                w.to_string(),
                workers.to_string(),
            ];
            let mut p = Proc::spawn_lines(&format!("churn client {w}"), python(CHURN_PY, &args));
            p.close_stdin();
            p
        })
        .collect();
    for p in &mut procs {
        let status = p.finish(BATCH_GUARD);
        let lines = p.remaining_lines();
        assert!(
            status.success() && lines.iter().any(|l| l.starts_with("DONE ")),
            "a churn client failed ({status}); stdout: {lines:?}; stderr:\n{}",
            p.stderr()
        );
    }
}

#[test]
fn churn_of_200k_connections_leaves_no_descriptors_or_memory_behind() {
    const CYCLES: usize = 200_000;
    const BATCHES: usize = 4;
    const WORKERS: usize = 2;
    let mut server = util::echo_server();
    let pid = server.pid();
    thread::sleep(Duration::from_millis(200));
    let fds_start = fd_count(pid);
    let rss_start = rss_bytes(pid);
    let started = Instant::now();

    let mut rss_after = Vec::new();
    for batch in 0..BATCHES {
        churn(&server, CYCLES / BATCHES, WORKERS);
        server.assert_healthy();
        let fds = settle_fds(pid, fds_start);
        let rss = settled_rss(pid);
        println!(
            "after {} cycles ({:.0?}): {fds} descriptors (started with {fds_start}), \
             resident {} KiB (started at {} KiB)",
            (batch + 1) * CYCLES / BATCHES,
            started.elapsed(),
            kib(rss),
            kib(rss_start),
        );
        assert_eq!(
            fds,
            fds_start,
            "the server holds {fds} descriptors after {} cycles, {fds_start} before any",
            (batch + 1) * CYCLES / BATCHES
        );
        rss_after.push(rss);
    }

    let (first_quarter, end) = (rss_after[0], rss_after[BATCHES - 1]);
    assert!(
        end as f64 <= first_quarter as f64 * (1.0 + RSS_SLACK),
        "resident memory grew from {} KiB after the first quarter of the cycles to {} KiB after \
         all {CYCLES} (readings after each quarter, KiB: {:?})",
        kib(first_quarter),
        kib(end),
        rss_after.iter().map(|&r| kib(r)).collect::<Vec<_>>()
    );
    server.assert_healthy();
}

/// The mixed load. Arguments: echo port, chat port, total seconds, seconds before the first quiet
/// point, idle pool size. Worker threads: two echo clients (1 to 5 round trips of random sizes up to 256 KiB,
/// checked, then a close, a half-close checked to EOF, or a reset), a half-closer (sends up to
/// 32 KiB, shuts down writing, checks the echo up to EOF), a resetter (connects, maybe sends,
/// resets without reading; on either server), a keeper of 64 idle connections to the echo server
/// (replaces the oldest every half second, now and then checking one with a one-byte echo; idle
/// chat clients would not read what the chat traffic publishes, so they would hold the chat room
/// back for its slow-client timeout and then be dropped), and a chat pair maker (two clients
/// make sure both are subscribed, exchange lines, then one finishes with an unterminated line the
/// other must receive).
///
/// At `first` seconds and again at `total` seconds the workers stop (the idle pool stays open),
/// the script prints `QUIET 1` / `QUIET 2` with its counts and waits for a line on stdin before
/// going on. After the second it closes the pool and prints `DONE` with its counts. It exits
/// non-zero on any unexpected error.
const MIXED_PY: &str = r#"
import collections, random, socket, struct, sys, threading, time, traceback
echo_port, chat_port, total, first = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
HOST = "127.0.0.1"
LINGER0 = struct.pack("ii", 1, 0)
MAX_ITER = 10_000_000
POOL = int(sys.argv[5])
stop = threading.Event()
lock = threading.Lock()
counts = collections.Counter()
errors = []
pool = collections.deque()

def count(k):
    with lock:
        counts[k] += 1

def conn(port):
    s = socket.create_connection((HOST, port), timeout=15)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

def reset(s):
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    except OSError:
        pass
    s.close()

def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        d = s.recv(min(65536, n - len(buf)))
        if not d:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += d
    return bytes(buf)

def recv_to_eof(s, limit):
    buf = bytearray()
    while len(buf) <= limit:
        d = s.recv(65536)
        if not d:
            return bytes(buf)
        buf += d
    raise ValueError(f"more than {limit} bytes before EOF")

def echo_worker(seed):
    rng = random.Random(seed)
    for _ in range(MAX_ITER):
        if stop.is_set():
            return
        s = conn(echo_port)
        try:
            for _ in range(rng.randint(1, 5)):
                n = rng.choice([1, rng.randint(1, 1024), rng.randint(1, 65536), rng.randint(1, 262144)])
                data = rng.randbytes(n)
                for i in range(0, n, 16384):
                    chunk = data[i:i + 16384]
                    s.sendall(chunk)
                    if recv_exact(s, len(chunk)) != chunk:
                        raise ValueError("echo differs")
                count("echo bytes")
            how = rng.random()
            if how < 0.2:
                s.shutdown(socket.SHUT_WR)
                if recv_to_eof(s, 0) != b"":
                    raise ValueError("data after half-close")
                s.close()
                count("echo half-close")
            elif how < 0.3:
                s.sendall(rng.randbytes(rng.randint(1, 65536)))
                reset(s)
                count("echo reset")
            else:
                s.close()
                count("echo close")
        except BaseException:
            s.close()
            raise

def half_close_worker(seed):
    rng = random.Random(seed)
    for _ in range(MAX_ITER):
        if stop.is_set():
            return
        s = conn(echo_port)
        try:
            data = rng.randbytes(rng.randint(0, 32768))
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            if recv_to_eof(s, len(data)) != data:
                raise ValueError("half-close echo differs")
        finally:
            s.close()
        count("half-close")

def reset_worker(seed):
    rng = random.Random(seed)
    for _ in range(MAX_ITER):
        if stop.is_set():
            return
        s = conn(rng.choice([echo_port, chat_port]))
        try:
            if rng.random() < 0.7:
                data = rng.randbytes(rng.randint(1, 131072))
                if rng.random() < 0.5:
                    data = data.replace(b"\n", b"") + b"\n"
                s.settimeout(0.5)
                try:
                    s.send(data)
                except (socket.timeout, ConnectionError):
                    pass
            if rng.random() < 0.5:
                time.sleep(0.01)
        finally:
            reset(s)
        count("reset")

def idle_worker(seed):
    rng = random.Random(seed)
    while len(pool) < POOL and not stop.is_set():
        pool.append(conn(echo_port))
    for _ in range(MAX_ITER):
        if stop.wait(0.5):
            return
        old = pool.popleft()
        if rng.random() < 0.3:
            reset(old)
        else:
            old.close()
        pool.append(conn(echo_port))
        count("idle replaced")
        if rng.random() < 0.5:
            probe = pool[rng.randrange(len(pool))]
            probe.sendall(b"?")
            if recv_exact(probe, 1) != b"?":
                raise ValueError("idle echo differs")
            count("idle probed")

def read_until(s, buf, token, deadline):
    # reads until `token` shows up in the stream (other clients' lines, and pieces of them
    # without a newline, may come before or around it); returns what followed it
    while True:
        i = buf.find(token)
        if i >= 0:
            return buf[i + len(token):]
        buf = buf[-len(token):]
        if time.time() > deadline:
            raise TimeoutError(f"chat: {token[:40]!r} not received")
        d = s.recv(65536)
        if not d:
            raise EOFError(f"chat: EOF while waiting for {token[:40]!r}")
        buf += d

def chat_worker(seed):
    rng = random.Random(seed)
    for it in range(MAX_ITER):
        if stop.is_set():
            return
        a, b = conn(chat_port), conn(chat_port)
        try:
            deadline = time.time() + 30
            tag = f"{seed}-{it}".encode()
            # b publishes until a hears it: then both are subscribed (a handler subscribes
            # before it publishes anything)
            a.settimeout(0.05)
            abuf = b""
            for k in range(600):
                b.sendall(b"ready-" + tag + b"-%d\n" % k)
                try:
                    abuf = read_until(a, abuf, b"ready-" + tag + b"-%d\n" % k, deadline)
                    break
                except socket.timeout:
                    continue
            else:
                raise TimeoutError("chat pair never saw each other")
            a.settimeout(15)
            b.settimeout(15)
            bbuf = b""
            for k in range(rng.randint(1, 20)):
                line = b"line-" + tag + b"-%d-" % k + rng.randbytes(rng.randint(0, 2000)).hex().encode()
                a.sendall(line + b"\n")
                bbuf = read_until(b, bbuf, line + b"\n", deadline)
            tail = b"tail-" + tag
            a.sendall(tail)
            a.shutdown(socket.SHUT_WR)
            bbuf = read_until(b, bbuf, tail, deadline)
            # the server closes a once it finished
            recv_to_eof(a, 1 << 20)
            count("chat pair")
        finally:
            a.close()
            if rng.random() < 0.2:
                reset(b)
            else:
                b.close()

def guarded(fn, seed):
    try:
        fn(seed)
    except BaseException as e:
        with lock:
            errors.append(f"{fn.__name__}: {e!r}\n{traceback.format_exc()}")
        stop.set()

def run_until(t_end, round_):
    stop.clear()
    workers = [(echo_worker, 1), (echo_worker, 2), (half_close_worker, 3), (reset_worker, 4),
               (idle_worker, 5), (chat_worker, 6)]
    threads = [threading.Thread(target=guarded, args=(fn, seed * 1000 + round_)) for fn, seed in workers]
    for t in threads:
        t.start()
    while time.time() < t_end and not stop.is_set():
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join(60)
        if t.is_alive():
            errors.append("a worker did not stop within 60 s")

def report(what):
    with lock:
        print(what, len(pool), dict(sorted(counts.items())), flush=True)
    if errors:
        for e in errors:
            print(e, file=sys.stderr)
        sys.exit(1)

t0 = time.time()
run_until(t0 + first, 1)
report("QUIET 1")
sys.stdin.readline()
run_until(t0 + total, 2)
report("QUIET 2")
sys.stdin.readline()
while pool:
    pool.popleft().close()
report("DONE")
"#;

/// Descriptor count (once it is `want_fds`, or [`SETTLE`] passed) and settled resident memory of
/// a server.
fn reading(server: &Server, want_fds: usize) -> (usize, u64) {
    let fds = settle_fds(server.pid(), want_fds);
    (fds, settled_rss(server.pid()))
}

/// Lets the mixed load go on after a quiet point, if it is still running.
fn go_on(load: &mut Proc) {
    thread::sleep(Duration::from_millis(100));
    assert!(
        load.is_running(),
        "the load stopped; stderr:\n{}",
        load.stderr()
    );
    load.send_line("go");
}

/// Size of the mixed load's pool of idle connections to the echo server.
const IDLE_POOL: usize = 64;

#[test]
#[ignore = "5-minute soak: run with cargo test -p kamaelia-cli --test soak -- --ignored"]
fn five_minutes_of_mixed_load_leave_descriptors_and_memory_where_they_settled() {
    let total: u64 = std::env::var("KAMAELIA_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let first = (total / 5).max(1);
    let mut echo = util::echo_server();
    let mut chat = Server::start(&["serve", "--listen", "127.0.0.1:0", "--protocol", "chat"]);
    thread::sleep(Duration::from_millis(200));
    let echo_start = fd_count(echo.pid());
    let chat_start = fd_count(chat.pid());

    let args = [
        echo.port().to_string(),
        chat.port().to_string(),
        total.to_string(),
        first.to_string(),
        IDLE_POOL.to_string(),
    ];
    let mut load = Proc::spawn_lines("mixed load", python(MIXED_PY, &args));
    let guard = Duration::from_secs(total + 300);

    // The idle pool stays open at the quiet points: the echo server then holds IDLE_POOL more
    // descriptors than at the start, the chat server none.
    let quiet1 = load.expect_line("QUIET 1", guard);
    println!("{quiet1}");
    let (echo_fds1, echo_rss1) = reading(&echo, echo_start + IDLE_POOL);
    let (chat_fds1, chat_rss1) = reading(&chat, chat_start);
    println!(
        "after {first} s: echo server {echo_fds1} descriptors (started with {echo_start}), \
         {} KiB; chat server {chat_fds1} descriptors (started with {chat_start}), {} KiB",
        kib(echo_rss1),
        kib(chat_rss1)
    );
    assert_eq!(
        (echo_fds1, chat_fds1),
        (echo_start + IDLE_POOL, chat_start),
        "(echo, chat) server descriptors at the first quiet point, {IDLE_POOL} idle connections open"
    );
    go_on(&mut load);

    let quiet2 = load.expect_line("QUIET 2", guard);
    println!("{quiet2}");
    let (echo_fds2, echo_rss2) = reading(&echo, echo_start + IDLE_POOL);
    let (chat_fds2, chat_rss2) = reading(&chat, chat_start);
    println!(
        "after {total} s: echo server {echo_fds2} descriptors, {} KiB; chat server {chat_fds2} \
         descriptors, {} KiB",
        kib(echo_rss2),
        kib(chat_rss2)
    );
    assert_eq!(
        (echo_fds2, chat_fds2),
        (echo_start + IDLE_POOL, chat_start),
        "(echo, chat) server descriptors at the second quiet point, {IDLE_POOL} idle connections open"
    );
    go_on(&mut load);
    let done = load.expect_line("DONE", Duration::from_secs(60));
    println!("{done}");
    let status = load.finish(Duration::from_secs(60));
    assert!(
        status.success(),
        "the load failed ({status}); stderr:\n{}",
        load.stderr()
    );

    let (echo_end, echo_rss_end) = reading(&echo, echo_start);
    let (chat_end, chat_rss_end) = reading(&chat, chat_start);
    println!(
        "after the load: echo server {echo_end} descriptors, {} KiB; chat server {chat_end} \
         descriptors, {} KiB",
        kib(echo_rss_end),
        kib(chat_rss_end)
    );
    assert_eq!(
        echo_end, echo_start,
        "echo server descriptors after the load"
    );
    assert_eq!(
        chat_end, chat_start,
        "chat server descriptors after the load"
    );
    for (name, at_first, at_end) in [
        ("echo", echo_rss1, echo_rss2),
        ("chat", chat_rss1, chat_rss2),
    ] {
        assert!(
            at_end as f64 <= at_first as f64 * (1.0 + RSS_SLACK),
            "{name} server: resident memory grew from {} KiB after {first} s to {} KiB after \
             {total} s",
            kib(at_first),
            kib(at_end)
        );
    }
    echo.assert_healthy();
    chat.assert_healthy();
}
