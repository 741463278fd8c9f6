//! A shard's client connections as its drain sees them: which are open, which idle between
//! requests, and the connection cap. Draining shuts the idle ones down at once (their pending
//! receive then ends) and lets the busy ones finish their current response.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;

use slab::Slab;

use crate::event::{LocalEvent, Wait};

/// A client connection, as the drain logic sees it.
struct Entry {
    fd: RawFd,
    idle: bool,
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

    /// Records a new client connection, idle until its first request; returns its key.
    pub fn register(&self, fd: RawFd) -> usize {
        self.connections
            .borrow_mut()
            .insert(Entry { fd, idle: true })
    }

    pub fn unregister(&self, key: usize) {
        self.connections.borrow_mut().try_remove(key);
    }

    /// Marks a connection as waiting for its next request (`true`) or busy with one (`false`).
    pub fn set_idle(&self, key: usize, idle: bool) {
        if let Some(entry) = self.connections.borrow_mut().get_mut(key) {
            entry.idle = idle;
        }
    }

    pub fn draining(&self) -> bool {
        self.draining.has_fired()
    }

    /// Resolves when draining starts.
    pub fn drain_started(&self) -> Wait<'_> {
        self.draining.wait()
    }

    /// Starts draining: accept loops stop, and idle connections are shut down now.
    pub fn start_drain(&self) {
        self.draining.fire();
        for (_, entry) in self.connections.borrow().iter() {
            if entry.idle {
                crate::io::socket::shutdown(entry.fd);
            }
        }
    }
}
