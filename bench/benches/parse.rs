//! Criterion benchmark: parse (written with the module it measures).
fn main() {}
