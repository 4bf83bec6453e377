//! The read path's memory: chunks are cut from per-thread arenas, so an idle connection holds no
//! buffer and a read into reclaimed, already-mapped memory costs no allocation.

use std::cell::RefCell;
use std::io::{self, Read};

use bytes::{Bytes, BytesMut};

use super::Socket;

/// Size of the shared read buffers chunks are cut from; also the most one read asks for.
pub(super) const ARENA: usize = 512 * 1024;

thread_local! {
    /// The scheduler thread's read buffers (see [`Arenas`]).
    static READ_ARENAS: RefCell<Arenas> = RefCell::new(Arenas::new());
}

/// One chunk read by [`read_chunk`].
pub(super) enum Chunk {
    /// The bytes read; `short` when they are fewer than the read asked for, which on a TCP
    /// socket means it is empty (see [`Socket::short_read_drains`]).
    Data { bytes: Bytes, short: bool },
    /// End of stream.
    Eof,
}

impl Chunk {
    /// What a read of `n` bytes out of `want` asked for was: end of stream if none, else the
    /// bytes `cut` off the arena.
    #[inline]
    pub(super) fn of(n: usize, want: usize, cut: impl FnOnce(usize) -> Bytes) -> Self {
        if n == 0 {
            Chunk::Eof
        } else {
            Chunk::Data {
                bytes: cut(n),
                short: n < want,
            }
        }
    }
}

/// Used-up arenas kept for reuse, at most.
pub(super) const SPARE_ARENAS: usize = 3;

/// Reads start on a page boundary after a read of at least this many bytes (see [`Arenas::align`]).
pub(super) const PAGE: usize = 4096;

/// The read buffers of one scheduler thread. Every adapter reads into `current` and cuts the
/// bytes read off as a `Bytes` chunk, so an idle connection holds no buffer and no read copies
/// data. An arena whose chunks have all been dropped (an echo writes and drops them within a
/// cycle or two) is reclaimed whole rather than a new one allocated, so reads land in memory that
/// is mapped and warm in cache.
#[derive(Debug)]
pub(super) struct Arenas {
    /// Where reads go: for `read_chunk`, empty between reads with room to read into; for
    /// `read_chunk_zeroed`, the zeroed room itself.
    pub(super) current: BytesMut,
    /// Used-up arenas, some of whose chunks may still be alive.
    pub(super) spare: Vec<BytesMut>,
    /// The last read on this thread filled at least a page: the next one starts on a page.
    pub(super) large: bool,
}

impl Arenas {
    /// Starts with one arena, so every arena that is used up and set aside can be reclaimed.
    pub(super) fn new() -> Self {
        Self {
            current: BytesMut::with_capacity(ARENA),
            spare: Vec::new(),
            large: false,
        }
    }

    /// Makes room for a read of `want` bytes, starting it on a page boundary when the last read
    /// filled at least a page.
    ///
    /// The kernel copies received bytes with `rep movsb`, and on some processors (this project's
    /// AMD EPYC machines) that copy runs at half speed or worse unless the destination sits at
    /// the same offset in its page as the source, which for bulk data is the start of a page:
    /// echoing 64 KiB messages at c64 took 2.4x the CPU per message with reads at the arena's
    /// running offset. A page-aligned start wastes up to a page of arena per read, which small
    /// reads (64-byte messages) would pay for nothing, so only reads that follow a large one are
    /// aligned.
    pub(super) fn align(&mut self, want: usize) {
        // (A read of more than an arena less a page goes unaligned: there is no room to pad.)
        if !self.large || want + PAGE > ARENA {
            self.make_room(want);
            return;
        }
        self.make_room(want + PAGE);
        let pad = self.current.as_ptr().align_offset(PAGE);
        if pad != 0 {
            // Cut the padding off as a chunk of its own, dropped at once: the arena's memory
            // goes back with its other chunks.
            self.current.resize(pad, 0);
            drop(self.current.split());
        }
    }

    /// Makes sure `current` has room for `want` bytes: reclaims it or a spare arena whose chunks
    /// are all gone, else starts a new one.
    pub(super) fn make_room(&mut self, want: usize) {
        if self.current.capacity() >= want || self.current.try_reclaim(ARENA) {
            return;
        }
        let used = std::mem::take(&mut self.current);
        let free = self.spare.iter_mut().position(|a| a.try_reclaim(ARENA));
        self.current = match free {
            Some(i) => std::mem::replace(&mut self.spare[i], used),
            None => {
                if self.spare.len() < SPARE_ARENAS {
                    self.spare.push(used);
                }
                BytesMut::with_capacity(ARENA)
            }
        };
    }
}

