//! Seeds from the kernel's random source: for request ids and rate-limit key hashing. Read at
//! start-up and when a shard is built, never per request.

/// 64 bits from `getrandom(2)`.
pub fn seed() -> u64 {
    let mut seed = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into the array.
    let got = unsafe { libc::getrandom(seed.as_mut_ptr() as *mut libc::c_void, 8, 0) };
    if got != 8 {
        // Unreachable on Linux >= 3.17; the clock still differs between calls.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return now.as_nanos() as u64;
    }
    u64::from_ne_bytes(seed)
}
