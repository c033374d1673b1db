//! Black-box tests of Signpost over real HTTP, each on SQLite and on
//! PostgreSQL.

mod support;

mod attacks_data;
mod attacks_http;
mod attacks_http2;
mod attacks_input;
mod audit;
mod bars;
mod bars_answers;
mod bars_conformance;
mod bars_responses;
mod clients;
mod delivery;
mod durability;
mod erasure;
mod errors;
mod examples;
mod idempotency;
mod inbox;
mod instances;
mod intake;
mod limits;
mod operations;
mod outages;
mod portal;
mod portal_browser;
mod privacy;
mod recovery;
mod reload;
mod routing;
mod sandbox;
mod security;
mod status;
mod tls;
mod validation;
