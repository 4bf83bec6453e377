//! `LineSplitter`, the chat protocol's line framing, fed a stream cut at points the input chooses.
//!
//! Input: byte 0 picks the line limit (1..=32, small so that cutting overlong lines is exercised),
//! byte 1 seeds the chunking, the rest is the stream. Invariants:
//!
//! * the lines emitted, then `finish()`, concatenate to the stream exactly;
//! * no line is empty or longer than the limit, and a `\n` only ever ends a line;
//! * every line but the `finish()` remainder ends in `\n` or is exactly the limit long; the
//!   remainder does neither;
//! * how the stream is cut into reads does not change the lines (same as one single push), and
//!   taking them one at a time with `next_line` gives the same lines.
#![no_main]

use kamaelia::bytes::Bytes;
use kamaelia::protocols::chat::LineSplitter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [limit, seed, stream @ ..] = data else {
        return;
    };
    let max = usize::from(limit % 32) + 1;

    // Chunk lengths 0..=15 from the stream's own bytes mixed with the seed; an empty push now and
    // then too. Each step consumes at least one byte, so the loop ends.
    let mut s = LineSplitter::new(max);
    let mut lines: Vec<Bytes> = Vec::new();
    let mut rest = stream;
    let mut mix = *seed;
    while let Some(&b) = rest.first() {
        mix = mix.rotate_left(3) ^ b;
        let n = usize::from(mix % 16);
        if n == 0 {
            assert!(s.push(&[]).is_empty(), "an empty push emitted a line");
        }
        let n = n.clamp(1, rest.len());
        lines.extend(s.push(&rest[..n]));
        rest = &rest[n..];
    }
    let last = s.finish();
    assert_eq!(s.finish(), None, "finish() twice gave a second remainder");

    for line in &lines {
        assert!(!line.is_empty(), "empty line");
        assert!(
            line.len() <= max,
            "line of {} bytes, limit {max}",
            line.len()
        );
        assert!(
            line.ends_with(b"\n") || line.len() == max,
            "line {line:?} neither ends in \\n nor fills the limit {max}"
        );
        assert!(
            !line[..line.len() - 1].contains(&b'\n'),
            "\\n inside line {line:?}"
        );
    }
    if let Some(last) = &last {
        assert!(!last.is_empty(), "empty remainder");
        assert!(
            last.len() < max,
            "remainder of {} bytes, limit {max}",
            last.len()
        );
        assert!(!last.contains(&b'\n'), "\\n in remainder {last:?}");
    }

    let joined: Vec<u8> = lines
        .iter()
        .chain(&last)
        .flat_map(|l| l.iter().copied())
        .collect();
    assert_eq!(joined, stream, "lines do not add up to the stream");

    let mut whole = LineSplitter::new(max);
    let mut one_push = whole.push(stream);
    one_push.extend(whole.finish());
    let chunked: Vec<Bytes> = lines.into_iter().chain(last).collect();
    assert_eq!(chunked, one_push, "chunking changed the lines");

    // One line at a time, as the chat handler takes them, from chunks cut the same way.
    let mut pulled = LineSplitter::new(max);
    let mut by_line: Vec<Bytes> = Vec::new();
    let mut rest = stream;
    let mut mix = *seed;
    while let Some(&b) = rest.first() {
        mix = mix.rotate_left(3) ^ b;
        let n = usize::from(mix % 16).clamp(1, rest.len());
        let mut chunk = Bytes::copy_from_slice(&rest[..n]);
        while let Some(line) = pulled.next_line(&mut chunk) {
            by_line.push(line);
        }
        assert!(chunk.is_empty(), "next_line left bytes behind");
        rest = &rest[n..];
    }
    by_line.extend(pulled.finish());
    assert_eq!(by_line, one_push, "next_line made other lines than push");
});
