-- name: load
-- The history rows of the (item, status) pairs $1 (bigint[]), $2 (text[]) (pairs distinct). Only the
-- rows of a status a batch observes for an item can change (projections/rules.py, apply_history), so
-- only those are loaded: an item's other rows would be read and kept unchanged. The unique index on
-- (order_item_id, status, status_updated_at) serves the lookup. Unqualified table: the engine's
-- search_path picks the live table or the one a rebuild is filling.
SELECT h.order_item_id, h.order_id, h.status, h.status_updated_at, h.source, h.signed_at, h.position,
       h.recorded_at
FROM order_item_history AS h
JOIN unnest($1::bigint[], $2::text[]) AS k(order_item_id, status)
  ON h.order_item_id = k.order_item_id AND h.status = k.status;

-- name: delete
-- Remove history rows by key: item ids $1, statuses $2, status_updated_at $3 (NULL for webhook rows).
DELETE FROM order_item_history AS h
USING unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS d(order_item_id, status, status_updated_at)
WHERE h.order_item_id = d.order_item_id
  AND h.status = d.status
  AND h.status_updated_at IS NOT DISTINCT FROM d.status_updated_at;

-- name: insert
-- Add history rows, one array per column: $1 order_item_id, $2 order_id, $3 status,
-- $4 status_updated_at, $5 source, $6 signed_at, $7 position, $8 recorded_at.
INSERT INTO order_item_history
    (order_item_id, order_id, status, status_updated_at, source, signed_at, position, recorded_at)
SELECT *
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::timestamptz[], $5::text[],
            $6::timestamptz[], $7::bigint[], $8::timestamptz[]);
