-- Every key the service hands out, recorded at presign time: who it was
-- issued to and what they said they would upload. Save-metadata checks the
-- caller against it; rows never saved are the abandoned uploads to sweep.
-- Kept apart from the guides' tables, which keep meaning "uploaded files".

CREATE TABLE IF NOT EXISTS pending_uploads (
    object_key TEXT PRIMARY KEY,
    provider TEXT NOT NULL CHECK (provider IN ('s3', 'r2', 'b2', 'azure')),
    user_id TEXT NOT NULL,
    file_name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    declared_size BIGINT CHECK (declared_size >= 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    saved_at TIMESTAMPTZ
);

-- The sweep's question: which unsaved uploads are older than X?
CREATE INDEX IF NOT EXISTS pending_uploads_unsaved_created_at
    ON pending_uploads (created_at)
    WHERE saved_at IS NULL;
