-- Delivery: the transactional outbox, every attempt, endpoints an operator
-- must re-enable, provider callbacks as received, and the per-referrer
-- notification event counter.

-- One row per message to send. `seq` orders the messages of one referral to
-- one endpoint; `id` is the Standard Webhooks `webhook-id`, the same on
-- every attempt. Times used for scheduling are Unix milliseconds.
CREATE TABLE outbox (
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    referral_id     TEXT NOT NULL REFERENCES referrals (id),
    endpoint        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT,
    last_error      TEXT,
    replay_of       TEXT
);

-- Only pending rows are ever claimed or block a later message, and they are
-- few beside the delivered ones: partial indexes keep claiming cheap (and
-- steer PostgreSQL's planner to them) however long the history grows.
CREATE INDEX outbox_due ON outbox (next_attempt_at, seq) WHERE state = 'pending';
CREATE INDEX outbox_pending_by_referral ON outbox (referral_id, endpoint, seq) WHERE state = 'pending';
CREATE INDEX outbox_by_referral ON outbox (referral_id, seq);

CREATE TABLE delivery_attempts (
    id               BIGSERIAL PRIMARY KEY,
    message_id       TEXT NOT NULL REFERENCES outbox (id),
    attempt          BIGINT NOT NULL,
    worker           TEXT NOT NULL,
    started_at       TEXT NOT NULL,
    latency_ms       BIGINT NOT NULL,
    status_code      BIGINT,
    error            TEXT,
    response_excerpt TEXT,
    outcome          TEXT NOT NULL
);

CREATE INDEX delivery_attempts_by_message ON delivery_attempts (message_id, id);

-- An endpoint that answered 410 Gone: nothing is sent to it until an
-- operator re-enables it.
CREATE TABLE disabled_endpoints (
    endpoint    TEXT PRIMARY KEY,
    disabled_at TEXT NOT NULL,
    reason      TEXT NOT NULL
);

-- Provider status callbacks, deduplicated by webhook-id. The answer given
-- is kept so that a resent callback gets the same answer.
CREATE TABLE inbound_events (
    provider_id     TEXT NOT NULL,
    webhook_id      TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    referral_id     TEXT,
    body            TEXT NOT NULL,
    response_status BIGINT NOT NULL,
    outcome         TEXT NOT NULL,
    PRIMARY KEY (provider_id, webhook_id)
);

-- Subscriptions-backport event numbers, per referrer.
CREATE TABLE notification_counters (
    referrer_id TEXT PRIMARY KEY,
    events      BIGINT NOT NULL
);

CREATE INDEX tasks_by_last_updated ON tasks (last_updated);
