//! Configuration: TOML file -> raw serde structs -> validated, immutable `Config`.
