//! Durations and byte sizes as the configuration file writes them, and back.
//!
//! Owns the two small grammars below and nothing else: no key names, no ranges (the validator
//! knows which values a key accepts), no I/O.
//!
//! Durations: one or more `<whole number><unit>` groups, units largest first, each at most once:
//! `"250ms"`, `"10s"`, `"2m"`, `"1h"`, `"1m30s"`. Units are `h`, `m`, `s`, `ms`. A bare number
//! is refused except `0`: NGINX reads `60` as seconds and other tools read it as milliseconds, so
//! a number without a unit is a guess either way.
//!
//! Sizes: a whole number of bytes, optionally followed by a 1024-based unit: `"4096"`, `"512B"`,
//! `"16KiB"`, `"16k"` (NGINX style), `"10MiB"`, `"1GiB"`. Units are case-insensitive. `KB`, `MB`
//! and `GB` are refused: they mean 1000-based units to some readers and 1024-based to others.

use std::fmt;
use std::time::Duration;

/// Parses a duration such as `"250ms"`, `"10s"` or `"1m30s"`.
pub fn parse_duration(text: &str) -> Result<Duration, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration; write a number with a unit, like \"10s\" or \"250ms\"");
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.starts_with(['-', '+']) {
        return Err("a duration cannot be signed");
    }
    let mut rest = text;
    let mut total_ms: u64 = 0;
    // Index into UNITS of the last unit seen, so units must come largest first, once each.
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err("expected a whole number before each unit, like \"1m30s\"");
        }
        let (number, after) = rest.split_at(digits);
        if after.starts_with(['.', ',']) {
            return Err("use whole numbers with a smaller unit: \"1500ms\", not \"1.5s\"");
        }
        let unit_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        if unit_len == 0 {
            return Err(
                "missing unit: write \"10s\" or \"250ms\" (a bare number would be ambiguous)",
            );
        }
        let (unit, after) = after.split_at(unit_len);
        let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err("unknown unit; use h, m, s or ms");
        };
        if last_unit.is_some_and(|last| index <= last) {
            return Err("write each unit once, largest first, like \"1h30m\" or \"1s500ms\"");
        }
        last_unit = Some(index);
        let number: u64 = number.parse().map_err(|_| "duration is too large")?;
        let ms = number
            .checked_mul(UNITS[index].1)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or("duration is too large")?;
        total_ms = ms;
        rest = after;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Duration units, largest first, with their length in milliseconds.
const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Parses a byte size such as `"16KiB"`, `"10MiB"`, `"16k"` or `"4096"`.
pub fn parse_size(text: &str) -> Result<u64, &'static str> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(if text.starts_with('-') {
            "a size cannot be negative"
        } else {
            "expected a whole number of bytes, optionally with a unit, like \"16KiB\""
        });
    }
    let (number, unit) = text.split_at(digits);
    if unit.starts_with(['.', ',']) {
        return Err("use whole numbers with a smaller unit: \"1536KiB\", not \"1.5MiB\"");
    }
    let multiplier: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" | "mb" | "gb" => {
            return Err("ambiguous unit; write KiB, MiB or GiB (1024-based) or a byte count");
        }
        _ => return Err("unknown unit; use B, KiB, MiB or GiB"),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or("size is too large")
}

/// Formats a byte count with the largest 1024-based unit that divides it, as the file would
/// write it: `16 KiB`, `10 MiB`, `1500 B`. Used by `coregate check` and in messages.
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            if n != 0 && n % (1 << shift) == 0 {
                return write!(f, "{} {unit}", n >> shift);
            }
        }
        write!(f, "{n} B")
    }
}

/// Formats a duration in the file's syntax: `10s`, `1m30s`, `250ms`, `0`.
pub struct Millis(pub Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0");
        }
        for (unit, length) in UNITS {
            let length = u128::from(length);
            if ms >= length {
                write!(f, "{}{unit}", ms / length)?;
                ms %= length;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations_take_each_unit() {
        assert_eq!(parse_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_duration("10s"), Ok(ms(10_000)));
        assert_eq!(parse_duration("2m"), Ok(ms(120_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1h0m5s20ms"), Ok(ms(3_605_020)));
        assert_eq!(parse_duration(" 5s "), Ok(ms(5_000)));
    }

    #[test]
    fn zero_needs_no_unit() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_refuse_guesswork() {
        assert!(parse_duration("10").unwrap_err().contains("missing unit"));
        assert!(parse_duration("1.5s").unwrap_err().contains("1500ms"));
        assert!(
            parse_duration("10sec")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration("10S").unwrap_err().contains("unknown unit"));
        assert!(
            parse_duration("30s1m")
                .unwrap_err()
                .contains("largest first")
        );
        assert!(
            parse_duration("1s1s")
                .unwrap_err()
                .contains("largest first")
        );
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10 s").is_err());
        assert_eq!(
            parse_duration("99999999999999999999h"),
            Err("duration is too large")
        );
        assert_eq!(
            parse_duration("18446744073709551615h"),
            Err("duration is too large")
        );
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("16KiB"), Ok(16 * 1024));
        assert_eq!(parse_size("16k"), Ok(16 * 1024));
        assert_eq!(parse_size("16 KiB"), Ok(16 * 1024));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("10m"), Ok(10 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn sizes_refuse_ambiguity() {
        assert!(parse_size("16KB").unwrap_err().contains("ambiguous"));
        assert!(parse_size("1.5MiB").unwrap_err().contains("1536KiB"));
        assert!(parse_size("-1").unwrap_err().contains("negative"));
        assert!(parse_size("KiB").is_err());
        assert!(parse_size("16 bytes").unwrap_err().contains("unknown unit"));
        assert_eq!(parse_size("99999999999GiB"), Err("size is too large"));
    }

    #[test]
    fn values_format_as_the_file_writes_them() {
        assert_eq!(Size(16 * 1024).to_string(), "16 KiB");
        assert_eq!(Size(10 << 20).to_string(), "10 MiB");
        assert_eq!(Size(1500).to_string(), "1500 B");
        assert_eq!(Size(0).to_string(), "0 B");
        assert_eq!(Millis(ms(90_000)).to_string(), "1m30s");
        assert_eq!(Millis(ms(250)).to_string(), "250ms");
        assert_eq!(Millis(Duration::ZERO).to_string(), "0");
        for text in ["1h", "1m30s", "50ms", "1s500ms"] {
            assert_eq!(Millis(parse_duration(text).unwrap()).to_string(), text);
        }
    }
}
