-- The rest of a file's life: listing, deleting, and sweeping abandoned uploads.

-- GET /<provider>/files pages through one user's rows newest first by id
-- (keyset: WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT n), one
-- short index range scan per page however large the table grows.
CREATE INDEX IF NOT EXISTS s3_files_user_id_id ON s3_files (user_id, id);
CREATE INDEX IF NOT EXISTS r2_files_user_id_id ON r2_files (user_id, id);
CREATE INDEX IF NOT EXISTS b2_files_user_id_id ON b2_files (user_id, id);
CREATE INDEX IF NOT EXISTS azure_files_user_id_id ON azure_files (user_id, id);

-- Files their owners deleted, so deleting again answers 204 to the owner
-- while an id that was never theirs stays 404 (ids do not leak).
CREATE TABLE IF NOT EXISTS deleted_files (
    provider TEXT NOT NULL CHECK (provider IN ('s3', 'r2', 'b2', 'azure')),
    file_id INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    object_key TEXT NOT NULL,
    deleted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, file_id)
);

-- `flask storage sweep` claims an abandoned upload (sweep_claimed_at) before
-- deleting its object and marks it swept_at after. Save-metadata refuses a
-- claimed key, so an object is never deleted under a save that lands late.
ALTER TABLE pending_uploads
    ADD COLUMN IF NOT EXISTS sweep_claimed_at TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS swept_at TIMESTAMPTZ;
