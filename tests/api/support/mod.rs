//! Test support, not features: the harness that starts Signpost on a fresh
//! database (`helpers`), the signed webhook receivers standing in for
//! providers and referrers (`receiver`), and a Signpost with a receiver for
//! every endpoint (`fleet`), and the echo fuzz's probes (`probes`). `kit` is shared with the end-to-end bench.

#[path = "../../support/kit.rs"]
pub mod kit;

pub mod browser;
pub mod fleet;
pub mod helpers;
pub mod probes;
pub mod programs;
pub mod proxy;
pub mod receiver;
