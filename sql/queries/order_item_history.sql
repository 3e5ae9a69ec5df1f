-- name: load
-- The history rows of the (item, status) pairs $1 (bigint[]), $2 (text[]) (pairs distinct). Only the
-- rows of a status a batch observes for an item can change (projections/rules.py, apply_history), so
-- only those are loaded: an item's other rows would be read and kept unchanged. The unique index on
-- (order_item_id, status, status_updated_at) serves the lookup, one probe per pair (LATERAL ... OFFSET
-- 0: a nested loop whatever the statistics say; see order_item_status.sql's load for why). Unqualified
-- table: the engine's search_path picks the live table or the one a rebuild is filling.
SELECT h.order_item_id, h.order_id, h.status, h.status_updated_at, h.source, h.signed_at, h.position,
       h.recorded_at
FROM unnest($1::bigint[], $2::text[]) AS k(order_item_id, status)
CROSS JOIN LATERAL (
    SELECT * FROM order_item_history AS t
    WHERE t.order_item_id = k.order_item_id AND t.status = k.status
    OFFSET 0
) AS h;

-- name: delete
-- Remove history rows by key: item ids $1, statuses $2, status_updated_at $3 (NULL for webhook rows).
-- Each key is found by an index probe and its row deleted by its ctid (a nested loop whatever the
-- statistics say, as in load; a join of the keys with the table was planned as a sequential scan
-- while the table was young, 3.7 ms a batch in bench_latency). Only this projection's writer (it
-- holds lock_writer) changes these rows, so a ctid found here is the row deleted.
DELETE FROM order_item_history AS h
USING (
    SELECT f.ctid AS found
    FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS d(order_item_id, status, status_updated_at)
    CROSS JOIN LATERAL (
        SELECT t.ctid FROM order_item_history AS t
        WHERE t.order_item_id = d.order_item_id
          AND t.status = d.status
          AND t.status_updated_at IS NOT DISTINCT FROM d.status_updated_at
        OFFSET 0
    ) AS f
) AS r
WHERE h.ctid = r.found;

-- name: insert
-- Add history rows, one array per column: $1 order_item_id, $2 order_id, $3 status,
-- $4 status_updated_at, $5 source, $6 signed_at, $7 position, $8 recorded_at.
INSERT INTO order_item_history
    (order_item_id, order_id, status, status_updated_at, source, signed_at, position, recorded_at)
SELECT *
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::timestamptz[], $5::text[],
            $6::timestamptz[], $7::bigint[], $8::timestamptz[]);
