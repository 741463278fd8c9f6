//! Fuzz target: the chunked-body decoder, `http1::ChunkedDecoder`, on arbitrary bytes.
//!
//! The input is `[split seed, body bytes...]`; the body is decoded once whole and once offered
//! in pieces whose sizes come from the seed, each call seeing only what the previous calls did
//! not consume (as the relay does).
//!
//! Properties checked:
//! - it never panics and never reports more consumed bytes than it was given; every data range
//!   ends exactly at its `consumed` count;
//! - split == whole: the same data, the same end of body (bytes consumed up to `Done`), or the
//!   same error, however the input is split;
//! - after `Done` the decoder consumes nothing more (what follows is the next message), after
//!   an error it keeps returning that error;
//! - the data re-framed with coregate's own chunk writer (`write_chunk_header`, `CHUNK_END`,
//!   `LAST_CHUNK`) decodes back to the same data: what coregate sends is always valid.

#![no_main]

use coregate_engine::http1::{
    CHUNK_END, ChunkError, ChunkStep, ChunkedDecoder, LAST_CHUNK, MAX_CHUNK_HEADER,
    write_chunk_header,
};
use libfuzzer_sys::fuzz_target;

/// How a decode run ended: the data found, and the bytes consumed at `Done`, or the error, or
/// `None` when the input ran out first.
type Outcome = (Vec<u8>, Option<Result<usize, ChunkError>>);

fn decode(input: &[u8], mut next_piece: impl FnMut() -> usize) -> Outcome {
    let mut decoder = ChunkedDecoder::new();
    let mut data = Vec::new();
    let mut start = 0; // first byte not consumed
    let mut end = 0; // bytes offered so far
    loop {
        let offered = &input[start..end];
        match decoder.decode(offered) {
            Ok(ChunkStep::Data {
                consumed,
                data: range,
            }) => {
                assert!(consumed <= offered.len(), "consumed more than offered");
                assert_eq!(range.end, consumed, "data does not end at consumed");
                assert!(!range.is_empty(), "empty data step");
                data.extend_from_slice(&offered[range]);
                start += consumed;
            }
            Ok(ChunkStep::NeedMore { consumed }) => {
                assert_eq!(consumed, offered.len(), "NeedMore left input unconsumed");
                start += consumed;
                if end == input.len() {
                    return (data, None);
                }
                end = (end + next_piece()).min(input.len());
            }
            Ok(ChunkStep::Done { consumed }) => {
                assert!(consumed <= offered.len());
                assert!(decoder.is_done());
                let rest = &input[start + consumed..];
                assert_eq!(
                    decoder.decode(rest),
                    Ok(ChunkStep::Done { consumed: 0 }),
                    "consumed past the end of the body"
                );
                return (data, Some(Ok(start + consumed)));
            }
            Err(err) => {
                assert_eq!(decoder.decode(b"0\r\n\r\n"), Err(err), "error not sticky");
                return (data, Some(Err(err)));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let whole = decode(input, || input.len().max(1));
    let mut state = u32::from(seed) * 2 + 1;
    let split = decode(input, || {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        1 + (state >> 16) as usize % 17
    });
    // The decoder hands out every data byte before it looks at the framing byte after it, so
    // even a body that fails yields the same data before the failure, however it was split.
    assert_eq!(split.1, whole.1, "split changed the outcome");
    assert_eq!(split.0, whole.0, "split changed the data");

    // Round trip through coregate's own framing.
    if whole.1.is_some_and(|end| end.is_ok()) {
        let mut framed = Vec::new();
        let mut header = [0u8; MAX_CHUNK_HEADER];
        for piece in whole.0.chunks(4000) {
            let n = write_chunk_header(piece.len() as u64, &mut header).expect("room");
            framed.extend_from_slice(&header[..n]);
            framed.extend_from_slice(piece);
            framed.extend_from_slice(CHUNK_END);
        }
        framed.extend_from_slice(LAST_CHUNK);
        let again = decode(&framed, || framed.len().max(1));
        assert_eq!(again.1, Some(Ok(framed.len())));
        assert_eq!(again.0, whole.0, "re-framed data decodes differently");
    }
});
