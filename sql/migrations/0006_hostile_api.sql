-- What the Bunjang API returns can never break bunsync (issue 9, sections 3 and 6).

-- Fields of API observations that the order_item_status projection judged implausible or unreadable
-- (a statusUpdatedAt in the far future or before 2000, a price out of bigint, a product that is not an
-- object, ...). Owned by that projection (rebuilt with it, so a rebuild reproduces it exactly): the
-- observation still counts for the item's status, only the field is left out of the view. The problem
-- text never quotes buyer data (times and field names only).
CREATE TABLE bunsync.item_anomalies (
    position      bigint      NOT NULL,
    order_item_id bigint      NOT NULL,
    field         text        NOT NULL,
    order_id      bigint      NOT NULL,
    problem       text        NOT NULL,
    recorded_at   timestamptz NOT NULL,
    PRIMARY KEY (position, order_item_id, field)
);
CREATE INDEX item_anomalies_recorded_at_idx ON bunsync.item_anomalies (recorded_at);

-- A pass carries its own deadline, so `bunsync status` (which knows no settings) can flag a pass
-- still unfinished past it: stuck, or its process died without recording the end.
ALTER TABLE bunsync.reconcile_passes ADD COLUMN deadline_at timestamptz;

-- This host's clock against Bunjang's (the Date header of its answers), one row per process that
-- talks to Bunjang, for `bunsync status`. Bunjang's tokens are valid 5 s after iat.
CREATE TABLE bunsync.clock_readings (
    reporter    text             PRIMARY KEY,
    skew_s      double precision NOT NULL,
    measured_at timestamptz      NOT NULL
);

GRANT SELECT, INSERT, UPDATE, DELETE ON bunsync.item_anomalies, bunsync.clock_readings TO bunsync_service;
