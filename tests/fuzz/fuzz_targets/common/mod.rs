//! Helpers shared by the fuzz targets: limits chosen by the input, so the fuzzer reaches the
//! 414 / 431 paths with short inputs, and checks every target applies to a parsed head.

#![allow(dead_code)] // each target uses its own subset

use coregate_engine::http1::{Field, Limits, Span};

/// Limits picked by one input byte: the defaults most of the time, small ones otherwise, so
/// that the request-line, head-size and field-count limits are hit by inputs of a few dozen
/// bytes.
pub fn limits(selector: u8) -> Limits {
    match selector % 4 {
        0 | 1 => Limits::DEFAULT,
        2 => Limits {
            max_request_line: 24,
            max_head_bytes: 96,
            max_headers: 3,
        },
        _ => Limits {
            max_request_line: 64,
            max_head_bytes: 256,
            max_headers: 8,
        },
    }
}

/// Limits for reading back a head coregate wrote: room for everything coregate may add.
pub fn generous() -> Limits {
    Limits {
        max_request_line: 64 * 1024,
        max_head_bytes: 64 * 1024,
        max_headers: coregate_engine::http1::MAX_FIELDS,
    }
}

/// The scratch field array the proxy sizes from its limits.
pub fn fields() -> Vec<Field> {
    vec![Field::EMPTY; coregate_engine::http1::MAX_FIELDS]
}

/// Asserts a span lies within the first `len` bytes.
pub fn inside(span: Span, len: usize, what: &str) {
    assert!(
        span.start <= span.end && span.end as usize <= len,
        "{what} {span:?} outside the {len}-byte head"
    );
}

/// Counts the fields named `name` (case-insensitive) among `fields` of `buf`.
pub fn count_named(buf: &[u8], fields: &[Field], name: &[u8]) -> usize {
    fields
        .iter()
        .filter(|f| f.name.of(buf).eq_ignore_ascii_case(name))
        .count()
}
