-- 0007: buyer personal data, kept out of the log so that it can be erased.
--
-- The fetcher splits each Get Order answer (app/privacy/personal_data.py): the log gets the order facts with
-- every personal value replaced by a marker; the personal values go to bunsync.personal_data, one
-- row per order (the newest observation's), which erasure deletes. bunsync.erasures is the tombstone:
-- a forgotten order stays forgotten (bunsync.keep_personal_data refuses to store anything for it).

CREATE TABLE bunsync.personal_data (
    order_id    bigint      PRIMARY KEY,
    -- JSON Pointer of each personal value in the Get Order answer -> the value as received, e.g.
    -- {"/data/delivery/address": {"name": ..., "phone": ...}, "/data/returns/0/address": {...}}
    fields      jsonb       NOT NULL,
    position    bigint      NOT NULL,            -- the order.observed event these values came with
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- Erasure deletes rows and must then VACUUM (FULL) the table so no deleted value lingers in a heap
-- page; PostgreSQL 15 lets only the owner vacuum, and the scheduled retention job runs as the service
-- role. So the service role owns this one table (it may read and delete it anyway). bunsync_reporting
-- gets nothing on it: no grant, and the schema's default privileges give PUBLIC nothing.
-- A new owner needs CREATE on the schema (checked unless the migrating role is a superuser): granted
-- for this one statement, and taken back at once.
GRANT CREATE ON SCHEMA bunsync TO bunsync_service;
ALTER TABLE bunsync.personal_data OWNER TO bunsync_service;
REVOKE CREATE ON SCHEMA bunsync FROM bunsync_service;

CREATE TABLE bunsync.erasures (
    order_id  bigint      PRIMARY KEY,
    erased_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    reason    text        NOT NULL CHECK (reason IN ('retention', 'request')),
    -- what was erased, as JSON Pointers and field names only (never a value), for the operator
    erased    text[]      NOT NULL DEFAULT '{}'
);
GRANT SELECT, INSERT ON bunsync.erasures TO bunsync_service;

-- Keep the personal data of order $1 that came with log event $2, unless the order was forgotten or a
-- newer observation's data is already kept. The advisory lock serialises this with erasure of the same
-- order (bunsync.erase_personal_data takes it too): without it, a fetch whose snapshot predates a
-- concurrent erasure could insert after the erasure's DELETE and leave a forgotten order's address
-- behind. In a function each statement takes a fresh snapshot, so the NOT EXISTS below sees a
-- tombstone committed while we waited for the lock.
CREATE FUNCTION bunsync.keep_personal_data(order_id bigint, event_position bigint, fields jsonb)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    kept boolean;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('bunsync.personal_data', keep_personal_data.order_id));
    INSERT INTO bunsync.personal_data AS p (order_id, fields, position)
    SELECT keep_personal_data.order_id, keep_personal_data.fields, event_position
    WHERE NOT EXISTS (SELECT 1 FROM bunsync.erasures AS e WHERE e.order_id = keep_personal_data.order_id)
    ON CONFLICT ON CONSTRAINT personal_data_pkey DO UPDATE
        SET fields = excluded.fields, position = excluded.position, recorded_at = excluded.recorded_at
        WHERE p.position < excluded.position
    RETURNING true INTO kept;
    RETURN coalesce(kept, false);
END $$;
REVOKE ALL ON FUNCTION bunsync.keep_personal_data(bigint, bigint, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bunsync.keep_personal_data(bigint, bigint, jsonb) TO bunsync_service;

-- Erase the personal data of order $1 for reason $2: write the tombstone (the first erasure's time and
-- reason stay), delete the row. Returns what was erased as "pointer: field, field" texts (empty when
-- nothing was held), or NULL when the order had been forgotten before (nothing to do).
CREATE FUNCTION bunsync.erase_personal_data(order_id bigint, reason text)
RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    gone jsonb;
    what text[];
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('bunsync.personal_data', erase_personal_data.order_id));
    DELETE FROM bunsync.personal_data AS p WHERE p.order_id = erase_personal_data.order_id
    RETURNING p.fields INTO gone;
    SELECT coalesce(array_agg(f.key || ': ' || (
               SELECT coalesce(string_agg(k, ', ' ORDER BY k), jsonb_typeof(f.value))
               FROM jsonb_object_keys(CASE jsonb_typeof(f.value) WHEN 'object' THEN f.value
                                           ELSE '{}'::jsonb END) AS k) ORDER BY f.key), '{}')
      INTO what
      FROM jsonb_each(coalesce(gone, '{}'::jsonb)) AS f;
    INSERT INTO bunsync.erasures (order_id, reason, erased)
    VALUES (erase_personal_data.order_id, erase_personal_data.reason, what)
    ON CONFLICT ON CONSTRAINT erasures_pkey DO NOTHING;
    IF NOT FOUND AND gone IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN what;
END $$;
REVOKE ALL ON FUNCTION bunsync.erase_personal_data(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bunsync.erase_personal_data(bigint, text) TO bunsync_service;

-- The order projection shows that the buyer's address was erased (from the log's erasure events, so a
-- rebuild reproduces it).
ALTER TABLE bunsync.orders
    ADD COLUMN personal_data_erased_at timestamptz,
    ADD COLUMN personal_data_erasure_reason text;

-- The old projection table of delivery addresses: the orders projection no longer writes it (the log
-- no longer holds addresses), and `bunsync migrate --redact-log` moves what old log rows hold into
-- bunsync.personal_data.
DROP TABLE bunsync.order_addresses;
