-- Bearer tokens for referrers and operators. Only a salted hash of each
-- token's secret is kept; the token itself is shown once, when created.
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    role        TEXT NOT NULL,
    referrer_id TEXT,
    salt        TEXT NOT NULL,
    hash        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
