//! The crate's only `unsafe` code: operations on OS resources that safe Rust cannot express.
//!
//! Everything else in the crate is safe code over `mio` (`#![deny(unsafe_code)]` at the crate
//! root; this module alone allows it). The contract of each function here:
//!
//! * [`recv_into_spare`]: one `recv(2)` straight into a `BytesMut`'s spare capacity, so a read
//!   does not first zero the memory it is about to overwrite. The only unsafe step is telling the
//!   buffer that the bytes the kernel wrote are initialised; `socket2` (a trusted crate made for
//!   the job) does the system call and guarantees the count it returns.
//! * [`release_free_memory`]: asks the C allocator to give memory it holds free back to the OS
//!   (`malloc_trim(3)`, glibc only), after many connections have hibernated at once.
//! * [`exit_on_signal_if`]: a signal handler that ends the process at once, with a message, once
//!   a flag is set (a second SIGINT or SIGTERM). Installing a handler is unsafe because the
//!   handler may only do what is async-signal-safe; this one loads an atomic, calls `write(2)` and
//!   `_exit(2)`, nothing else.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::BytesMut;

/// Receives up to `want` bytes from `socket` (one `recv(2)`, no flags) and appends them to `buf`,
/// writing straight into its spare capacity without zeroing it first. Reads fewer than `want`
/// bytes if `buf` has less spare capacity. Returns the count appended; 0 at end of stream.
///
/// # Errors
///
/// As `recv(2)`, including `WouldBlock` on a non-blocking socket with nothing queued; `buf` is
/// unchanged then.
pub(crate) fn recv_into_spare(
    socket: &impl AsFd,
    buf: &mut BytesMut,
    want: usize,
) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    let room = want.min(spare.len());
    let n = socket2::SockRef::from(socket).recv(&mut spare[..room])?;
    // socket2 returns what recv(2) returned, which never exceeds the length it was given.
    assert!(
        n <= room,
        "recv reported more bytes than it was given room for"
    );
    let len = buf.len() + n;
    // SAFETY: recv(2) wrote the first `n` bytes of the spare capacity, which starts at
    // `buf.len()`, so the first `len` bytes of `buf` are initialised; `len` is within capacity
    // because `n <= room <= spare.len()`.
    unsafe { buf.set_len(len) };
    Ok(n)
}

/// Returns the allocator's free memory to the OS where it can (glibc's `malloc_trim(0)`: every
/// whole free page inside the heap is released with `madvise`), so resident memory falls after a
/// burst of connections has been freed. A no-op with other C libraries. Costs time in proportion to
/// the heap's size: call it after a batch of frees, not per free.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions: it only walks and trims the allocator's own free
    // lists, under the allocator's locks, and any pad value is valid.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Installs a handler for `signal` that, if `condition` is set when the signal arrives, writes
/// `message` to standard error and ends the process with `status` (`_exit(2)`: no destructors,
/// no flushing of Rust's buffers). Otherwise it does nothing, and other handlers for the signal
/// run as usual.
///
/// # Errors
///
/// As [`signal_hook::low_level::register`]: the OS error if the handler cannot be installed.
pub(crate) fn exit_on_signal_if(
    signal: i32,
    status: i32,
    message: &'static str,
    condition: Arc<AtomicBool>,
) -> io::Result<signal_hook::SigId> {
    let action = move || {
        if condition.load(Ordering::SeqCst) {
            // SAFETY: write(2) on a valid buffer of the given length; a failed write is ignored.
            let _ = unsafe { libc::write(2, message.as_ptr().cast(), message.len()) };
            signal_hook::low_level::exit(status);
        }
    };
    // SAFETY: the action is async-signal-safe: an atomic load, write(2) and _exit(2). It does not
    // allocate, lock or panic (the `Arc` is only read).
    unsafe { signal_hook::low_level::register(signal, action) }
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Write};
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn recv_appends_at_most_want_bytes_and_reports_eof_and_would_block() -> io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let mut peer = TcpStream::connect(listener.local_addr()?)?;
        let (ours, _) = listener.accept()?;
        peer.write_all(b"hello, world")?;

        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(b">");
        // Blocking socket: the first recv waits for the bytes; ask for fewer than were sent.
        assert_eq!(recv_into_spare(&ours, &mut buf, 5)?, 5);
        assert_eq!(&buf[..], b">hello");
        let n = recv_into_spare(&ours, &mut buf, 64)?;
        assert_eq!(&buf[..], b">hello, world");
        assert_eq!(n, 7);

        ours.set_nonblocking(true)?;
        let err = recv_into_spare(&ours, &mut buf, 64).err();
        assert_eq!(err.map(|e| e.kind()), Some(ErrorKind::WouldBlock));
        assert_eq!(
            &buf[..],
            b">hello, world",
            "a failed read leaves the buffer as it was"
        );

        drop(peer);
        ours.set_nonblocking(false)?;
        assert_eq!(recv_into_spare(&ours, &mut buf, 64)?, 0, "end of stream");
        assert_eq!(&buf[..], b">hello, world");
        Ok(())
    }
}
