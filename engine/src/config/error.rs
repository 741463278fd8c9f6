//! Configuration errors: every mistake in a file, each with where it is and which key it is.
//!
//! Owns [`ConfigError`], [`ConfigErrors`] and the [`Report`] that the reader and the validator
//! fill. A report knows the source text, so it turns byte spans into file, line and column and
//! quotes the value as it was written. When a configuration starts from profiles, the text is
//! every file joined, each a segment of its own: a span names its file by the segment it falls
//! in. Nothing here decides what is valid.

use std::fmt;
use std::ops::Range;

/// A position in a configuration file. Both numbers start at 1; the column counts characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub line: u32,
    pub column: u32,
}

/// Where a value was written: the file and the place in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The file, as the caller (or the `profile` key naming it) named it.
    pub origin: Box<str>,
    pub location: Location,
}

impl fmt::Display for Written {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.origin, self.location.line, self.location.column
        )
    }
}

/// One mistake in a configuration file.
///
/// Displays as `FILE:LINE:COL: KEY: message (found VALUE)`; the location is left out when
/// there is none (an unreadable file, a missing section), the key when the mistake is not about
/// one key (TOML syntax), and `found` when quoting the value would not help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as the caller named it.
    pub origin: Box<str>,
    /// Where the mistake is: the value when a value is wrong, the key when a key is unknown, the
    /// table header when a required key is missing.
    pub location: Option<Location>,
    /// The key as a TOML path: `listener[1].bind`, `runtime.glommio.preempt_timer`. Arrays are
    /// numbered from 1, as default route names are (`route-1`). Empty for syntax errors.
    pub key: Box<str>,
    pub message: Box<str>,
    /// The offending value as written in the file, shortened when long.
    pub found: Option<Box<str>>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(at) = self.location {
            write!(f, ":{}:{}", at.line, at.column)?;
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(found) = &self.found {
            write!(f, " (found {found})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every mistake found in one configuration file, in file order. Never empty.
///
/// Displays one error per line, ready to print as they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// The errors in file order; errors without a location come first.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a `ConfigErrors` holds at least one error.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// Quotes `found` as the value of the first error (the plan's, which has no report).
    pub(super) fn quote_first(&mut self, found: String) {
        if let Some(first) = self.0.first_mut() {
            first.found = Some(found.into());
        }
    }

    /// Wraps errors found outside a [`Report`] (the core plan, reading the file).
    pub(super) fn from_vec(errors: Vec<ConfigError>) -> ConfigErrors {
        debug_assert!(!errors.is_empty(), "ConfigErrors must not be empty");
        ConfigErrors(errors)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The longest quoted value, in characters; longer values are cut with `...`.
const MAX_FOUND_CHARS: usize = 48;

/// Collects errors against one source text (one file, or a file and its profiles joined).
/// Filled by the reader and the validator, then turned into [`ConfigErrors`].
pub(super) struct Report<'s> {
    text: &'s str,
    /// The files in the text, by where each starts; the first is the main file.
    segments: Vec<Segment>,
    /// Each error with the segment it is in, for ordering.
    errors: Vec<(usize, ConfigError)>,
}

/// One file within a report's text.
struct Segment {
    origin: Box<str>,
    /// Byte offset of the file's first byte in the text.
    start: usize,
    /// Byte offset where each of its lines starts, for span -> line and column.
    line_starts: Vec<usize>,
}

impl<'s> Report<'s> {
    /// A report over one file.
    #[cfg(test)]
    pub(super) fn new(origin: &str, text: &'s str) -> Report<'s> {
        Report::joined(text, &[(origin, 0)])
    }

    /// A report over files joined into one text: each `(origin, start)` says where a file
    /// starts (ascending; the first at 0). A file ends where the next starts.
    pub(super) fn joined(text: &'s str, files: &[(&str, usize)]) -> Report<'s> {
        let segments = files
            .iter()
            .enumerate()
            .map(|(i, &(origin, start))| {
                let end = files.get(i + 1).map_or(text.len(), |&(_, next)| next);
                let body = text.get(start..end).unwrap_or("");
                Segment {
                    origin: origin.into(),
                    start,
                    line_starts: std::iter::once(start)
                        .chain(body.match_indices('\n').map(|(i, _)| start + i + 1))
                        .collect(),
                }
            })
            .collect();
        Report {
            text,
            segments,
            errors: Vec::new(),
        }
    }

    /// The segment holding a byte offset.
    fn segment(&self, offset: usize) -> usize {
        self.segments
            .partition_point(|segment| segment.start <= offset)
            .saturating_sub(1)
    }

    /// The line and column of a byte offset, within its file.
    pub(super) fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let Some(segment) = self.segments.get(self.segment(offset)) else {
            return Location { line: 1, column: 1 };
        };
        let line = segment
            .line_starts
            .partition_point(|&start| start <= offset)
            .saturating_sub(1);
        let start = segment
            .line_starts
            .get(line)
            .copied()
            .unwrap_or(segment.start);
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        Location {
            line: u32::try_from(line + 1).unwrap_or(u32::MAX),
            column: u32::try_from(column + 1).unwrap_or(u32::MAX),
        }
    }

    /// The file and position of a byte offset.
    pub(super) fn written(&self, offset: usize) -> Written {
        Written {
            origin: self.origin_of(Some(offset)).into(),
            location: self.location(offset),
        }
    }

    /// The file a byte offset is in; the main file when there is no offset.
    fn origin_of(&self, offset: Option<usize>) -> &str {
        let segment = offset.map_or(0, |offset| self.segment(offset));
        self.segments
            .get(segment)
            .map_or("", |segment| &*segment.origin)
    }

    /// The source text of a span as it should be quoted in a message: whitespace runs (line
    /// breaks included) folded to one space, long values shortened.
    pub(super) fn quote(&self, span: &Range<usize>) -> Box<str> {
        let raw = self.text.get(span.clone()).unwrap_or("");
        let folded = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        if folded.chars().count() <= MAX_FOUND_CHARS {
            return folded.into();
        }
        let cut: String = folded.chars().take(MAX_FOUND_CHARS - 3).collect();
        format!("{cut}...").into()
    }

    /// Records a mistake about `key` at `span`, without quoting the value.
    pub(super) fn error(
        &mut self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let start = span.map(|span| span.start);
        let segment = start.map_or(0, |start| self.segment(start));
        let error = ConfigError {
            origin: self.origin_of(start).into(),
            location: start.map(|start| self.location(start)),
            key: key.into().into_boxed_str(),
            message: message.into().into_boxed_str(),
            found: None,
        };
        self.errors.push((segment, error));
    }

    /// Records a bad value: points at the value and quotes it.
    pub(super) fn invalid(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let found = self.quote(&span);
        self.error(Some(span), key, message);
        if let Some((_, last)) = self.errors.last_mut() {
            last.found = Some(found);
        }
    }

    pub(super) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The errors in file order, the main file's first, then each profile's (stable:
    /// same-place errors keep the order they were found in), or `None` when there were none.
    /// Errors without a location come first.
    pub(super) fn finish(mut self) -> Option<ConfigErrors> {
        if self.errors.is_empty() {
            return None;
        }
        self.errors
            .sort_by_key(|(segment, e)| (e.location.is_some(), *segment, e.location));
        Some(ConfigErrors(
            self.errors.into_iter().map(|(_, error)| error).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let report = Report::new("t.toml", "a = 1\nbé = \"x\"\n\nc");
        assert_eq!(report.location(0), Location { line: 1, column: 1 });
        assert_eq!(report.location(4), Location { line: 1, column: 5 });
        assert_eq!(report.location(6), Location { line: 2, column: 1 });
        // 'é' is two bytes but one column.
        assert_eq!(report.location(11), Location { line: 2, column: 5 });
        assert_eq!(report.location(17), Location { line: 4, column: 1 });
        assert_eq!(report.location(999), Location { line: 4, column: 2 });
    }

    #[test]
    fn errors_display_in_file_order() {
        let text = "a = 1\nb = [\n  1,\n  2,\n]\n";
        let mut report = Report::new("t.toml", text);
        report.invalid(10..text.len() - 1, "b", "expected a string");
        report.error(Some(0..1), "a", "unknown key");
        report.error(None, "listener", "at least one [[listener]] is required");
        let errors = report.finish().expect("three errors");
        assert_eq!(
            errors.to_string(),
            "t.toml: listener: at least one [[listener]] is required\n\
             t.toml:1:1: a: unknown key\n\
             t.toml:2:5: b: expected a string (found [ 1, 2, ])"
        );
    }

    #[test]
    fn long_values_are_shortened() {
        let text = format!("\"{}\"", "x".repeat(100));
        let report = Report::new("t.toml", &text);
        let quoted = report.quote(&(0..text.len()));
        assert_eq!(quoted.chars().count(), MAX_FOUND_CHARS);
        assert!(quoted.ends_with("..."));
    }
}
