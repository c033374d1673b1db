-- BaRS messages received: one row per X-Request-Id that was processed, so
-- that a sender's retry is recognised however much later it comes, and so
-- that status responses can be addressed back the BaRS way (the sender's
-- source endpoint, its correlation id, the original Bundle id). No patient
-- data: ids and endpoints only.
CREATE TABLE bars_messages (
    request_id      TEXT PRIMARY KEY,
    correlation_id  TEXT NOT NULL,
    bundle_id       TEXT NOT NULL,
    workflow        TEXT NOT NULL,
    referral_id     TEXT NOT NULL,
    referrer_id     TEXT NOT NULL,
    source_endpoint TEXT NOT NULL,
    received_at     TEXT NOT NULL
);
CREATE INDEX bars_messages_referral ON bars_messages (referral_id, received_at);
