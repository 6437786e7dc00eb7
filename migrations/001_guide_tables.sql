-- The four tables exactly as the Neon guides create them, so a database
-- built by following a guide is already at this version.

CREATE TABLE IF NOT EXISTS s3_files (
    id SERIAL PRIMARY KEY,
    object_key TEXT NOT NULL UNIQUE, -- Key (path/filename) in S3
    file_url TEXT NOT NULL,          -- Publicly accessible URL (if object is public)
    user_id TEXT NOT NULL,           -- User associated with the file
    upload_timestamp TIMESTAMPTZ DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS r2_files (
    id SERIAL PRIMARY KEY,
    object_key TEXT NOT NULL UNIQUE, -- Key (path/filename) in R2
    file_url TEXT NOT NULL,          -- Publicly accessible URL
    user_id TEXT NOT NULL,           -- User associated with the file
    upload_timestamp TIMESTAMPTZ DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS b2_files (
    id SERIAL PRIMARY KEY,
    object_key TEXT NOT NULL UNIQUE, -- Key (path/filename) in B2
    file_url TEXT,                   -- Base public URL
    user_id TEXT NOT NULL,           -- User associated with the file
    upload_timestamp TIMESTAMPTZ DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS azure_files (
    id SERIAL PRIMARY KEY,
    blob_name TEXT NOT NULL UNIQUE,  -- Name (path/filename) in Azure Blob Storage container
    file_url TEXT NOT NULL,          -- Publicly accessible URL (base URL, SAS might be needed for access)
    user_id TEXT NOT NULL,           -- User associated with the file
    upload_timestamp TIMESTAMPTZ DEFAULT NOW()
);
