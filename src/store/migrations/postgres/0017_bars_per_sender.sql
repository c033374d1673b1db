-- BaRS idempotency is per sender: a request id is unique for the referrer
-- that sent it, and another referrer's message with the same request id is
-- a different message (review finding 5).
ALTER TABLE bars_messages DROP CONSTRAINT bars_messages_pkey;
ALTER TABLE bars_messages ADD PRIMARY KEY (referrer_id, request_id);
