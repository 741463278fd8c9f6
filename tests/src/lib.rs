//! Test support shared by the end-to-end tests: a recording upstream, a raw HTTP client, port-free spawning of coregate.
