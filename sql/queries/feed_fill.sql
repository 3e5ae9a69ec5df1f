-- name: feed_fresh
-- Whether the change feed is entirely fresh apart from its checkpoint (fill.sql fresh checks that):
-- no row in the feed, no head, no parked event of projection $1 (item_changes). Only such a feed is
-- filled set-based (projections/feed_fill.py): consumers hold cursors into an existing one, which is
-- never renumbered or touched. Each probe stops at the first row.
SELECT NOT EXISTS (SELECT 1 FROM bunsync.item_changes)
       AND NOT EXISTS (SELECT 1 FROM bunsync.item_change_heads)
       AND NOT EXISTS (SELECT 1 FROM bunsync.parked_events AS p WHERE p.projection = $1) AS fresh;

-- name: feed_functions
-- Session-local (pg_temp) tables and move of the feed's fill, created by the service role on the
-- filling connection (after fill.sql's fill_functions, whose bunsync_fill_move it calls).
--
-- bunsync_feed_rows: the lines of feed_build (below) kept for the move: kind 'c' (a change, with its
-- fold key tx_id, position, ord) and 'h' (an item's head: order_item_id, status_updated_at, and the
-- emitted status in status). bunsync_feed_left: its lines 'l' (an observation of an item left to
-- Python: order_item_id, position, ord) and 'b' (an event the SQL did not read: position), same
-- columns. Temporary: not WAL-logged, gone with the session (a fill that dies leaves nothing).
DROP TABLE IF EXISTS pg_temp.bunsync_feed_rows;
DROP TABLE IF EXISTS pg_temp.bunsync_feed_left;
CREATE TEMPORARY TABLE bunsync_feed_rows (
    kind text NOT NULL, tx_id xid8, position bigint, ord bigint, order_id bigint, order_item_id bigint,
    status text, previous_status text, status_updated_at timestamptz, source text,
    recorded_at timestamptz
);
CREATE TEMPORARY TABLE bunsync_feed_left (LIKE pg_temp.bunsync_feed_rows);
-- bunsync_feed_move(projection): in the caller's transaction (holding the live writer lock of the
-- projection and the feed writer lock, lock_feed, in that order like a batch), if the feed is still
-- entirely fresh (no row, no head; bunsync_fill_move checks the checkpoint and the parked events):
-- appends the changes numbered from 1 in fold order (tx_id, position, ord: the order the batches
-- would have appended them in), the heads, the parked events and the checkpoint. The insert fires
-- the feed's NOTIFY trigger (migration 0009), as any append does. Returns whether it moved.
CREATE OR REPLACE FUNCTION pg_temp.bunsync_feed_move(projection text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM bunsync.item_changes) OR EXISTS (SELECT 1 FROM bunsync.item_change_heads)
       OR NOT pg_temp.bunsync_fill_move(projection, ARRAY[]::text[]) THEN
        RETURN false;
    END IF;
    INSERT INTO bunsync.item_changes
        (feed_position, order_id, order_item_id, status, previous_status, status_updated_at, source,
         position, recorded_at)
    SELECT row_number() OVER (ORDER BY r.tx_id, r.position, r.ord), r.order_id, r.order_item_id,
           r.status, r.previous_status, r.status_updated_at, r.source, r.position, r.recorded_at
    FROM pg_temp.bunsync_feed_rows AS r
    WHERE r.kind = 'c';
    INSERT INTO bunsync.item_change_heads (order_item_id, status_updated_at, emitted_status)
    SELECT r.order_item_id, r.status_updated_at, r.status
    FROM pg_temp.bunsync_feed_rows AS r
    WHERE r.kind = 'h';
    RETURN true;
END $$;

