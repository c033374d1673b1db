//! Black-box tests of Signpost over real HTTP, each on SQLite and on
//! PostgreSQL.

mod support;

mod attacks_input;
mod audit;
mod delivery;
mod durability;
mod erasure;
mod errors;
mod idempotency;
mod intake;
mod limits;
mod operations;
mod privacy;
mod reload;
mod routing;
mod security;
mod status;
mod tls;
mod validation;
