-- The inbox (pull delivery): providers that collect their messages rather
-- than have them pushed. Their messages are ordinary outbox rows; these
-- endpoints are skipped by the delivery worker (the set is written from the
-- configuration at start-up), and the rows are leased to the provider's
-- consumers instead (`lease_owner` = `inbox:<consumer>`).
CREATE TABLE inbox_endpoints (
    endpoint TEXT PRIMARY KEY
);

-- An inbox is read in order, pending rows only.
CREATE INDEX outbox_inbox ON outbox (endpoint, seq) WHERE state = 'pending';

-- A provider's token may use only that provider's inbox and status
-- endpoints.
ALTER TABLE api_tokens ADD COLUMN provider_id TEXT;
