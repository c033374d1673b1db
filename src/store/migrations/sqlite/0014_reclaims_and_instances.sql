-- Erasures whose old row versions the database still holds (PostgreSQL
-- only: SQLite's erasure rewrites the file before it answers, so nothing
-- is ever pending here; the table keeps the two schemas alike).
CREATE TABLE erasure_reclaims (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    erased_at TEXT NOT NULL,
    horizon BIGINT NOT NULL,
    reclaimed_at TEXT
);

-- The Signpost processes sharing the database: each `serve` beats here
-- (`heartbeat_ms`, by the database's clock) with the mapping set it has live, so that a mapping
-- reloaded on one instance only is seen (and alerted on) by all.
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    mappings TEXT NOT NULL
);
