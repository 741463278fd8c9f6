//! Rates and quotas as the configuration writes them: `rate = "100/s"`, `burst = 50`.
//!
//! Owns the rate grammar and the translation of a rate and a burst into the two integers the
//! algorithm works with (the emission interval and the burst window, in nanoseconds). No key
//! names, no I/O, no clock: values in, values or a short sentence naming the bad part out, like
//! `config::units`.
//!
//! Grammar: `<whole number>/<unit>` with unit `s`, `m` or `h`: `"100/s"`, `"6000/m"`,
//! `"10/h"`. Surrounding spaces are ignored, nothing else is: no spaces inside, no fractions
//! (`"1.5/s"` is `"90/m"`), no multi-unit windows (`"100/10s"` is `"10/s"`, since a GCRA has no
//! windows, only a rate and a burst), no zero (a rate that refuses everything is a `respond`
//! route, not a limit).

use std::fmt;

/// Nanoseconds in one second; every time in this module is a count of nanoseconds.
pub const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// The highest rate a limit may have, per second. One million per second per key is beyond what
/// one node serves; capping it keeps the emission interval at 1,000 ns or more, so rounding it
/// to whole nanoseconds changes the rate by less than 0.1%.
pub const MAX_RATE_PER_SECOND: u64 = 1_000_000;

/// The largest burst. A burst is a count of requests admitted at once from an idle key; a
/// million is far beyond any sensible setting and keeps `burst * interval` within `u64`.
pub const MAX_BURST: u32 = 1_000_000;

/// The unit of a rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Per {
    Second,
    Minute,
    Hour,
}

impl Per {
    /// Length of the unit in seconds: also the `w` (window) of the `RateLimit-Policy` header.
    pub const fn seconds(self) -> u64 {
        match self {
            Per::Second => 1,
            Per::Minute => 60,
            Per::Hour => 3_600,
        }
    }

    pub const fn nanos(self) -> u64 {
        self.seconds() * NANOS_PER_SECOND
    }

    const fn symbol(self) -> &'static str {
        match self {
            Per::Second => "s",
            Per::Minute => "m",
            Per::Hour => "h",
        }
    }
}

/// A rate: `count` requests per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    per: Per,
}

impl Rate {
    /// A rate from its parts, checked like a parsed one.
    pub fn new(count: u32, per: Per) -> Result<Rate, &'static str> {
        if count == 0 {
            return Err(
                "a rate of 0 would refuse every request; remove the limit or allow at least 1",
            );
        }
        // count / per_seconds <= MAX, written without division so it is exact.
        if u64::from(count) > MAX_RATE_PER_SECOND * per.seconds() {
            return Err("rate is too high; the most a limit can allow is 1000000/s");
        }
        Ok(Rate { count, per })
    }

    /// Parses `"100/s"`, `"6000/m"` or `"10/h"`.
    pub fn parse(text: &str) -> Result<Rate, &'static str> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty rate; write a count per unit, like \"100/s\"");
        }
        if text.starts_with(['-', '+']) {
            return Err("a rate cannot be signed");
        }
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err("expected a whole number before the '/', like \"100/s\"");
        }
        let (count, rest) = text.split_at(digits);
        if rest.starts_with(['.', ',']) {
            return Err("use a whole number with a longer unit: \"90/m\", not \"1.5/s\"");
        }
        let Some(unit) = rest.strip_prefix('/') else {
            return Err("missing '/unit' after the count; write \"100/s\", \"6000/m\" or \"10/h\"");
        };
        let per = match unit {
            "s" => Per::Second,
            "m" => Per::Minute,
            "h" => Per::Hour,
            "" => return Err("missing unit after '/'; use s, m or h"),
            _ if unit.starts_with(|c: char| c.is_ascii_digit()) => {
                return Err(
                    "a rate has no window length; write \"10/s\", not \"100/10s\" (burst sets how many may come at once)",
                );
            }
            _ => return Err("unknown unit after '/'; use s, m or h"),
        };
        let count: u32 = count
            .parse()
            .map_err(|_| "rate is too high; the most a limit can allow is 1000000/s")?;
        Rate::new(count, per)
    }

    pub const fn count(self) -> u32 {
        self.count
    }

    pub const fn per(self) -> Per {
        self.per
    }

    /// The emission interval: nanoseconds between two requests at exactly this rate, rounded
    /// up so rounding can only make the limit stricter, never looser.
    pub const fn interval_nanos(self) -> u64 {
        self.per.nanos().div_ceil(self.count as u64)
    }

    /// How many requests this rate allows in `nanos` nanoseconds, rounded down.
    pub const fn allowance(self, nanos: u64) -> u64 {
        // u128: count (< 2^32) times nanos (< 2^64) cannot overflow it.
        ((self.count as u128 * nanos as u128) / self.per.nanos() as u128) as u64
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.per.symbol())
    }
}

/// The burst a quota gets when the configuration does not say: the rate's count, i.e. one unit's
/// worth at once (`"100/s"` admits 100 at once from an idle key, `"10/h"` admits 10). The same
/// choice as most GCRA limiters; an explicit `burst` is better when the unit is long.
pub const fn default_burst(rate: Rate) -> u32 {
    if rate.count > MAX_BURST {
        MAX_BURST
    } else {
        rate.count
    }
}

