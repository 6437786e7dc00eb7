-- Secrets the service generates for itself, the same for every replica.
-- 'object-key': signs the owner and spec tags in object keys
-- (app/uploads/keys.py), so save-metadata can check who a key was issued to
-- without reading a presign record. 32 bytes from PostgreSQL's strong
-- random source (gen_random_uuid, built in since PostgreSQL 13; 244 random bits).
-- Replacing it invalidates the tags of keys issued but not yet saved; their
-- presign records still let their owners save them.

CREATE TABLE IF NOT EXISTS service_secrets (
    name TEXT PRIMARY KEY,
    secret BYTEA NOT NULL CHECK (length(secret) >= 32),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO service_secrets (name, secret)
VALUES ('object-key', uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()))
ON CONFLICT (name) DO NOTHING;
