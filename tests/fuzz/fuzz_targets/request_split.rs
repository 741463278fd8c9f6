//! Fuzz target (differential): the incremental request-head parser fed the same bytes in random
//! splits, as a connection receives them, against one call on the whole input.
//!
//! The input is `[limits selector, split seed (4 bytes), request bytes...]`. The request bytes
//! are offered as a growing prefix, `HeadScanner` carried between calls exactly as the proxy
//! does, with step sizes drawn from the seed (1 byte to a few hundred).
//!
//! Property checked: split == whole. The first non-`Partial` answer of the incremental parse is
//! the answer of the whole-buffer parse: the same head (every span, the framing, keep-alive,
//! Expect, Upgrade) and the same fields, or the same error; and if the whole input is only a
//! partial head, every prefix is `Partial` too. A parser whose answer depends on how TCP split
//! the bytes would let two proxies (or a proxy and its upstream) read one stream differently.

#![no_main]

mod common;

use coregate_engine::http1::{HeadScanner, Parsed, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let limits = common::limits(data[0]);
    let mut seed = u32::from_le_bytes([data[1], data[2], data[3], data[4]]) | 1;
    let input = &data[5..];

    let mut whole_fields = common::fields();
    let whole = parse_request(input, &mut HeadScanner::new(), &limits, &mut whole_fields);

    let mut split_fields = common::fields();
    let mut scanner = HeadScanner::new();
    let mut end = 0;
    let split = loop {
        // xorshift32: cheap, and the same seed always gives the same splits.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let step = match seed % 8 {
            0..=3 => 1 + (seed >> 8) as usize % 4,
            4..=6 => 1 + (seed >> 8) as usize % 64,
            _ => 1 + (seed >> 8) as usize % 512,
        };
        end = (end + step).min(input.len());
        let answer = parse_request(&input[..end], &mut scanner, &limits, &mut split_fields);
        if !matches!(answer, Ok(Parsed::Partial)) || end == input.len() {
            break answer;
        }
    };

    assert_eq!(
        split, whole,
        "split parse differs from the whole-buffer parse"
    );
    if let Ok(Parsed::Complete(head)) = whole {
        assert_eq!(
            &split_fields[..head.field_count],
            &whole_fields[..head.field_count],
            "fields differ"
        );
    }
});
