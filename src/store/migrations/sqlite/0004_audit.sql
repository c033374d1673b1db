-- The audit trail: who did what to which referral, when, from where, and
-- how it ended. Append-only: Signpost has no statement that updates or
-- deletes a row here. Never holds patient data, only ids.
CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    client      TEXT,
    request_id  TEXT,
    action      TEXT NOT NULL,
    resource    TEXT,
    referral_id TEXT,
    outcome     TEXT NOT NULL
);

CREATE INDEX audit_by_referral ON audit_log (referral_id, seq);
CREATE INDEX audit_by_time ON audit_log (at);
