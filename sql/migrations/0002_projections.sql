-- 0002: projection tables, projector bookkeeping (checkpoints, parked events), reconcile passes, and
-- the SQL helpers of the zero-downtime rebuild.
--
-- Projection tables are written only by the projector engine (projections/engine.py), which finds
-- them through search_path (live: schema bunsync; during a rebuild: schema bunsync_build_<name>), so
-- the same named queries write either the live tables or the ones being rebuilt.
-- Index names follow PostgreSQL's default naming, so the copies a rebuild makes with
-- CREATE TABLE ... (LIKE ... INCLUDING ALL) get the same names once swapped in.

-- Current status of every order item (projection order_item_status).
CREATE TABLE bunsync.order_item_status (
    order_item_id     bigint      PRIMARY KEY,
    order_id          bigint      NOT NULL,
    pid               bigint,
    product_name      text,
    price             bigint,
    -- What readers see: the current status, by the rule in projections/rules.py.
    status            text        NOT NULL,
    status_updated_at timestamptz,           -- the API's statusUpdatedAt; NULL while provisional/unknown
    source            text        NOT NULL,  -- webhook | get_order | list_orders
    last_position     bigint      NOT NULL,  -- newest log position that touched this item
    synced_at         timestamptz NOT NULL,  -- when bunsync recorded that event
    -- The rule's state: the newest API observation (by statusUpdatedAt, then position) ...
    api_status        text,
    api_source        text,
    api_updated_at    timestamptz,
    api_position      bigint,
    -- ... and the provisional webhook status shown over it, if any (its signature time t).
    webhook_status    text,
    webhook_signed_at timestamptz,
    webhook_position  bigint
);
CREATE INDEX order_item_status_order_id_idx ON bunsync.order_item_status (order_id);
CREATE INDEX order_item_status_status_idx ON bunsync.order_item_status (status);

-- Every observed status change of an item (projection order_item_history). An API-observed change is
-- (status, status_updated_at); a webhook-only change has status_updated_at NULL until the API reports
-- that status, which then replaces it (see projections/rules.py).
CREATE TABLE bunsync.order_item_history (
    order_item_id     bigint      NOT NULL,
    order_id          bigint      NOT NULL,
    status            text        NOT NULL,
    status_updated_at timestamptz,
    source            text        NOT NULL,
    signed_at         timestamptz,           -- webhook rows: the signature time t (their sort time)
    position          bigint      NOT NULL,
    recorded_at       timestamptz NOT NULL
);
CREATE UNIQUE INDEX order_item_history_order_item_id_status_status_updated_at_idx
    ON bunsync.order_item_history (order_item_id, status, status_updated_at) NULLS NOT DISTINCT;
CREATE INDEX order_item_history_order_id_idx ON bunsync.order_item_history (order_id);

-- Order-level facts from Get Order (projection orders); the newest observation (by position) wins.
CREATE TABLE bunsync.orders (
    order_id             bigint      PRIMARY KEY,
    total_price          bigint,
    total_product_price  bigint,
    delivery_price       bigint,
    order_done_at        timestamptz,
    approved_at          timestamptz,
    seller_id            bigint,
    seller_shop_name     text,
    invoice_no           text,
    invoice_company_code text,
    invoice_company_name text,
    ship_done_at         timestamptz,
    last_position        bigint      NOT NULL,
    synced_at            timestamptz NOT NULL
);

-- Buyer personal data, apart: no reporting view reads it, and bunsync_reporting has no grant on it.
CREATE TABLE bunsync.order_addresses (
    order_id      bigint      PRIMARY KEY,
    name          text,
    phone         text,
    address1      text,
    address2      text,
    zip_code      text,
    last_position bigint      NOT NULL
);

