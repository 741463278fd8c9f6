//! Test support shared by the end-to-end tests: a recording upstream that misbehaves on request,
//! a raw HTTP client (plain or TLS), certificates made at test time, and starting coregate
//! in-process on ephemeral ports.

pub mod client;
pub mod harness;
pub mod tls;
pub mod upstream;
