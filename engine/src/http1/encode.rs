//! Writing heads: [`HeadWriter`] is a cursor over a caller-provided `&mut [u8]` (the
//! connection's output buffer) that writes a request or status line and field lines.
//!
//! It owns the byte layout of a head coregate sends, nothing else: which fields to write is the
//! proxy's decision. It never allocates and never panics when the buffer is too small: the
//! overflow is remembered and reported once, by [`HeadWriter::finish`], so a sequence of writes
//! needs no error handling between the steps.

use super::Version;

/// The head did not fit the output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadTooLarge;

/// A field name or value from outside coregate would have broken the head (a name that is not
/// a token, a value with CR, LF or another control character).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidField;

/// Writes a head into `out`, from its start.
///
/// ```
/// # use coregate_engine::http1::{HeadWriter, Version};
/// let mut out = [0u8; 64];
/// let mut head = HeadWriter::new(&mut out);
/// head.request_line(b"GET", b"/", Version::Http11)
///     .field(b"host", b"example.com")
///     .field_u64(b"content-length", 0);
/// let len = head.finish().unwrap();
/// assert_eq!(&out[..len], b"GET / HTTP/1.1\r\nhost: example.com\r\ncontent-length: 0\r\n\r\n");
/// ```
pub struct HeadWriter<'a> {
    out: &'a mut [u8],
    len: usize,
    /// A write did not fit; everything after it is skipped and `finish` reports it.
    overflow: bool,
}

impl<'a> HeadWriter<'a> {
    pub fn new(out: &'a mut [u8]) -> HeadWriter<'a> {
        HeadWriter {
            out,
            len: 0,
            overflow: false,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `METHOD SP target SP version CRLF`. The method and target are the client's bytes, which
    /// the parser validated.
    pub fn request_line(&mut self, method: &[u8], target: &[u8], version: Version) -> &mut Self {
        self.put(method)
            .put(b" ")
            .put(target)
            .put(b" ")
            .put(version.as_bytes())
            .put(b"\r\n")
    }

    /// `version SP status SP reason CRLF`. `status` is three digits (100 to 999).
    pub fn status_line(&mut self, version: Version, status: u16, reason: &[u8]) -> &mut Self {
        debug_assert!((100..=999).contains(&status), "status {status}");
        let status = status.clamp(100, 999);
        let digits = [
            b'0' + (status / 100) as u8,
            b'0' + (status / 10 % 10) as u8,
            b'0' + (status % 10) as u8,
        ];
        self.put(version.as_bytes())
            .put(b" ")
            .put(&digits)
            .put(b" ")
            .put(reason)
            .put(b"\r\n")
    }

    /// `name: value CRLF`, for names and values coregate knows to be valid (its own, or spans
    /// the parser checked). Use [`HeadWriter::field_checked`] for anything else.
    pub fn field(&mut self, name: &[u8], value: &[u8]) -> &mut Self {
        debug_assert!(is_valid_name(name), "field name {name:?}");
        debug_assert!(
            !value.iter().any(|&b| b == b'\r' || b == b'\n'),
            "CR/LF in field value"
        );
        self.put(name).put(b": ").put(value).put(b"\r\n")
    }

    /// Like [`HeadWriter::field`], for values from outside (configuration, a token, a header
    /// copied from elsewhere): refuses a name that is not a token or a value with a control
    /// character, writing nothing.
    pub fn field_checked(&mut self, name: &[u8], value: &[u8]) -> Result<&mut Self, InvalidField> {
        if !is_valid_name(name) || !value.iter().all(|&b| super::is_field_vchar(b)) {
            return Err(InvalidField);
        }
        Ok(self.field(name, value))
    }

    /// `name: decimal CRLF`, for `content-length` and the like, without formatting machinery.
    pub fn field_u64(&mut self, name: &[u8], value: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let text = decimal(value, &mut digits);
        self.field(name, text)
    }

    /// Bytes copied as they are: runs of unchanged field lines from the client's head
    /// (`name: value CRLF` included), kept byte for byte. The caller vouches for them.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.put(bytes)
    }

    /// Ends the head with the empty line and returns its length, or [`HeadTooLarge`] if any
    /// write did not fit.
    pub fn finish(mut self) -> Result<usize, HeadTooLarge> {
        self.put(b"\r\n");
        if self.overflow {
            Err(HeadTooLarge)
        } else {
            Ok(self.len)
        }
    }

    fn put(&mut self, bytes: &[u8]) -> &mut Self {
        if self.overflow {
            return self;
        }
        match self.out.get_mut(self.len..self.len + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            None => self.overflow = true,
        }
        self
    }
}

fn is_valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| super::is_tchar(b))
}

/// `value` in decimal, written to the end of `buf`; returns the digits.
pub(crate) fn decimal(mut value: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    &buf[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_status_line_and_fields() {
        let mut out = [0u8; 128];
        let mut head = HeadWriter::new(&mut out);
        head.status_line(Version::Http11, 204, b"No Content")
            .field(b"server", b"coregate")
            .raw(b"x-kept: as sent\r\n");
        assert!(!head.is_empty());
        let len = head.finish().unwrap();
        assert_eq!(
            &out[..len],
            b"HTTP/1.1 204 No Content\r\nserver: coregate\r\nx-kept: as sent\r\n\r\n"
        );
    }

    #[test]
    fn overflow_is_reported_not_panicked() {
        let mut out = [0u8; 20];
        let mut head = HeadWriter::new(&mut out);
        head.request_line(b"GET", b"/a/rather/long/path", Version::Http10)
            .field(b"host", b"h");
        assert_eq!(head.finish(), Err(HeadTooLarge));
        // Exactly full is fine.
        let mut out = [0u8; 18];
        let mut head = HeadWriter::new(&mut out);
        head.request_line(b"GET", b"/", Version::Http10);
        assert_eq!(head.finish(), Ok(18));
        let mut out = [0u8; 17];
        let mut head = HeadWriter::new(&mut out);
        head.request_line(b"GET", b"/", Version::Http10);
        assert_eq!(head.finish(), Err(HeadTooLarge));
    }

    #[test]
    fn checked_fields_refuse_what_would_break_the_head() {
        let mut out = [0u8; 64];
        let mut head = HeadWriter::new(&mut out);
        assert_eq!(
            head.field_checked(b"x", b"a\r\nInjected: 1").err(),
            Some(InvalidField)
        );
        assert_eq!(head.field_checked(b"x", b"a\nb").err(), Some(InvalidField));
        assert_eq!(head.field_checked(b"x", b"a\0b").err(), Some(InvalidField));
        assert_eq!(
            head.field_checked(b"bad name", b"v").err(),
            Some(InvalidField)
        );
        assert_eq!(head.field_checked(b"", b"v").err(), Some(InvalidField));
        assert_eq!(head.len(), 0, "nothing written by refused fields");
        head.field_checked(b"x-ok", b"tab\tand obs-text \xff")
            .unwrap();
        let len = head.finish().unwrap();
        assert_eq!(&out[..len], b"x-ok: tab\tand obs-text \xff\r\n\r\n");
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(10, &mut buf), b"10");
        assert_eq!(decimal(u64::MAX, &mut buf), b"18446744073709551615");
        let mut out = [0u8; 64];
        let mut head = HeadWriter::new(&mut out);
        head.field_u64(b"content-length", 65536);
        let len = head.finish().unwrap();
        assert_eq!(&out[..len], b"content-length: 65536\r\n\r\n");
    }
}
