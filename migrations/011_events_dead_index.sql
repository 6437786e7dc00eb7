-- The webhook worker reports how many events are dead (README: "Metrics") every
-- 15 s; without this the count would read the whole outbox, delivered events
-- of the retention period included.
CREATE INDEX IF NOT EXISTS events_dead ON events (seq) WHERE state = 'dead';
