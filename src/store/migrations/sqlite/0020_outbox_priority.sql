-- Urgent messages (an urgent escalation to a clinician) are sent ahead of
-- routine traffic: the delivery worker claims due messages by priority
-- first (1 urgent, 0 routine), then as before. Per-referral order is
-- unchanged (a message never overtakes an earlier one for its referral).
ALTER TABLE outbox ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
CREATE INDEX outbox_due_by_priority ON outbox (priority DESC, next_attempt_at, seq)
    WHERE state = 'pending';
