-- The outbox of events for webhooks (WEBHOOK_URLS): each row is written in the
-- same statement, so the same transaction, as the change it reports (a file
-- saved or deleted, an upload refused at save or swept), and delivered by
-- `flask events deliver`. README: "Events".
CREATE TABLE IF NOT EXISTS events (
    -- Delivery order: per file (object_key), in the order the changes committed.
    seq BIGSERIAL PRIMARY KEY,
    id UUID NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    type TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    user_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    object_key TEXT NOT NULL,
    -- The row as the files table held it (file.*), or the upload's record (upload.*).
    data JSONB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The worker that took the event (a token of its own) holds it until then; a worker
    -- that died lets it go, and one whose hold ran out can no longer record an attempt.
    locked_by UUID,
    locked_until TIMESTAMPTZ,
    -- The receivers (WEBHOOK_URLS) that answered 2xx, by a digest of their URL (a URL
    -- may carry a token): a retry goes to the others only.
    delivered_to TEXT[] NOT NULL DEFAULT '{}',
    last_error TEXT,
    delivered_at TIMESTAMPTZ
);

CREATE INDEX IF NOT EXISTS events_due ON events (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS events_pending_by_file ON events (object_key, seq) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS events_delivered_at ON events (delivered_at) WHERE state = 'delivered';
