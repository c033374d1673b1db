//! Input attacks replayed over real HTTP (issue 14, findings 6, 8 and 9),
//! one module per family: non-public addresses (`addresses`); distinctive
//! marker values sent to every endpoint and searched for in every answer,
//! by where they are sent (`paths`, `queries`, `headers`, `bodies`,
//! `callbacks`; the machinery is `support::probes`); characters a reader
//! may not see (`characters`).

mod addresses;
mod bodies;
mod callbacks;
mod characters;
mod headers;
mod paths;
mod queries;
