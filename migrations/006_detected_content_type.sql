-- What the bytes of each saved file are, as save-metadata identified them from
-- the object's first 4 KiB (app/uploads/content.py); NULL when they could not
-- be named (plain text, an unknown binary) or for rows saved before this.

ALTER TABLE s3_files ADD COLUMN IF NOT EXISTS detected_content_type TEXT;
ALTER TABLE r2_files ADD COLUMN IF NOT EXISTS detected_content_type TEXT;
ALTER TABLE b2_files ADD COLUMN IF NOT EXISTS detected_content_type TEXT;
ALTER TABLE azure_files ADD COLUMN IF NOT EXISTS detected_content_type TEXT;
