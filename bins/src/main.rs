//! The `coregate` command line.
fn main() {}
