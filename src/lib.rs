//! Signpost: an interoperability gateway for social-prescribing referrals.
//!
//! Practice systems send FHIR R4 referrals; Signpost validates them, routes
//! each to a community provider and maps it to the provider's own payload
//! (`fhirpath`, `mapping`), stores it durably with its outbox messages
//! (`store`), delivers them signed (`delivery`, `webhooks`), and
//! relays providers' status callbacks back to the referrer as Task changes
//! (`referrals::lifecycle`). [`http`] is the HTTP boundary (the only module
//! that knows axum); [`security`] holds who may do what, free of HTTP. See
//! `ARCHITECTURE.md` in the design folder for the shape of the whole; each
//! module below owns one responsibility.
//! [`fhirpath`] is the FHIRPath engine (over plain JSON) that mappings and
//! routing rules are written in.

/// mimalloc instead of glibc's malloc: under load (`cargo bench --bench
/// delivery`, 64 clients) glibc's malloc and free were about a fifth of
/// the CPU profile, and with mimalloc intake was markedly faster (README,
/// Benchmarks). Set in the library, so the binary, the tests and the
/// in-process benchmarks all run on it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod addresses;
pub mod audit;
pub mod bars;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod display;
pub mod domain;
pub mod fhirpath;
pub mod http;
pub mod instances;
pub mod mapping;
pub mod metrics;
pub mod outcome;
pub mod portal;
pub mod referrals;
pub mod reports;
pub mod sandbox;
pub mod security;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod validation;
pub mod webhooks;
