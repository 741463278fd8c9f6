//! Test support shared by the end-to-end tests: a recording upstream that misbehaves on request,
//! a raw HTTP client, and starting coregate in-process on ephemeral ports.

pub mod client;
pub mod harness;
pub mod upstream;
