//! What the selector's `epoll` set holds as connections close and hibernate, read from the
//! kernel (`/proc/self/fdinfo`). An adapter over a TCP socket ends without `EPOLL_CTL_DEL`:
//! closing the socket's only descriptor takes it out of the set. A hibernating connection's socket
//! goes to the server with its descriptor and its registration: the set keeps the same entry.
//!
//! One test in this file, so this process has one `epoll` instance: the selector's.

mod util;

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::time::Duration;

use axon::ipc::ConnectionInfo;
use axon::Component;
use axon::{Inbox, Scheduler};
use kamaelia::chassis::{ServerConfig, ServerCore, ServerStats};
use kamaelia::internet::{CsaConfig, TcpClient, TcpServerConfig};
use kamaelia::protocols::Echo;
use util::{collector, run_until, take_all};

/// The descriptors of this process's `epoll` instances.
fn epoll_fds() -> Vec<u32> {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            (target.to_str() == Some("anon_inode:[eventpoll]"))
                .then(|| e.file_name().to_str()?.parse().ok())
                .flatten()
        })
        .collect()
}

/// The descriptors in the `epoll` set (the `tfd:` of each entry).
fn epoll_set(epfd: u32) -> BTreeSet<u32> {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{epfd}"))
        .expect("fdinfo of the epoll instance")
        .lines()
        .filter_map(|l| l.strip_prefix("tfd:"))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The inode of the socket behind descriptor `fd` of this process, if it is open and a socket.
fn socket_inode(fd: u32) -> Option<String> {
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let t = target.to_str()?;
    t.strip_prefix("socket:[")?
        .strip_suffix(']')
        .map(str::to_owned)
}

struct Server {
    sched: Scheduler,
    request: Inbox<()>,
    stats: Inbox<ServerStats>,
}

impl Server {
    fn sample(&self) -> ServerStats {
        self.request.deliver(()).unwrap();
        run_until(&self.sched, "a stats snapshot", || self.stats.data_ready());
        take_all(&self.stats).remove(0)
    }

    fn wait_for(&self, what: &str, done: impl Fn(&ServerStats) -> bool) {
        run_until(&self.sched, what, || done(&self.sample()));
    }

    fn round_trip(&self, s: &mut TcpStream, msg: &[u8]) {
        util::echo_round_trip(&self.sched, s, msg);
    }
}

#[test]
fn closed_sockets_leave_the_epoll_set_and_a_hibernating_one_is_there_once() {
    let sched = Scheduler::new();
    let server = ServerCore::new(
        "127.0.0.1:0".parse().unwrap(),
        |_: &ConnectionInfo| Box::new(Echo::new()),
        ServerConfig::default()
            .hibernate_after(Some(Duration::from_millis(30)))
            // Long enough that the connections below never reach it while they are used.
            .tcp(TcpServerConfig::default().csa(CsaConfig::default().idle_timeout(Some(IDLE)))),
    )
    .expect("bind");
    let addr = server.local_addr();
    let stats = collector("stats");
    server.stats().link_to(&stats).unwrap();
    let s = Server {
        sched: sched.clone(),
        request: server.sample_stats().clone(),
        stats,
    };
    sched.activate(server);
    run_until(&sched, "the selector", || !epoll_fds().is_empty());
    let fds = epoll_fds();
    assert_eq!(fds.len(), 1, "one epoll instance in this process: {fds:?}");
    let epfd = fds[0];
    s.sample();
    // The selector's waker and the listening socket.
    let idle = epoll_set(epfd);
    assert_eq!(idle.len(), 2, "{idle:?}");

    // A connection that closes: its socket leaves the set with its descriptor.
    let mut a = util::connect(addr);
    s.wait_for("the connection to open", |st| st.open.len() == 1);
    assert_eq!(epoll_set(epfd).len(), 3);
    s.round_trip(&mut a, b"hello");
    drop(a);
    s.wait_for("the connection to close", |st| st.closed == 1);
    assert_eq!(epoll_set(epfd), idle, "the closed socket left the set");

    // A connection that hibernates: the adapter hands its socket, still registered, to the
    // server. The set holds the same entry as while it was awake: no second descriptor, no
    // re-registration.
    let mut b = util::connect(addr);
    s.round_trip(&mut b, b"sleep");
    let awake = epoll_set(epfd);
    assert_eq!(awake.len(), idle.len() + 1, "{awake:?}");
    s.wait_for("the connection to hibernate", |st| st.hibernating == 1);
    let asleep = epoll_set(epfd);
    assert_eq!(
        asleep, awake,
        "the sleeping socket's entry is the one it had awake"
    );
    for fd in &asleep {
        assert!(
            socket_inode(*fd).is_some() || idle.contains(fd),
            "entry for a descriptor that is not an open socket, {fd}: {asleep:?}"
        );
    }

    // Woken, it works as before; closed, it leaves the set.
    s.round_trip(&mut b, b"awake");
    drop(b);
    s.wait_for("the woken connection to close", |st| st.closed == 2);
    assert_eq!(
        epoll_set(epfd),
        idle,
        "the woken connection's socket left the set"
    );

    // A sleeping connection the server closes (its idle timeout): the server's descriptor, the
    // only one, is closed, and the socket leaves the set.
    let mut c = util::connect(addr);
    s.round_trip(&mut c, b"sleep");
    s.wait_for("the connection to hibernate", |st| st.hibernating == 1);
    assert_eq!(epoll_set(epfd).len(), idle.len() + 1);
    s.wait_for("the idle timeout to close it", |st| st.closed == 3);
    assert_eq!(
        epoll_set(epfd),
        idle,
        "the sleeping socket closed by the server left the set"
    );

    // A client whose connect is refused, and one abandoned while connecting: each socket's only
    // descriptor is closed, and it leaves the set.
    let refused = TcpClient::new("127.0.0.1", util::closed_port().port(), Default::default());
    let refused_core = refused.core().clone();
    sched.activate(refused);
    run_until(&sched, "the refused client to end", || {
        refused_core.is_finished()
    });
    assert_eq!(epoll_set(epfd), idle, "the refused socket left the set");
    let (_listener, _filler, full) = util::full_listener();
    let hanging = TcpClient::new("127.0.0.1", full.port(), Default::default());
    let (hanging_core, control) = (hanging.core().clone(), hanging.control().clone());
    sched.activate(hanging);
    run_until(&sched, "the connect to be under way", || {
        epoll_set(epfd).len() > idle.len()
    });
    control.deliver(axon::Ipc::shutdown_microprocess()).unwrap();
    run_until(&sched, "the abandoned client to end", || {
        hanging_core.is_finished()
    });
    assert_eq!(epoll_set(epfd), idle, "the abandoned socket left the set");

    let mut rest = Vec::new();
    c.set_read_timeout(Some(IDLE)).unwrap();
    let read = std::io::Read::read_to_end(&mut c, &mut rest);
    assert!(
        matches!(read, Ok(0)),
        "the peer reads EOF: {read:?} {rest:?}"
    );
}

/// The idle timeout of the test's connections.
const IDLE: Duration = Duration::from_secs(3);
