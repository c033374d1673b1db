-- `GET /metrics` counts dead letters per endpoint at every scrape; a partial
-- index keeps that cheap however much delivered history accumulates.
CREATE INDEX outbox_dead ON outbox (endpoint) WHERE state = 'dead';
