//! Shared fixtures for coregate's micro-benchmarks (the load harness lives in `bench/run.sh`).
