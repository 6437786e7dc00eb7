-- Row-level security for the deletions table added by 005_file_lifecycle.

ALTER TABLE deleted_files ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS deleted_files_owner ON deleted_files;
CREATE POLICY deleted_files_owner ON deleted_files
    USING (user_id = current_setting('app.user_id', true))
    WITH CHECK (user_id = current_setting('app.user_id', true));
