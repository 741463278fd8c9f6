//! Criterion benchmark: route (written with the module it measures).
fn main() {}
