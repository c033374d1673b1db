-- BaRS idempotency is per sender: a request id is unique for the referrer
-- that sent it, and another referrer's message with the same request id is
-- a different message (review finding 5). SQLite cannot change a primary
-- key in place, so the table is rebuilt.
CREATE TABLE bars_messages_new (
    request_id      TEXT NOT NULL,
    correlation_id  TEXT NOT NULL,
    bundle_id       TEXT NOT NULL,
    workflow        TEXT NOT NULL,
    referral_id     TEXT NOT NULL,
    referrer_id     TEXT NOT NULL,
    source_endpoint TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    PRIMARY KEY (referrer_id, request_id)
);
INSERT INTO bars_messages_new SELECT
    request_id, correlation_id, bundle_id, workflow, referral_id, referrer_id, source_endpoint, received_at
    FROM bars_messages;
DROP TABLE bars_messages;
ALTER TABLE bars_messages_new RENAME TO bars_messages;
CREATE INDEX bars_messages_referral ON bars_messages (referral_id, received_at);
