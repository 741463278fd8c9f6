//! Configuration: TOML file -> raw serde structs -> validated, immutable `Config`.

mod cores;
pub mod units;
