-- name: fresh
-- Whether projection $1 is fresh (its live checkpoint at the start of the log, nothing read: the
-- engine has applied no event to its tables), and the log's newest position: an estimate of how far
-- behind it is (positions have gaps, so it may overstate). max(position) is one probe of the primary
-- key, not a count.
SELECT c.position = 0 AND c.events_read = 0 AS fresh,
       (SELECT coalesce(max(e.position), 0) FROM bunsync.event_log AS e) AS head
FROM bunsync.projection_checkpoints AS c
WHERE c.projection = $1;

-- name: fill_functions
-- Session-local (pg_temp) helpers of the far-behind fill (projections/fill.py), created by the
-- service role on its own connection: it may create temporary objects, not schemas, and the
-- rebuild's side schema and swap are the owner's (sql/migrations/0002_projections.sql).
--
-- bunsync_fill_begin(projection $1, tables $2): empty temporary copies of the projection's tables,
-- of projection_checkpoints (its row at the start of the log) and of parked_events; returns the
-- session's temporary schema, which the engine and the bulk phase then use as their search_path.
-- Temporary tables are not WAL-logged and vanish with the session: a fill that dies leaves nothing.
CREATE OR REPLACE FUNCTION pg_temp.bunsync_fill_begin(projection text, tables text[]) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY tables || ARRAY['projection_checkpoints', 'parked_events'] LOOP
        EXECUTE format('DROP TABLE IF EXISTS pg_temp.%I', t);
        EXECUTE format('CREATE TEMPORARY TABLE %I (LIKE bunsync.%I INCLUDING ALL)', t, t);
    END LOOP;
    INSERT INTO pg_temp.projection_checkpoints (projection) VALUES (projection);
    RETURN (SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema());
END $$;
-- bunsync_fill_move(projection $1, tables $2): in the caller's transaction (which holds the live
-- writer lock), copy the filled tables, parked events and checkpoint into the live ones, only if the
-- live projection is still fresh (checkpoint at the start, nothing read, its tables and parked events
-- empty): then the result is the same as the engine applying those events one batch at a time.
-- Returns whether it moved; false leaves the live tables as they were.
CREATE OR REPLACE FUNCTION pg_temp.bunsync_fill_move(projection text, tables text[]) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    taken boolean;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM bunsync.projection_checkpoints AS c
                   WHERE c.projection = bunsync_fill_move.projection
                     AND c.position = 0 AND c.events_read = 0)
       OR EXISTS (SELECT 1 FROM bunsync.parked_events AS p
                  WHERE p.projection = bunsync_fill_move.projection) THEN
        RETURN false;
    END IF;
    FOREACH t IN ARRAY tables LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM bunsync.%I)', t) INTO taken;
        IF taken THEN
            RETURN false;
        END IF;
    END LOOP;
    FOREACH t IN ARRAY tables LOOP
        EXECUTE format('INSERT INTO bunsync.%I SELECT * FROM pg_temp.%I', t, t);
    END LOOP;
    INSERT INTO bunsync.parked_events SELECT * FROM pg_temp.parked_events;
    UPDATE bunsync.projection_checkpoints AS c
       SET tx_id = f.tx_id, position = f.position, events_read = f.events_read,
           updated_at = clock_timestamp()
      FROM pg_temp.projection_checkpoints AS f
     WHERE c.projection = f.projection AND f.projection = bunsync_fill_move.projection;
    RETURN true;
END $$;

-- name: fill_begin
-- Fresh temporary tables for projection $1 (its tables $2, text[]); returns the temporary schema.
SELECT pg_temp.bunsync_fill_begin($1::text, $2::text[]);

-- name: fill_move
-- Move the filled tables of projection $1 (tables $2, text[]) into the live ones if the live
-- projection is still fresh (caller's transaction, under the live writer lock); returns whether it did.
SELECT pg_temp.bunsync_fill_move($1::text, $2::text[]);
