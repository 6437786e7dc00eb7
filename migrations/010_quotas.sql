-- Per-user quotas (README: "Quotas"). user_quotas: an operator's overrides of
-- the QUOTA_* defaults (`flask quota set`); NULL keeps the default. user_usage:
-- each user's stored bytes and files, kept by the statements that insert and
-- delete file rows; started here from the rows already there.
CREATE TABLE IF NOT EXISTS user_quotas (
    user_id TEXT PRIMARY KEY,
    max_bytes BIGINT CHECK (max_bytes >= 0),
    max_files BIGINT CHECK (max_files >= 0),
    max_unsaved_bytes BIGINT CHECK (max_unsaved_bytes >= 0),
    max_unsaved_uploads BIGINT CHECK (max_unsaved_uploads >= 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS user_usage (
    user_id TEXT PRIMARY KEY,
    bytes BIGINT NOT NULL DEFAULT 0,
    files BIGINT NOT NULL DEFAULT 0
);

INSERT INTO user_usage (user_id, bytes, files)
SELECT user_id, sum(coalesce(size_bytes, 0)), count(*)
FROM (
    SELECT user_id, size_bytes FROM s3_files
    UNION ALL SELECT user_id, size_bytes FROM r2_files
    UNION ALL SELECT user_id, size_bytes FROM b2_files
    UNION ALL SELECT user_id, size_bytes FROM azure_files
) AS f
GROUP BY user_id
ON CONFLICT (user_id) DO NOTHING;

-- What a presign reserved while quotas are enforced: held while its upload is
-- neither saved nor claimed by a sweep (or a refused save).
ALTER TABLE pending_uploads ADD COLUMN IF NOT EXISTS reserved_bytes BIGINT;
CREATE INDEX IF NOT EXISTS pending_uploads_reserved
    ON pending_uploads (user_id)
    WHERE reserved_bytes IS NOT NULL AND saved_at IS NULL AND sweep_claimed_at IS NULL;
