-- Reconcile's copy of a bucket listing, each run's rows under a run id of its
-- own. It was a temporary table, which lives in one server session: through a
-- transaction pooler (Neon's pooled URL, PgBouncer in transaction mode) each
-- transaction may run on another server connection, where the table is absent
-- or is another client's. Unlogged: a copy, rebuilt by every run; rows of a
-- run that died are removed by the next run a day later.

CREATE UNLOGGED TABLE IF NOT EXISTS reconcile_listings (
    run_id UUID NOT NULL,
    key TEXT NOT NULL,
    size BIGINT NOT NULL,
    last_modified TIMESTAMPTZ NOT NULL,
    listed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, key)
);
