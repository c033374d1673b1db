//! The fuzz targets' entry points live in `entries.rs`, which the main
//! crate's `tests/fuzz_corpus.rs` also includes, so `cargo test` replays the
//! committed corpus through exactly what libFuzzer runs.

#[path = "entries.rs"]
pub mod entries;
