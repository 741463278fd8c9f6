//! A shard's client connections as its drain sees them: which are open, which wait for a
//! request, and the connection cap. Draining shuts keep-alive connections between requests
//! down at once (their pending receive then ends), gives new connections a short grace to send
//! their first request, and lets the busy ones finish their current response.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;

use slab::Slab;

use crate::event::{LocalEvent, Wait};

/// What a client connection is doing, as the drain sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Serving a request (or a handshake): left to finish.
    Busy,
    /// A new connection waiting for its first request: its client connected before the drain
    /// and may have its request on the way, so it gets [`FIRST_REQUEST_GRACE`] to send it.
    FirstRequest,
    /// A keep-alive connection between requests: shut down as soon as the drain starts.
    NextRequest,
}

/// How long a draining shard still waits for the first request of connections it accepted
/// (a quarter of the drain's time when that is shorter). A client whose request was on its
/// way when the drain began sends it within this; one that sends nothing (a port scan, an
/// idle pre-connection) does not hold the drain any longer.
pub const FIRST_REQUEST_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// A client connection, as the drain logic sees it.
struct Entry {
    fd: RawFd,
    waiting: Waiting,
}
/// Bytes a connection takes in the registry's table: its entry and the slab's tag beside it.
pub fn entry_bytes() -> usize {
    std::mem::size_of::<Entry>() + std::mem::size_of::<usize>()
}

/// The open client connections of one shard.
pub struct Registry {
    connections: RefCell<Slab<Entry>>,
    max_connections: Cell<usize>,
    draining: LocalEvent,
}

impl Registry {
    pub fn new(max_connections: usize) -> Registry {
        Registry {
            connections: RefCell::new(Slab::with_capacity(1024)),
            max_connections: Cell::new(max_connections),
            draining: LocalEvent::default(),
        }
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections.get()
    }

    pub fn set_max_connections(&self, max: usize) {
        self.max_connections.set(max);
    }

    pub fn open_connections(&self) -> usize {
        self.connections.borrow().len()
    }

    /// Records a new client connection, busy until it waits for a request; returns its key.
    pub fn register(&self, fd: RawFd) -> usize {
        self.connections.borrow_mut().insert(Entry {
            fd,
            waiting: Waiting::Busy,
        })
    }

    pub fn unregister(&self, key: usize) {
        self.connections.borrow_mut().try_remove(key);
    }

    /// Says what a connection is doing now.
    pub fn set_waiting(&self, key: usize, waiting: Waiting) {
        if let Some(entry) = self.connections.borrow_mut().get_mut(key) {
            entry.waiting = waiting;
        }
    }

    pub fn draining(&self) -> bool {
        self.draining.has_fired()
    }

    /// Resolves when draining starts.
    pub fn drain_started(&self) -> Wait<'_> {
        self.draining.wait()
    }

    /// Starts draining: accept loops stop, and keep-alive connections between requests are
    /// shut down now (their pending receive then ends).
    pub fn start_drain(&self) {
        self.draining.fire();
        self.shut_down(Waiting::NextRequest);
    }

    /// Ends the drain's grace for new connections: those still waiting for their first request
    /// are shut down.
    pub fn end_first_request_grace(&self) {
        self.shut_down(Waiting::FirstRequest);
    }

    fn shut_down(&self, waiting: Waiting) {
        for (_, entry) in self.connections.borrow().iter() {
            if entry.waiting == waiting {
                crate::io::socket::shutdown(entry.fd);
            }
        }
    }
}
