//! `mio-echo`: the one-core limit for an echo server — a minimal single-threaded, edge-triggered
//! mio (epoll) loop. One read buffer shared by every connection; a connection holds bytes of its
//! own only while the peer is not reading (and then stops reading until they are written), so it
//! is also the floor for memory per idle connection.
//!
//! One trick beyond the textbook loop, the one tokio uses (`PollEvented::poll_read`): a read that
//! fills less than the buffer has drained the socket, so the loop waits for the next edge instead
//! of spending a `read` that can only say `WouldBlock` — unless the event also reported the peer's
//! FIN, which no later edge would repeat.
//!
//! ```text
//! mio-echo [--listen 127.0.0.1:0]
//! ```
//!
//! Prints `listening on IP:PORT` on stdout once it accepts. Stop it with SIGTERM.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

/// The mio echo baseline.
#[derive(Debug, Parser)]
#[command(name = "mio-echo", about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

const LISTENER: Token = Token(usize::MAX);
/// Reads per readiness event before other connections are served.
const READS_PER_EVENT: usize = 16;

struct Conn {
    stream: TcpStream,
    /// Echo bytes the socket has not taken yet; while any are held, the connection is not read.
    pending: Vec<u8>,
    /// An event reported the peer's FIN: read until the read returns 0, short reads or not.
    fin_seen: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match serve(args.listen) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(addr: SocketAddr) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("listening on {}", listener.local_addr()?);
    let mut conns: Slab<Conn> = Slab::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    // Connections that stopped reading for fairness, served again before the next wait.
    let mut again: Vec<usize> = Vec::new();
    loop {
        let timeout = if again.is_empty() {
            None
        } else {
            Some(std::time::Duration::ZERO)
        };
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                accept(&poll, &listener, &mut conns);
                continue;
            }
            let key = ev.token().0;
            let closed = ev.is_read_closed() || ev.is_error();
            if service(&mut conns, key, &mut buf, closed) && !again.contains(&key) {
                again.push(key);
            }
        }
        for key in std::mem::take(&mut again) {
            if service(&mut conns, key, &mut buf, false) {
                again.push(key);
            }
        }
    }
}

fn accept(poll: &Poll, listener: &TcpListener, conns: &mut Slab<Conn>) {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nodelay(true);
                let entry = conns.vacant_entry();
                if poll
                    .registry()
                    .register(
                        &mut stream,
                        Token(entry.key()),
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .is_ok()
                {
                    entry.insert(Conn {
                        stream,
                        pending: Vec::new(),
                        fin_seen: false,
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // E.g. EMFILE: drop this round; the next event retries.
                eprintln!("accept: {e}");
                return;
            }
        }
    }
}

/// Serves one connection after an event; true if it has more to read right away. Closes it on
/// EOF (once everything is echoed) or error.
fn service(conns: &mut Slab<Conn>, key: usize, buf: &mut [u8], closed: bool) -> bool {
    let Some(conn) = conns.get_mut(key) else {
        return false;
    };
    match echo(conn, buf, closed) {
        Ok(Some(more)) => more,
        Ok(None) | Err(_) => {
            // Dropping closes the socket (and removes it from epoll).
            drop(conns.remove(key));
            false
        }
    }
}

/// `Ok(None)`: finished (EOF with everything echoed). `Ok(Some(more))`: keep it. `closed`: the
/// event reported the peer's FIN (or an error), so read on until the read says so.
fn echo(conn: &mut Conn, buf: &mut [u8], closed: bool) -> io::Result<Option<bool>> {
    conn.fin_seen |= closed;
    if !conn.pending.is_empty() {
        match conn.stream.write(&conn.pending) {
            Ok(n) => drop(conn.pending.drain(..n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Some(false)),
            Err(e) => return Err(e),
        }
        if !conn.pending.is_empty() {
            return Ok(Some(false));
        }
    }
    for _ in 0..READS_PER_EVENT {
        let n = match conn.stream.read(buf) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Some(false)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut written = 0;
        while written < n {
            match conn.stream.write(&buf[written..n]) {
                Ok(w) => written += w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The peer is slow: keep the rest, stop reading until it is written.
                    conn.pending.extend_from_slice(&buf[written..n]);
                    return Ok(Some(false));
                }
                Err(e) => return Err(e),
            }
        }
        if n < buf.len() && !conn.fin_seen {
            // A short read drained the socket: the next bytes come with a new edge.
            return Ok(Some(false));
        }
    }
    Ok(Some(true))
}
