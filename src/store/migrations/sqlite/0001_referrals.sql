-- Referrals as accepted, their Tasks, and every Task transition.
-- Resources are stored as the JSON text served to clients.

CREATE TABLE referrals (
    id                TEXT PRIMARY KEY,
    referrer_id       TEXT NOT NULL,
    identifier_system TEXT NOT NULL,
    identifier_value  TEXT NOT NULL,
    provider_id       TEXT,
    version_id        INTEGER NOT NULL,
    last_updated      TEXT NOT NULL,
    resource          TEXT NOT NULL,
    -- Idempotency: one referral per business identifier per referrer,
    -- enforced here rather than by search-then-insert.
    UNIQUE (referrer_id, identifier_system, identifier_value)
);

CREATE INDEX referrals_by_identifier ON referrals (identifier_value, identifier_system);

CREATE TABLE tasks (
    id           TEXT PRIMARY KEY,
    referral_id  TEXT NOT NULL UNIQUE REFERENCES referrals (id),
    status       TEXT NOT NULL,
    version_id   INTEGER NOT NULL,
    last_updated TEXT NOT NULL,
    resource     TEXT NOT NULL
);

CREATE TABLE task_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     TEXT NOT NULL REFERENCES tasks (id),
    from_status TEXT,
    to_status   TEXT NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT,
    at          TEXT NOT NULL
);

CREATE INDEX task_events_by_task ON task_events (task_id, seq);