/// One read of up to `max` bytes (at most [`ARENA`]) from `stream` into the thread's arena.
///
/// Every read asks for the full `max.min(ARENA)`: when the arena has less room left, another is
/// made current (the old one lives on in the chunks cut from it until they are dropped). So a
/// read that returns less than that is short, whatever the arena's state, and a full-sized
/// message is not taken for a partial one that needs another read to hear `WouldBlock`.
pub(super) fn read_chunk<S: Socket>(stream: &mut S, max: usize) -> io::Result<Chunk> {
    READ_ARENAS.with(|arenas| {
        let arenas = &mut *arenas.borrow_mut();
        let want = max.clamp(1, ARENA);
        arenas.align(want);
        let n = stream.read_into(&mut arenas.current, want)?;
        arenas.large = n >= PAGE;
        Ok(Chunk::of(n, want, |_| arenas.current.split().freeze()))
    })
}

/// Reads up to `want` bytes from `reader` through [`Read`], appending them to `buf`: the space is
/// zeroed first. [`Socket::read_into`]'s default. As `reader`'s `read` on error; `buf` is
/// unchanged then.
pub(super) fn read_into_zeroed(
    reader: &mut (impl Read + ?Sized),
    buf: &mut BytesMut,
    want: usize,
) -> io::Result<usize> {
    let len = buf.len();
    buf.resize(len + want, 0);
    let read = reader.read(&mut buf[len..]);
    buf.truncate(len + read.as_ref().map_or(0, |n| (*n).min(want)));
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills the current arena completely, as two full-sized reads would, and cuts it off.
    fn use_up(arenas: &mut Arenas) -> Bytes {
        arenas.make_room(ARENA);
        let room = arenas.current.capacity();
        arenas.current.resize(room, 7);
        arenas.current.split().freeze()
    }

    #[test]
    fn a_used_up_arena_is_reused_once_its_chunks_are_gone_and_not_before() {
        let mut arenas = Arenas::new();
        let first = use_up(&mut arenas);
        // `first` is alive: the next read needs another arena.
        let second = use_up(&mut arenas);
        assert_ne!(first.as_ptr(), second.as_ptr());
        assert_eq!(arenas.spare.len(), 1, "the used-up arena is kept for reuse");
        let first_at = first.as_ptr();
        drop(first);
        // The first arena's chunks are gone: its memory comes back, not a new allocation.
        arenas.make_room(ARENA);
        assert_eq!(arenas.current.as_ptr(), first_at);
        assert!(arenas.current.capacity() >= ARENA);
        assert_eq!(second.len(), ARENA, "a chunk that was cut off is untouched");
        assert!(second.iter().all(|&b| b == 7));
    }

    #[test]
    fn a_read_after_a_large_one_starts_on_a_page_and_small_reads_waste_nothing() {
        let mut arenas = Arenas::new();
        // Small reads: back to back, no padding.
        arenas.align(16 * 1024);
        arenas.current.resize(100, 1);
        let small = arenas.current.split().freeze();
        arenas.align(16 * 1024);
        assert_eq!(arenas.current.as_ptr(), small.as_ptr().wrapping_add(100));
        // A large read: the next starts on a page, and the chunk before is untouched.
        arenas.current.resize(PAGE + 10, 2);
        let large = arenas.current.split().freeze();
        arenas.large = true;
        arenas.align(16 * 1024);
        assert_eq!(arenas.current.as_ptr().align_offset(PAGE), 0);
        assert!(arenas.current.capacity() >= 16 * 1024);
        assert!(large.iter().all(|&b| b == 2) && small.iter().all(|&b| b == 1));
    }

    #[test]
    fn spare_arenas_are_bounded() {
        let mut arenas = Arenas::new();
        let held: Vec<Bytes> = (0..10).map(|_| use_up(&mut arenas)).collect();
        assert!(arenas.spare.len() <= SPARE_ARENAS);
        assert_eq!(held.len(), 10);
    }
}
