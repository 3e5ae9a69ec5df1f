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

-- name: bulk_build
-- The bulk phase of order_item_history (projections/bulk.py), set-based: the history rows of every
-- item observed by the events below transaction id $1 (xid8 as text; the caller's snapshot xmin, so
-- all of them have committed). The contract of order_item_status.sql's bulk_build (a SELECT run
-- read-only as a COPY TO STDOUT; each row: folded, positions, then the table's columns) and its
-- reading of the log, pg_temp.bunsync_observations (order_item_status.sql, bulk_functions), shared.
-- One row per history row; an item left to Python ("folded") has instead one row per observation,
-- with its position (item NULL: an event not read, "bad"), and no history row here.
--
-- The rule. projections/rules.py (apply_history) only ever changes an item's rows of the status it
-- observes, so each (item, status) is a set of its own, and its rows do not depend on the order the
-- fold reads the observations in (checked case by case against the rule):
-- - API rows: one per distinct statusUpdatedAt (NULL is a key of its own), from its lowest-position
--   observation (a later sighting keeps the first; an earlier one, read later, replaces it).
-- - The webhook row (key (status, NULL), signed_at t): call a signed webhook "early" when its t is
--   before every API time of its status and no API observation of it lacks a time. No API
--   observation ever skips or removes an early webhook; any other is skipped (read after) or removed
--   (read before) by the earliest-time or untimed API observation. So: all early (or no API
--   observation) -> the row is the lowest-position webhook; none early -> no row; some early and some
--   not (a webhook signed before the API time of its status: clock skew, or the status seen twice)
--   -> the row depends on the order (an early one may be skipped for another, then removed): the item
--   is left to Python.
-- - An unsigned webhook changes nothing: ignored.
-- So out-of-order commits and an item twice in one event (identical rows: one kept) need no fold
-- here, unlike order_item_status. Left to Python: bad events, unsure items (see
-- bunsync_observations), and the mixed case above.
-- Test: tests/integration/test_projection_bulk.py (random event sets: SQL == Python).
WITH kept AS (
    SELECT o.item, o.api, o.status, o.ts, o.position, o.recorded_at, o.order_id, o.source, o.unsure
    FROM pg_temp.bunsync_observations($1) AS o
    WHERE o.api OR o.ts IS NOT NULL OR o.item IS NULL
),
-- One sort (item, status, api, ts, position) serves both levels; s is the whole (item, status).
per_status AS (
    SELECT o.*,
           bool_or(o.api) OVER s AS has_api,
           bool_or(o.api AND o.ts IS NULL) OVER s AS api_untimed,
           min(o.ts) FILTER (WHERE o.api) OVER s AS api_first,
           min(o.ts) FILTER (WHERE NOT o.api) OVER s AS hook_first,
           max(o.ts) FILTER (WHERE NOT o.api) OVER s AS hook_last,
           min(o.position) FILTER (WHERE NOT o.api) OVER s AS hook_pos,
           -- The same key as the row before (API: same time, a higher position; webhook: the same
           -- event again): not a row of its own.
           coalesce(lag(o.api) OVER s = o.api AND lag(o.ts) OVER s IS NOT DISTINCT FROM o.ts
                    AND (o.api OR lag(o.position) OVER s = o.position), false) AS repeat
    FROM kept AS o
    WINDOW s AS (PARTITION BY o.item, o.status ORDER BY o.api, o.ts, o.position
                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
    OFFSET 0
),
judged AS (
    SELECT p.*,
           bool_or(p.item IS NULL OR p.unsure
                   OR coalesce(p.has_api AND NOT p.api_untimed
                               AND p.hook_first < p.api_first AND p.hook_last >= p.api_first, false))
               OVER (PARTITION BY p.item) AS folded
    FROM per_status AS p
    OFFSET 0
)
SELECT j.folded, CASE WHEN j.folded THEN ARRAY[j.position] END AS positions,
       j.item AS order_item_id, j.order_id, j.status,
       CASE WHEN j.api THEN j.ts END AS status_updated_at, j.source,
       CASE WHEN NOT j.api THEN j.ts END AS signed_at, j.position, j.recorded_at
FROM judged AS j
WHERE j.folded
   OR (NOT j.repeat AND j.api)
   -- The webhook row: every signed webhook early (or no API observation): the lowest-position one.
   OR (NOT j.repeat AND j.position = j.hook_pos
       AND (NOT j.has_api OR (NOT j.api_untimed AND j.hook_last < j.api_first)));
