-- `Subscription/{id}/$events` reads a referrer's notifications by event
-- number; only notifications have one.
CREATE INDEX outbox_events ON outbox (endpoint, event_number) WHERE event_number IS NOT NULL;
