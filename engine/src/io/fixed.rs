//! The ring's registered file table: the connection sockets the kernel finds by number in the
//! ring's own table instead of the process's.
//!
//! Every operation on a plain descriptor makes the kernel look it up in the process's file
//! table and take a reference to the file (`fget`, an atomic increment on a multi-threaded
//! process), then drop it when done (`fput`). An operation on a registered file skips both. The
//! table is sparse and indexed by the descriptor's own number, so an entry needs only the
//! `IOSQE_FIXED_FILE` flag, no translation; a descriptor past the table's end (or every one,
//! if the kernel refused the table) takes the plain path.
//!
//! The table holds a reference to every file in it: a registered socket closed with close(2)
//! alone would stay open, its peer never seeing the end. So only connections are registered,
//! when a [`Conn`](super::Conn) adopts its descriptor, and each leaves the table through the
//! ring, ahead of its close ([`Ring::close`](super::uring::Ring::close)) or when the descriptor
//! is handed back open ([`Ring::disown`](super::uring::Ring::disown)).

use std::os::fd::RawFd;

/// Slots in each ring's table, at most: descriptors numbered below this can be registered.
/// The kernel keeps 8 bytes per slot (512 KiB per shard); it also refuses a table larger than
/// the process's open-file limit, which caps it when lower.
pub const MAX_FIXED_FILES: u32 = 1 << 16;

/// Which descriptors are registered in the ring's table (their slot is their number).
pub(super) struct FixedFiles {
    /// One bit per slot: set while that descriptor is registered.
    registered: Vec<u64>,
    slots: u32,
}

impl FixedFiles {
    /// No table: every descriptor takes the plain path.
    pub fn none() -> FixedFiles {
        FixedFiles::with_slots(0)
    }

    /// A table of `slots` empty slots (the kernel's is registered by the caller).
    pub fn with_slots(slots: u32) -> FixedFiles {
        FixedFiles {
            registered: vec![0; (slots as usize).div_ceil(64)],
            slots,
        }
    }

    /// Whether `fd` has a slot in the table.
    pub fn can_hold(&self, fd: RawFd) -> bool {
        u32::try_from(fd).is_ok_and(|fd| fd < self.slots)
    }

    pub fn contains(&self, fd: RawFd) -> bool {
        self.can_hold(fd) && self.registered[fd as usize / 64] & bit(fd) != 0
    }

    /// Marks `fd` registered (the kernel's table took it).
    pub fn insert(&mut self, fd: RawFd) {
        assert!(self.can_hold(fd), "descriptor {fd} has no slot");
        self.registered[fd as usize / 64] |= bit(fd);
    }

    /// Marks `fd` no longer registered; whether it was.
    pub fn remove(&mut self, fd: RawFd) -> bool {
        if !self.contains(fd) {
            return false;
        }
        self.registered[fd as usize / 64] &= !bit(fd);
        true
    }
}

fn bit(fd: RawFd) -> u64 {
    1 << (fd as u32 % 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_descriptors_below_the_table_size_are_held() {
        let mut table = FixedFiles::with_slots(130);
        assert!(table.can_hold(0) && table.can_hold(129));
        assert!(!table.can_hold(130) && !table.can_hold(-1));
        assert!(!FixedFiles::none().can_hold(0));
        table.insert(64);
        table.insert(129);
        assert!(table.contains(64) && table.contains(129));
        assert!(!table.contains(63) && !table.contains(65) && !table.contains(130));
        assert!(table.remove(64));
        assert!(!table.remove(64), "removed once");
        assert!(!table.contains(64) && table.contains(129));
    }
}