-- name: feed_build
-- The change feed and its heads, set-based, from the events below transaction id $1 (xid8 as text;
-- the caller's snapshot xmin): a SELECT run read-only as a COPY TO STDOUT (projections/feed_fill.py),
-- one line per change ('c'), per head ('h'), per observation of an item left to Python ('l') and per
-- event not read ('b'), in the column order of pg_temp.bunsync_feed_rows. It reads the log through
-- pg_temp.bunsync_observations (bulk_functions in order_item_status.sql), like the bulk phases, without
-- the webhooks (item_changes does not handle them, so does not even park an unreadable one).
--
-- The rule. projections/item_changes.py (advance), folded in commit-safe order (tx_id, position, the
-- item's index in the event's array), is a function of each item's sequence of API observations with
-- a time t (webhooks and observations without a time change nothing). Call an observation a *record*
-- when its t is strictly later than every earlier one's: advance moves the head exactly at records
-- (any other has t <= the head's time), and after a record the head's emitted status is that record's
-- status (emitted: its own; not emitted: equal to it). So a record is emitted iff its status differs
-- from the previous record's (the first always is), with that status as previous_status; and the head
-- is (the last record's t, its status): the max t, and the status of the first observation reaching it.
-- Left to Python: items with an observation the SQL does not vouch for ("unsure"), whose time Python
-- may read otherwise; and the events not read. Test: tests/integration/test_feed_fill.py.
WITH o AS (
    SELECT b.item, b.status, b.ts, b.position, b.tx_id, b.ord, b.order_id, b.source, b.recorded_at,
           b.unsure
    FROM pg_temp.bunsync_observations($1, false) AS b
),
-- One sort (item, tx_id, position, ord) serves both windows: before, the latest time of the earlier
-- observations; folded, whether any of the item's observations is unsure.
ranked AS (
    SELECT o.*,
           max(o.ts) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before,
           bool_or(o.unsure) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS folded
    FROM o
    WHERE o.item IS NOT NULL
    WINDOW w AS (PARTITION BY o.item ORDER BY o.tx_id, o.position, o.ord)
),
records AS (
    SELECT r.*,
           lag(r.status) OVER w AS previous_status,
           lead(r.position) OVER w IS NULL AS newest
    FROM ranked AS r
    WHERE NOT r.folded AND r.ts IS NOT NULL AND (r.before IS NULL OR r.ts > r.before)
    WINDOW w AS (PARTITION BY r.item ORDER BY r.tx_id, r.position, r.ord)
)
SELECT 'c' AS kind, r.tx_id, r.position, r.ord, r.order_id, r.item, r.status, r.previous_status, r.ts,
       r.source, r.recorded_at
FROM records AS r
WHERE r.previous_status IS DISTINCT FROM r.status
UNION ALL
SELECT 'h', NULL, NULL, NULL, NULL, r.item, r.status, NULL, r.ts, NULL, NULL
FROM records AS r
WHERE r.newest
UNION ALL
SELECT 'l', NULL, r.position, r.ord, NULL, r.item, NULL, NULL, NULL, NULL, NULL
FROM ranked AS r
WHERE r.folded
UNION ALL
SELECT 'b', NULL, o.position, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM o
WHERE o.item IS NULL;

-- name: left_events
-- The positions of the events feed_build left to Python, in commit-safe order (tx_id, position): the
-- order the fold reads them in.
SELECT e.position
FROM bunsync.event_log AS e
WHERE e.position IN (SELECT l.position FROM pg_temp.bunsync_feed_left AS l)
ORDER BY e.tx_id, e.position;

-- name: left_at
-- feed_build's left lines at positions $1 (bigint[]): kind, position, order_item_id, ord ('l': one
-- per observation of an item left to Python, by its index in the event; 'b': an event not read).
SELECT l.kind, l.position, l.order_item_id, l.ord
FROM pg_temp.bunsync_feed_left AS l
WHERE l.position = ANY ($1::bigint[])
ORDER BY l.position, l.order_item_id, l.ord;

-- name: add_rows
-- Add the changes and heads folded in Python to pg_temp.bunsync_feed_rows: $1 kind, $2 tx_id (text),
-- $3 position, $4 ord, $5 order_id, $6 order_item_id, $7 status, $8 previous_status,
-- $9 status_updated_at, $10 source, $11 recorded_at (arrays, one entry per row).
INSERT INTO pg_temp.bunsync_feed_rows
SELECT r.kind, r.tx_id::xid8, r.position, r.ord, r.order_id, r.order_item_id, r.status,
       r.previous_status, r.status_updated_at, r.source, r.recorded_at
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[],
            $8::text[], $9::timestamptz[], $10::text[], $11::timestamptz[])
     AS r(kind, tx_id, position, ord, order_id, order_item_id, status, previous_status,
          status_updated_at, source, recorded_at);

-- name: feed_move
-- Move the filled feed of projection $1 (item_changes) live if still entirely fresh (caller's
-- transaction, under the live writer lock and lock_feed); returns whether it did.
SELECT pg_temp.bunsync_feed_move($1::text);
