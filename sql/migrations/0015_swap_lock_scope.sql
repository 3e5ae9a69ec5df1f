-- 0015: a rebuild's swap locks only what it replaces: the projection's tables and the reporting views
-- bound to them, no longer every reporting view (issue 14).
--
-- Why: LOCK TABLE on a view also locks, in the same mode, every relation its query reads. Locking all
-- the reporting views in ACCESS EXCLUSIVE mode (0002) therefore locked bunsync.event_log too (through
-- reporting.webhook_events and reporting.sync_health), and the fetch queue, the checkpoints...: the
-- NOWAIT attempt failed whenever anyone held any lock on the log. A webhook being stored, or
-- autovacuum working through a freshly loaded log, made a rebuild retry its swap for 10 s and more
-- (measured: order_item_status 8 s -> 20 s, on the benchmark's log, behind autovacuum), and a swap
-- that did get the lock held off every webhook until it committed.
--
-- Now: the views that read one of the tables (directly, or through another reporting view) are locked,
-- with the tables, and returned; the rebuild re-creates exactly those (the others are not bound to the
-- swapped tables). The guarantee of 0002 stands: every lock the swap needs is taken at once, NOWAIT,
-- so it never waits while holding one (no deadlock with a reader that holds one view and wants
-- another). A view that joined a projection table with the log would lock the log again: none does.
CREATE FUNCTION bunsync.projection_swap_views(tables text[]) RETURNS TABLE (view_name text)
LANGUAGE sql STABLE AS $$
WITH RECURSIVE bound(oid) AS (
    SELECT c.oid
    FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname = 'bunsync' AND c.relkind = 'r' AND c.relname = ANY (tables)
    UNION
    -- A view whose rewrite rule reads a bound relation (a table above, or a view found before).
    SELECT r.ev_class
    FROM bound AS b
    JOIN pg_depend AS d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = b.oid
                       AND d.classid = 'pg_rewrite'::regclass
    JOIN pg_rewrite AS r ON r.oid = d.objid
    WHERE r.ev_class <> b.oid
)
SELECT c.relname::text
FROM bound AS b
JOIN pg_class AS c ON c.oid = b.oid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = 'reporting' AND c.relkind = 'v'
ORDER BY 1
$$;

-- Replaces 0002's: takes, NOWAIT, the tables and the views bound to them; returns the views' names.
DROP FUNCTION bunsync.projection_swap_lock(text[]);
CREATE FUNCTION bunsync.projection_swap_lock(tables text[]) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    views text[] := ARRAY(SELECT v.view_name FROM bunsync.projection_swap_views(tables) AS v);
    targets text;
BEGIN
    SELECT string_agg(format('%I.%I', n.nspname, c.relname), ', ' ORDER BY c.oid)
      INTO targets
      FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
     WHERE (n.nspname = 'reporting' AND c.relkind = 'v' AND c.relname = ANY (views))
        OR (n.nspname = 'bunsync' AND c.relkind = 'r' AND c.relname = ANY (tables));
    IF targets IS NOT NULL THEN  -- a projection without tables of its own (the change feed) has none
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE NOWAIT', targets);
    END IF;
    RETURN views;
END $$;

REVOKE ALL ON FUNCTION bunsync.projection_swap_views(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION bunsync.projection_swap_lock(text[]) FROM PUBLIC;
