-- 0001: the append-only event log, the roles, and the reporting schema.
--
-- Everything bunsync knows is an event in bunsync.event_log. Nothing ever changes or removes a row:
-- the triggers below refuse UPDATE, DELETE and TRUNCATE for every caller (they fire ALWAYS, so not even
-- session_replication_role = replica skips them), and the service role is granted only SELECT/INSERT.

-- Schema bunsync itself is created by the migration runner's bootstrap (it holds schema_migrations).
CREATE SCHEMA reporting;

-- Roles are cluster-wide: another bunsync database on the same cluster may have created them already.
DO $$
BEGIN
    CREATE ROLE bunsync_service NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$
BEGIN
    CREATE ROLE bunsync_reporting NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
-- The service connects as the migrating user and then acts as bunsync_service (connection option
-- role=bunsync_service), so it needs membership.
GRANT bunsync_service TO CURRENT_USER;

CREATE TABLE bunsync.event_log (
    -- Global position, in allocation order. Allocation order is NOT commit order: see read_after.
    position        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The writing transaction: readers use it to read in commit-safe order (queries/event_log.sql).
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream          text        NOT NULL,            -- e.g. 'order-100'
    type            text        NOT NULL,            -- e.g. 'webhook.order_status_changed.v1'
    payload         jsonb,                           -- the event as JSON; NULL when the body was not JSON
    raw             bytea,                           -- the request body exactly as received (webhooks)
    source          text        NOT NULL,            -- 'webhook' | 'get_order' | 'list_orders'
    signed_at       timestamptz,                     -- the webhook signature's t
    received_at     timestamptz,                     -- when bunsync received it
    idempotency_key text        NOT NULL,            -- 'webhook:<eventId>', ...
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT event_log_idempotency_key_key UNIQUE (idempotency_key)
);

-- The commit-safe reader walks (tx_id, position).
CREATE INDEX event_log_tx_position ON bunsync.event_log (tx_id, position);
CREATE INDEX event_log_stream ON bunsync.event_log (stream, position);

CREATE FUNCTION bunsync.event_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'bunsync.event_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'The log is the source of truth; rebuild projections instead of editing events.';
END $$;

-- Statement-level, so even an UPDATE or DELETE that matches no row is refused.
CREATE TRIGGER event_log_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON bunsync.event_log
    FOR EACH STATEMENT EXECUTE FUNCTION bunsync.event_log_refuse_change();
ALTER TABLE bunsync.event_log ENABLE ALWAYS TRIGGER event_log_append_only;

-- Wake projectors. A notification only saves latency: readers also poll, so a lost one loses nothing.
-- Identical notifications in one transaction are folded into one by PostgreSQL.
CREATE FUNCTION bunsync.event_log_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bunsync_events', '');
    RETURN NULL;
END $$;

CREATE TRIGGER event_log_notify
    AFTER INSERT ON bunsync.event_log
    FOR EACH STATEMENT EXECUTE FUNCTION bunsync.event_log_notify();

-- The same eventId delivered again with a different body: kept here, never silently dropped.
CREATE TABLE bunsync.webhook_conflicts (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key   text        NOT NULL REFERENCES bunsync.event_log (idempotency_key),
    payload           jsonb,
    raw               bytea       NOT NULL,
    signed_at         timestamptz,
    received_at       timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX webhook_conflicts_key ON bunsync.webhook_conflicts (idempotency_key);

-- One row per order that needs a Get Order fetch. The fetch workers own the claim and retry columns.
CREATE TABLE bunsync.fetch_queue (
    order_id         bigint      PRIMARY KEY,
    enqueued_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- Bumped by every enqueue: a fetch that started before a newer webhook must not remove the job.
    generation       bigint      NOT NULL DEFAULT 1,
    attempts         integer     NOT NULL DEFAULT 0,
    claimed_until    timestamptz,
    claimed_by       text,
    last_error       text,
    dead_at          timestamptz,
    dead_reason      text
);
CREATE INDEX fetch_queue_due ON bunsync.fetch_queue (next_attempt_at) WHERE dead_at IS NULL;

-- Least privilege for the running service.
REVOKE ALL ON SCHEMA bunsync FROM PUBLIC;
REVOKE ALL ON SCHEMA reporting FROM PUBLIC;
GRANT USAGE ON SCHEMA bunsync TO bunsync_service;
GRANT USAGE ON SCHEMA reporting TO bunsync_service, bunsync_reporting;
GRANT SELECT, INSERT ON bunsync.event_log TO bunsync_service;
GRANT SELECT, INSERT ON bunsync.webhook_conflicts TO bunsync_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON bunsync.fetch_queue TO bunsync_service;
GRANT SELECT ON bunsync.schema_migrations TO bunsync_service;  -- /health/ready checks the version