/// A rate and a burst, for the whole node: what one `rate_limit` entry configures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    rate: Rate,
    burst: u32,
}

impl Quota {
    /// A quota; `burst: None` takes [`default_burst`].
    pub fn new(rate: Rate, burst: Option<u32>) -> Result<Quota, &'static str> {
        let burst = burst.unwrap_or(default_burst(rate));
        if burst == 0 {
            return Err("a burst of 0 would refuse every request; use at least 1");
        }
        if burst > MAX_BURST {
            return Err("burst is too large; the most is 1000000");
        }
        Ok(Quota { rate, burst })
    }

    pub const fn rate(self) -> Rate {
        self.rate
    }

    pub const fn burst(self) -> u32 {
        self.burst
    }

    /// The burst window: how far ahead of `now` a key's theoretical arrival time may run before
    /// requests are refused. `burst` requests at the node's rate; it does not depend on a
    /// shard's share (a smaller share has a longer interval and so fits fewer requests in the
    /// same window).
    pub const fn window_nanos(self) -> u64 {
        // At most MAX_BURST * 3.6e12 = 3.6e18 < u64::MAX.
        self.burst as u64 * self.rate.interval_nanos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_take_each_unit() {
        assert_eq!(Rate::parse("100/s"), Rate::new(100, Per::Second));
        assert_eq!(Rate::parse("6000/m"), Rate::new(6000, Per::Minute));
        assert_eq!(Rate::parse("10/h"), Rate::new(10, Per::Hour));
        assert_eq!(Rate::parse(" 1/s "), Rate::new(1, Per::Second));
        assert_eq!(Rate::parse("1000000/s").map(Rate::count), Ok(1_000_000));
        assert_eq!(
            Rate::parse("3600000000/h").map(Rate::count),
            Ok(3_600_000_000)
        );
    }

    #[test]
    fn rates_refuse_bad_parts_by_name() {
        let err = |text| Rate::parse(text).unwrap_err();
        assert!(err("").contains("empty rate"));
        assert!(err("0/s").contains("rate of 0"));
        assert!(err("-1/s").contains("signed"));
        assert!(err("/s").contains("whole number"));
        assert!(err("1.5/s").contains("90/m"));
        assert!(err("100").contains("missing '/unit'"));
        assert!(err("100 /s").contains("missing '/unit'"));
        assert!(err("100/").contains("missing unit"));
        assert!(err("100/sec").contains("unknown unit"));
        assert!(err("100/S").contains("unknown unit"));
        assert!(err("100/ s").contains("unknown unit"));
        assert!(err("100/10s").contains("no window length"));
        assert!(err("1000001/s").contains("too high"));
        assert!(err("99999999999/h").contains("too high"));
        assert!(err("100/s/s").contains("unknown unit"));
    }

    #[test]
    fn rates_print_as_written() {
        for text in ["100/s", "6000/m", "10/h"] {
            assert_eq!(Rate::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn intervals_round_towards_stricter() {
        assert_eq!(Rate::parse("100/s").unwrap().interval_nanos(), 10_000_000);
        assert_eq!(Rate::parse("6000/m").unwrap().interval_nanos(), 10_000_000);
        assert_eq!(
            Rate::parse("10/h").unwrap().interval_nanos(),
            360 * NANOS_PER_SECOND
        );
        // 1e9 / 7 = 142857142.86: rounded up, so 7 requests never fit in less than a second.
        let seven = Rate::parse("7/s").unwrap();
        assert_eq!(seven.interval_nanos(), 142_857_143);
        assert!(seven.interval_nanos() * 7 >= NANOS_PER_SECOND);
        assert_eq!(seven.allowance(NANOS_PER_SECOND), 7);
        assert_eq!(seven.allowance(NANOS_PER_SECOND / 10), 0);
        assert_eq!(
            Rate::parse("100/s")
                .unwrap()
                .allowance(NANOS_PER_SECOND / 10),
            10
        );
    }

    #[test]
    fn quotas_default_and_check_the_burst() {
        let rate = Rate::parse("100/s").unwrap();
        assert_eq!(Quota::new(rate, None).unwrap().burst(), 100);
        assert_eq!(Quota::new(rate, Some(50)).unwrap().burst(), 50);
        assert!(
            Quota::new(rate, Some(0))
                .unwrap_err()
                .contains("burst of 0")
        );
        assert!(
            Quota::new(rate, Some(MAX_BURST + 1))
                .unwrap_err()
                .contains("too large")
        );
        let big = Rate::parse("3600000000/h").unwrap();
        assert_eq!(Quota::new(big, None).unwrap().burst(), MAX_BURST);
        assert_eq!(
            Quota::new(rate, Some(50)).unwrap().window_nanos(),
            500_000_000
        );
        let slowest = Quota::new(Rate::parse("1/h").unwrap(), Some(MAX_BURST)).unwrap();
        assert_eq!(slowest.window_nanos(), 3_600 * NANOS_PER_SECOND * 1_000_000);
    }
}
