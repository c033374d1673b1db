-- Escalations (issue 18): a provider's request back to a clinician when a
-- person's needs go beyond what it can safely handle. Each is a child Task
-- of the referral's Task (`partOf`), with the Communication carrying the
-- provider's words and, for a safeguarding concern, a Flag. The resources
-- are stored as the JSON text served, as Tasks are; the other columns are
-- what searches, the deadline sweep and the uniqueness rule read. The
-- child Task is not in `tasks`, whose one row per referral is the
-- referral's own Task.
CREATE TABLE escalations (
    -- The child Task's FHIR id.
    id               TEXT PRIMARY KEY,
    referral_id      TEXT NOT NULL REFERENCES referrals (id),
    referrer_id      TEXT NOT NULL,
    provider_id      TEXT NOT NULL,
    -- A code of Signpost's escalation-reason CodeSystem.
    reason           TEXT NOT NULL,
    -- routine | urgent
    urgency          TEXT NOT NULL,
    -- The child Task's status: requested until acknowledged, then
    -- accepted, rejected or completed.
    state            TEXT NOT NULL,
    version_id       BIGINT NOT NULL,
    -- Fixed-width RFC 3339 UTC text, so text order is time order: when an
    -- unacknowledged escalation is sent again.
    deadline         TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    last_updated     TEXT NOT NULL,
    acknowledged_at  TEXT,
    -- How many times the referrer has been sent it (1 when raised).
    sends            BIGINT NOT NULL,
    task             TEXT NOT NULL,
    communication_id TEXT NOT NULL UNIQUE,
    communication    TEXT NOT NULL,
    flag_id          TEXT UNIQUE,
    flag             TEXT,
    -- Where it goes: the referrer (`referrer:<id>`) or the clinical service
    -- it names (`clinical-service:<id>`).
    target           TEXT NOT NULL,
    -- For a clinical service: the ServiceRequest (intent proposal) it is
    -- sent as.
    service_request  TEXT,
    -- The provider's request (its webhook-id), when it came over HTTP: the
    -- same request again is answered with this escalation, not a second.
    request_id       TEXT
);

-- One open escalation per referral and reason: a second with the same
-- reason is refused by this constraint, not by search-then-insert.
CREATE UNIQUE INDEX escalations_open_reason ON escalations (referral_id, reason)
    WHERE state IN ('requested', 'accepted');
CREATE UNIQUE INDEX escalations_by_request ON escalations (provider_id, request_id);
CREATE INDEX escalations_by_referral ON escalations (referral_id, created_at);
CREATE INDEX escalations_by_referrer ON escalations (referrer_id, created_at);
-- The deadline sweep reads the unacknowledged ones, soonest first.
CREATE INDEX escalations_due ON escalations (deadline) WHERE state = 'requested';

-- A clinical service's token acknowledges the escalations sent to it.
ALTER TABLE api_tokens ADD COLUMN clinical_service_id TEXT;
