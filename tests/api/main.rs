//! Black-box tests of Signpost over real HTTP, each on SQLite and on
//! PostgreSQL.

mod helpers;

mod durability;
mod errors;
mod idempotency;
mod intake;
mod reload;
mod routing;
mod validation;
