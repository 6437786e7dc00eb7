-- Optional (DB_ROW_LEVEL_SECURITY=on): rows are visible only to the user the
-- transaction names with set_config('app.user_id', ..., true), so even a bug
-- in a query cannot return or touch another user's rows. Table owners and
-- superusers bypass RLS: the service must connect as a role that owns nothing
-- (see README, "Row-level security").

ALTER TABLE s3_files ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS s3_files_owner ON s3_files;
CREATE POLICY s3_files_owner ON s3_files
    USING (user_id = current_setting('app.user_id', true))
    WITH CHECK (user_id = current_setting('app.user_id', true));

ALTER TABLE r2_files ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS r2_files_owner ON r2_files;
CREATE POLICY r2_files_owner ON r2_files
    USING (user_id = current_setting('app.user_id', true))
    WITH CHECK (user_id = current_setting('app.user_id', true));

ALTER TABLE b2_files ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS b2_files_owner ON b2_files;
CREATE POLICY b2_files_owner ON b2_files
    USING (user_id = current_setting('app.user_id', true))
    WITH CHECK (user_id = current_setting('app.user_id', true));

ALTER TABLE azure_files ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS azure_files_owner ON azure_files;
CREATE POLICY azure_files_owner ON azure_files
    USING (user_id = current_setting('app.user_id', true))
    WITH CHECK (user_id = current_setting('app.user_id', true));

ALTER TABLE pending_uploads ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS pending_uploads_owner ON pending_uploads;
CREATE POLICY pending_uploads_owner ON pending_uploads
    USING (user_id = current_setting('app.user_id', true))
    WITH CHECK (user_id = current_setting('app.user_id', true));