-- Each projection's place in the log (commit-safe: transaction id AND position), and how many log
-- events it has read so far (so events_total = events_read + lag is exact and cheap).
CREATE TABLE bunsync.projection_checkpoints (
    projection  text        PRIMARY KEY,
    tx_id       xid8        NOT NULL DEFAULT '0',
    position    bigint      NOT NULL DEFAULT 0,
    events_read bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
INSERT INTO bunsync.projection_checkpoints (projection)
VALUES ('order_item_status'), ('order_item_history'), ('orders');

-- Events a projection's handler could not apply: the projection went on without them. Retried on
-- request (bunsync CLI); resolved_at is set once a retry applied the event.
CREATE TABLE bunsync.parked_events (
    projection         text        NOT NULL,
    position           bigint      NOT NULL,
    error              text        NOT NULL,
    parked_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts           integer     NOT NULL DEFAULT 1,
    retry_requested_at timestamptz,
    retried_at         timestamptz,
    resolved_at        timestamptz,
    PRIMARY KEY (projection, position)
);
CREATE INDEX parked_events_unresolved_idx ON bunsync.parked_events (projection) WHERE resolved_at IS NULL;

-- One row per reconcile pass (filled by the reconciler; read by reporting.sync_health).
CREATE TABLE bunsync.reconcile_passes (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    range_start  timestamptz NOT NULL,
    range_end    timestamptz NOT NULL,
    orders_seen  integer     NOT NULL DEFAULT 0,
    differences  integer     NOT NULL DEFAULT 0,
    ok           boolean,
    error        text
);
CREATE INDEX reconcile_passes_started_at_idx ON bunsync.reconcile_passes (started_at);

-- reporting.sync_health counts unrecognised webhooks; a tiny partial index keeps that cheap on a
-- large log.
CREATE INDEX event_log_unrecognized_idx ON bunsync.event_log (position) WHERE type = 'webhook.unrecognized';

GRANT SELECT, INSERT, UPDATE, DELETE ON
    bunsync.order_item_status, bunsync.order_item_history, bunsync.orders, bunsync.order_addresses,
    bunsync.projection_checkpoints, bunsync.parked_events, bunsync.reconcile_passes
    TO bunsync_service;

-- Rebuild, step 1 (run by the owner): a fresh, empty copy of projection $1's tables $2 in schema
-- bunsync_build_<projection>, with its own checkpoint (at the start of the log) and parked events.
-- Drops what an interrupted earlier rebuild left there. Returns the schema's name.
CREATE FUNCTION bunsync.projection_build_begin(projection text, tables text[]) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    build text := 'bunsync_build_' || projection;
    t text;
BEGIN
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', build);
    EXECUTE format('CREATE SCHEMA %I', build);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO bunsync_service', build);
    FOREACH t IN ARRAY tables || ARRAY['projection_checkpoints', 'parked_events'] LOOP
        EXECUTE format('CREATE TABLE %I.%I (LIKE bunsync.%I INCLUDING ALL)', build, t, t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.%I TO bunsync_service', build, t);
    END LOOP;
    EXECUTE format('INSERT INTO %I.projection_checkpoints (projection) VALUES (%L)', build, projection);
    RETURN build;
END $$;

-- Rebuild, step 2 (in the swap transaction, after the final catch-up): move the live tables of
-- projection $1 ($2) out of schema bunsync and the rebuilt ones in, take over the rebuilt checkpoint
-- and parked events. The caller then re-creates the views (they bind to tables, not names) and calls
-- projection_build_finish in the same transaction.
CREATE FUNCTION bunsync.projection_build_swap(projection text, tables text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    build text := 'bunsync_build_' || projection;
    retired text := 'bunsync_retired_' || projection;
    t text;
BEGIN
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', retired);
    EXECUTE format('CREATE SCHEMA %I', retired);
    FOREACH t IN ARRAY tables LOOP
        EXECUTE format('ALTER TABLE bunsync.%I SET SCHEMA %I', t, retired);
        EXECUTE format('ALTER TABLE %I.%I SET SCHEMA bunsync', build, t);
    END LOOP;
    EXECUTE format(
        'UPDATE bunsync.projection_checkpoints AS c
            SET tx_id = b.tx_id, position = b.position, events_read = b.events_read,
                updated_at = clock_timestamp()
           FROM %I.projection_checkpoints AS b
          WHERE c.projection = b.projection AND b.projection = %L', build, projection);
    DELETE FROM bunsync.parked_events AS p WHERE p.projection = projection_build_swap.projection;
    EXECUTE format('INSERT INTO bunsync.parked_events SELECT * FROM %I.parked_events', build);
END $$;

-- Rebuild, before step 2 (same transaction): take every lock the swap needs, at once and without
-- waiting (NOWAIT raises lock_not_available): the reporting views (all are re-created) and projection
-- $1's live tables. A swap that waited while holding some of them could deadlock with a reader that
-- holds one view and wants another, and PostgreSQL might then abort the reader; this way the swap
-- never waits holding a lock, and the caller retries after a moment instead.
CREATE FUNCTION bunsync.projection_swap_lock(tables text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    targets text;
BEGIN
    SELECT string_agg(format('%I.%I', n.nspname, c.relname), ', ' ORDER BY c.oid)
      INTO targets
      FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
     WHERE (n.nspname = 'reporting' AND c.relkind = 'v')
        OR (n.nspname = 'bunsync' AND c.relkind = 'r' AND c.relname = ANY (tables));
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE NOWAIT', targets);
END $$;

-- Rebuild, step 3 (same transaction): drop the retired tables and the build schema.
CREATE FUNCTION bunsync.projection_build_finish(projection text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', 'bunsync_retired_' || projection);
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', 'bunsync_build_' || projection);
END $$;

-- The rebuild helpers are the owner's: the service role must not drop tables.
REVOKE ALL ON FUNCTION bunsync.projection_build_begin(text, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION bunsync.projection_build_swap(text, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION bunsync.projection_build_finish(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION bunsync.projection_swap_lock(text[]) FROM PUBLIC;
