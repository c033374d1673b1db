-- A referrer's numbered events (`Subscription/{id}/$events`, `$status`),
-- read in event-number order from its own notifications (replays carry
-- their original's number and are left out): the rows this index holds.
CREATE INDEX outbox_events ON outbox (endpoint, event_number)
    WHERE kind = 'notification' AND replay_of IS NULL;
