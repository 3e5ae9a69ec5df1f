-- 0003: the reconciler's watermark: List Orders has been fully processed up to this time.
-- One row; a pass covers [watermark - BUNSYNC_RECONCILE_OVERLAP_S, now] and moves it only on success.
CREATE TABLE bunsync.reconcile_state (
    id          integer     PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    watermark   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
GRANT SELECT, INSERT, UPDATE ON bunsync.reconcile_state TO bunsync_service;
