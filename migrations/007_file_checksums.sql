-- The whole file's digests, base64 as x-amz-checksum-sha256 and Content-MD5 carry
-- them: declared at presign (checksumSHA256, contentMD5), checked by the storage
-- against the bytes (S3, R2, B2) or by save-metadata against the MD5 the blob
-- reports (Azure). NULL when none was declared, and for rows saved before this.

ALTER TABLE s3_files ADD COLUMN IF NOT EXISTS checksum_sha256 TEXT;
ALTER TABLE s3_files ADD COLUMN IF NOT EXISTS content_md5 TEXT;
ALTER TABLE r2_files ADD COLUMN IF NOT EXISTS checksum_sha256 TEXT;
ALTER TABLE r2_files ADD COLUMN IF NOT EXISTS content_md5 TEXT;
ALTER TABLE b2_files ADD COLUMN IF NOT EXISTS checksum_sha256 TEXT;
ALTER TABLE b2_files ADD COLUMN IF NOT EXISTS content_md5 TEXT;
ALTER TABLE azure_files ADD COLUMN IF NOT EXISTS checksum_sha256 TEXT;
ALTER TABLE azure_files ADD COLUMN IF NOT EXISTS content_md5 TEXT;
