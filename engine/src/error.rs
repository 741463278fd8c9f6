//! The engine's one error type: what went wrong, which side is at fault, and whether trying
//! again (on another upstream connection) is safe.
//!
//! Everything that can fail inside the engine returns [`Error`]. Knowing *who is at fault* makes
//! the proxy's decisions mechanical: a downstream fault closes or answers the client (4xx), an
//! upstream fault maps to 502/504 and may be retried on a fresh connection, an internal fault is
//! a bug or a resource limit. The messages are `&'static str` so building an error allocates
//! nothing on the hot path.

use std::fmt;
use std::io;

/// Who caused an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client: malformed request, timeout while sending, reset.
    Downstream,
    /// The upstream server: refused, reset, malformed or slow response.
    Upstream,
    /// coregate itself: exhausted resources or an invariant that did not hold.
    Internal,
    /// Configuration or start-up: the operator's input.
    Config,
}

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The peer sent bytes that are not valid HTTP/1.x.
    Protocol,
    /// The peer closed the connection.
    Closed,
    /// The peer reset the connection, or another socket error.
    Io,
    /// A deadline passed.
    Timeout,
    /// Connecting to an upstream failed.
    Connect,
    /// A configured limit was exceeded (buffers, connections, sizes).
    Limit,
    /// Invalid configuration.
    Config,
}

/// An error with its kind, the side at fault and whether a retry on a fresh upstream connection
/// is safe.
#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub side: Side,
    /// True when no byte of the request could have been processed by the upstream, so an
    /// idempotent request may be sent again on another connection.
    pub retryable: bool,
    pub message: &'static str,
    /// The operating-system error behind an `Io` or `Connect` error, if any.
    pub os: Option<i32>,
}

impl Error {
    pub const fn new(kind: ErrorKind, side: Side, message: &'static str) -> Error {
        Error {
            kind,
            side,
            retryable: false,
            message,
            os: None,
        }
    }

    pub const fn retryable(mut self) -> Error {
        self.retryable = true;
        self
    }

    /// Wraps an operating-system error number from a socket operation.
    pub fn from_errno(errno: i32, side: Side, message: &'static str) -> Error {
        let kind = match errno {
            libc::ETIMEDOUT | libc::ECANCELED => ErrorKind::Timeout,
            libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH => ErrorKind::Connect,
            _ => ErrorKind::Io,
        };
        Error {
            kind,
            side,
            retryable: false,
            message,
            os: Some(errno),
        }
    }

    pub fn from_io(err: &io::Error, side: Side, message: &'static str) -> Error {
        match err.raw_os_error() {
            Some(errno) => Error::from_errno(errno, side, message),
            None if err.kind() == io::ErrorKind::TimedOut => {
                Error::new(ErrorKind::Timeout, side, message)
            }
            None => Error::new(ErrorKind::Io, side, message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({:?} side, {:?})",
            self.message, self.side, self.kind
        )?;
        if let Some(errno) = self.os {
            write!(f, ": {}", io::Error::from_raw_os_error(errno))?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
