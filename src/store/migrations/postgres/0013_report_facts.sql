-- What reports read (`reports`): one row per referral, written in the same
-- transaction as its intake, and updated in the same transaction as each
-- Task change and as the delivery of the referral message. No patient
-- data: the age band (never the date of birth), the administrative sex,
-- codes and ids. Reports never read `referrals`, `tasks` or `task_events`.
-- Times are Unix milliseconds; a stage's time is when it was first reached.
CREATE TABLE report_facts (
    task_id       TEXT PRIMARY KEY,
    referral_id   TEXT NOT NULL UNIQUE,
    referred_at   TEXT NOT NULL,
    referred_ms   BIGINT NOT NULL,
    month         TEXT NOT NULL,
    provider      TEXT NOT NULL,
    scheme        TEXT NOT NULL,
    ods           TEXT NOT NULL,
    profession    TEXT NOT NULL,
    age_band      TEXT NOT NULL,
    sex           TEXT NOT NULL,
    delivered_ms  BIGINT,
    contact_ms    BIGINT,
    engaged_ms    BIGINT,
    completed_ms  BIGINT,
    -- The final branch: completed, declined, rejected, revoked,
    -- entered-in-error, failed; NULL while the referral is open.
    ending        TEXT,
    escalated     BIGINT NOT NULL DEFAULT 0
);
-- A period's funnel is a range scan of this index alone: it covers every
-- column the funnel reads, so no table row is visited.
CREATE INDEX report_facts_referred ON report_facts (referred_at, provider, scheme, ods,
    profession, age_band, sex, month, referred_ms, delivered_ms, contact_ms, engaged_ms,
    completed_ms, ending, escalated);
