-- 0009: the change feed (issue 13): one row each time an item's confirmed (API) status moves forward,
-- numbered by feed_position, the cursor partners read with `feed_position > last ORDER BY feed_position`.
--
-- Why no reader ever skips a row (the cursor's promise), held here by the database:
--   * Rows are only appended (trigger below; the service role has no UPDATE or DELETE on the table),
--     so a position, once seen, never changes meaning and is never re-used.
--   * Every transaction that inserts rows first takes ONE transaction-level advisory lock (the feed
--     writer lock, bunsync.feed_lock_key()), in a statement of its own, and computes the new positions
--     as max(feed_position) + n in a later statement. The trigger feed_require_lock refuses an insert
--     by a transaction that does not hold it. A transaction-level lock is released only after the
--     commit is visible to every new snapshot, so writers commit one after the other in position
--     order: if a reader's snapshot shows position p, it shows every position below p too. A reader
--     that has read up to `last` can therefore only ever find new rows above `last`, never below.
--     (A sequence alone would not do: a value drawn in one transaction can commit after a larger one
--     drawn in another, and a reader that had already passed the larger one would skip it.)
--   * Positions are never reassigned by `bunsync rebuild`: this table is not one of the projection's
--     rebuilt tables; a rebuild replays the log through the same rule, which emits nothing at or below
--     an item's head (item_change_heads, also never rebuilt), and every event the live projector has
--     applied has already moved its item's head to at least that observation. See
--     projections/item_changes.py for the argument in full.
CREATE TABLE bunsync.item_changes (
    feed_position     bigint      PRIMARY KEY CHECK (feed_position > 0),
    order_id          bigint      NOT NULL,
    order_item_id     bigint      NOT NULL,
    status            text        NOT NULL,
    previous_status   text,                   -- the item's previous row's status (NULL for its first)
    status_updated_at timestamptz NOT NULL,   -- Bunjang's statusUpdatedAt: strictly increasing per item
    source            text        NOT NULL CHECK (source IN ('get_order', 'list_orders')),
    position          bigint      NOT NULL,   -- the event-log position of the observation
    recorded_at       timestamptz NOT NULL,   -- when bunsync recorded that observation in its log
    emitted_at        timestamptz NOT NULL DEFAULT clock_timestamp(),  -- when the row entered the feed
    -- One change is emitted once: a belt to the rule's braces (times only grow per item).
    UNIQUE (order_item_id, status_updated_at)
);
CREATE INDEX item_changes_order_id_idx ON bunsync.item_changes (order_id);

-- Per item, the newest confirmed observation the feed has taken into account: status and time of the
-- newest API statusUpdatedAt seen (it moves even when the status stays, so that a late, older
-- observation of another status is not emitted), and the last status emitted.
CREATE TABLE bunsync.item_change_heads (
    order_item_id     bigint      PRIMARY KEY,
    status_updated_at timestamptz NOT NULL,
    emitted_status    text        NOT NULL
);

CREATE FUNCTION bunsync.feed_lock_key() RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT 7301130013::bigint $$;

CREATE FUNCTION bunsync.feed_require_lock() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- A bigint advisory key shows in pg_locks as classid = high 32 bits, objid = low, objsubid = 1.
    IF NOT EXISTS (
        SELECT 1 FROM pg_locks
         WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted AND objsubid = 1
           AND classid = (bunsync.feed_lock_key() >> 32)::oid
           AND objid = (bunsync.feed_lock_key() & 4294967295)::oid
    ) THEN
        RAISE EXCEPTION 'bunsync.item_changes: insert without the feed writer lock'
            USING HINT = 'Take pg_advisory_xact_lock(bunsync.feed_lock_key()) first: it keeps the '
                         'feed commit-ordered (see migration 0009).';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER item_changes_require_lock
    BEFORE INSERT ON bunsync.item_changes
    FOR EACH STATEMENT EXECUTE FUNCTION bunsync.feed_require_lock();
ALTER TABLE bunsync.item_changes ENABLE ALWAYS TRIGGER item_changes_require_lock;

CREATE FUNCTION bunsync.item_changes_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'bunsync.item_changes is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Consumers hold cursors into the feed; a row once emitted stays as it is.';
END $$;

CREATE TRIGGER item_changes_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON bunsync.item_changes
    FOR EACH STATEMENT EXECUTE FUNCTION bunsync.item_changes_refuse_change();
ALTER TABLE bunsync.item_changes ENABLE ALWAYS TRIGGER item_changes_append_only;

-- Wake feed readers (GET /feed long polls, the forwarder) when rows commit. Only latency: they also
-- look again at the end of their wait.
CREATE FUNCTION bunsync.item_changes_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bunsync_feed', '');
    RETURN NULL;
END $$;

CREATE TRIGGER item_changes_notify
    AFTER INSERT ON bunsync.item_changes
    FOR EACH STATEMENT EXECUTE FUNCTION bunsync.item_changes_notify();

-- The forwarder's one row: its cursor (the last feed_position the partner's endpoint acknowledged
-- with a 2xx), its state and its last error, for /status, metrics and the console.
CREATE TABLE bunsync.feed_forwarder (
    id                boolean     PRIMARY KEY DEFAULT true CHECK (id),
    delivered_through bigint      NOT NULL DEFAULT 0,
    state             text        NOT NULL DEFAULT 'idle'
                      CHECK (state IN ('idle', 'delivering', 'retrying', 'paused')),
    url               text,                   -- the endpoint in use (no credentials are allowed in it)
    holder            text,                   -- host:pid of the active forwarder
    attempts          integer     NOT NULL DEFAULT 0,  -- failed attempts at the current change
    last_error        text,
    last_error_at     timestamptz,
    last_delivered_at timestamptz,
    paused_url        text,                   -- 410 Gone from this endpoint: paused until it changes
    updated_at        timestamptz NOT NULL DEFAULT clock_timestamp()
);
INSERT INTO bunsync.feed_forwarder DEFAULT VALUES;

GRANT SELECT, INSERT ON bunsync.item_changes TO bunsync_service;
GRANT SELECT, INSERT, UPDATE ON bunsync.item_change_heads TO bunsync_service;
GRANT SELECT, UPDATE ON bunsync.feed_forwarder TO bunsync_service;
GRANT EXECUTE ON FUNCTION bunsync.feed_lock_key() TO bunsync_service;

-- The feed projection starts at the beginning of the log: on an existing deployment its first pass
-- emits each item's confirmed history once, then follows the log.
INSERT INTO bunsync.projection_checkpoints (projection) VALUES ('item_changes') ON CONFLICT DO NOTHING;
