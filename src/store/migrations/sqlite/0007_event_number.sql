-- A notification's event number, allocated in the transaction that queues
-- it; the Subscriptions notification Bundle is built from it and the Task
-- (the payload) when it is sent. NULL for other messages.
ALTER TABLE outbox ADD COLUMN event_number INTEGER;
