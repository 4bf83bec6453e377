//! `idle`: hold N idle connections and report the server's resident memory per connection.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::{self, Error, Errors};

/// What `idle` was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct IdleArgs {
    pub(crate) addr: SocketAddr,
    pub(crate) n: usize,
    pub(crate) server_pid: u32,
    /// How long the server may take to settle before its memory is read.
    pub(crate) settle: Duration,
    /// How long to hold the connections after measuring, before checking they are all still open.
    pub(crate) hold: Duration,
    /// The whole run's limit.
    pub(crate) timeout: Duration,
}

/// Connections opened (and each echoed once) before the next are opened: keeps the server's
/// accept backlog short.
const BATCH: usize = 256;

/// Runs `idle` and prints its `RESULT` line; `Ok(false)` when not all N were held.
pub(crate) fn run(a: &IdleArgs) -> Result<bool, Error> {
    if a.n == 0 {
        return Err("-n must be at least 1".into());
    }
    common::check_open_files(a.n)?;
    let before = common::vm_rss_kib(a.server_pid)?;
    let t0 = Instant::now();
    let deadline = t0 + a.timeout;
    let mut errors = Errors::default();
    let mut held: Vec<TcpStream> = Vec::with_capacity(a.n);
    // Every connection echoes one byte before it counts: the server has accepted it and built
    // whatever it keeps per connection.
    while held.len() < a.n && errors.count == 0 {
        if Instant::now() >= deadline {
            errors.add(format!(
                "only {} of {} connections opened within {:?}",
                held.len(),
                a.n,
                a.timeout
            ));
            break;
        }
        let want = BATCH.min(a.n - held.len());
        let mut batch = Vec::with_capacity(want);
        for _ in 0..want {
            match common::connect(a.addr, Duration::from_secs(5)) {
                Ok(s) => batch.push(s),
                Err(e) => {
                    errors.add(format!("connect #{}: {e}", held.len() + batch.len()));
                    break;
                }
            }
        }
        for s in &mut batch {
            s.write_all(b"i")?;
        }
        for s in batch {
            match echo_back(&s) {
                Ok(()) => held.push(s),
                Err(e) => errors.add(format!("connection #{}: {e}", held.len())),
            }
        }
    }
    let opened_secs = t0.elapsed().as_secs_f64();
    let opened = held.len();
    std::thread::sleep(a.settle);
    let after = common::vm_rss_kib(a.server_pid)?;
    std::thread::sleep(a.hold);
    // Still open: nothing to read, no EOF, no reset.
    let mut still = 0usize;
    for (i, s) in held.iter_mut().enumerate() {
        s.set_nonblocking(true)?;
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => still += 1,
            Ok(0) => errors.add(format!("connection #{i}: closed by the server while idle")),
            Ok(_) => errors.add(format!("connection #{i}: unexpected bytes while idle")),
            Err(e) => errors.add(format!("connection #{i}: {e}")),
        }
    }
    drop(held);
    let grown = after.saturating_sub(before);
    errors.report();
    // Per connection actually open when the memory was read (all N unless opening failed).
    println!(
        "RESULT mode=idle n={} opened={opened} held={still} open_secs={opened_secs:.2} \
         rss_before_kib={before} rss_after_kib={after} bytes_per_conn={:.0} errors={}",
        a.n,
        grown as f64 * 1024.0 / opened.max(1) as f64,
        errors.count,
    );
    Ok(errors.count == 0 && still == a.n)
}

fn echo_back(mut s: &TcpStream) -> io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    if b[0] != b'i' {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "echoed byte differs",
        ));
    }
    Ok(())
}
