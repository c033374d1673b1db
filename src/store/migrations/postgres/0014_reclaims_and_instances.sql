-- Erasures whose old row versions PostgreSQL still holds: each erasure
-- records its transaction id (`horizon`); the reclaim (VACUUM, then
-- ANALYZE) runs once no transaction that started before it is left, and
-- marks the rows reclaimed. Nothing of the patient is stored here.
CREATE TABLE erasure_reclaims (
    id BIGSERIAL PRIMARY KEY,
    erased_at TEXT NOT NULL,
    horizon BIGINT NOT NULL,
    reclaimed_at TEXT
);
CREATE INDEX erasure_reclaims_pending ON erasure_reclaims (id) WHERE reclaimed_at IS NULL;

-- The Signpost processes sharing the database: each `serve` beats here
-- (`heartbeat_ms`, by the database's clock) with the mapping set it has live, so that a mapping
-- reloaded on one instance only is seen (and alerted on) by all.
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    mappings TEXT NOT NULL
);
