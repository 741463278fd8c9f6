//! Test support shared by the end-to-end tests: a recording upstream that misbehaves on request,
//! a raw HTTP client (plain or TLS), certificates made at test time, starting coregate
//! in-process on ephemeral ports, and fake `/sys` and `/proc` trees for the topology check.

pub mod client;
pub mod fakehost;
pub mod harness;
pub mod tls;
pub mod upstream;
