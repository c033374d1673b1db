-- The provider portal's accounts and sessions. A user belongs to one
-- provider and sees only that provider's referrals. Secrets are held as
-- hashes (argon2id for the password, SHA-256 for the enrolment link and the
-- session cookie); the TOTP secret is kept as it must be to check codes.
-- Times are Unix milliseconds.
CREATE TABLE portal_users (
    id                   TEXT PRIMARY KEY,
    provider_id          TEXT NOT NULL,
    email                TEXT NOT NULL UNIQUE,
    name                 TEXT,
    password_hash        TEXT,
    totp_secret          TEXT,
    -- The last TOTP time step accepted: a code is good once.
    totp_last_step       BIGINT NOT NULL DEFAULT 0,
    enrolment_hash       TEXT UNIQUE,
    enrolment_expires_at BIGINT,
    created_at           BIGINT NOT NULL,
    disabled_at          BIGINT
);

CREATE TABLE portal_sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES portal_users (id),
    csrf_token   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX portal_sessions_by_user ON portal_sessions (user_id);

-- The portal lists a provider's referrals.
CREATE INDEX referrals_by_provider ON referrals (provider_id, id);
