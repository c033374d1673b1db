//! Black-box tests of Signpost over real HTTP, each on SQLite and on
//! PostgreSQL.

mod support;

mod attacks_data;
mod attacks_http;
mod attacks_input;
mod audit;
mod bars;
mod bars_conformance;
mod clients;
mod delivery;
mod durability;
mod erasure;
mod errors;
mod examples;
mod idempotency;
mod intake;
mod limits;
mod operations;
mod privacy;
mod recovery;
mod reload;
mod reports;
mod routing;
mod sandbox;
mod security;
mod status;
mod tls;
mod validation;
