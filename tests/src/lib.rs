//! Test support shared by the end-to-end tests: a recording upstream that misbehaves on request,
//! a raw HTTP client, starting coregate in-process on ephemeral ports, and fake `/sys` and
//! `/proc` trees for the topology check.

pub mod client;
pub mod fakehost;
pub mod harness;
pub mod upstream;
