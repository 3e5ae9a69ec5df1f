-- name: order_events
-- Every event of order stream $1 ('order-<id>') in the projector's commit-safe order (tx_id, position):
-- event_log_stream finds the stream's rows, the database sorts them (spilling to disk for a huge
-- stream, never to the service's memory). The payload travels as text (decoded once, in Python, by the projections' own decoder); raw bodies stay in the
-- database: only their length is read (a webhook body that was not JSON).
SELECT e.position, e.tx_id::text AS tx_text, e.stream, e.type, e.payload::text AS payload, e.source,
       e.signed_at, e.received_at, e.recorded_at, e.idempotency_key, octet_length(e.raw) AS raw_bytes
FROM bunsync.event_log AS e
WHERE e.stream = $1
ORDER BY e.tx_id, e.position;

-- name: conflicts
-- How many deliveries of each idempotency key in $1 (text[]) came again with a different body
-- (walks webhook_conflicts_key).
SELECT c.idempotency_key, count(*) AS conflicts
FROM bunsync.webhook_conflicts AS c
WHERE c.idempotency_key = ANY ($1::text[])
GROUP BY c.idempotency_key;

-- name: fetch_job
-- The order's fetch job, if any ($1 order id; the primary key), with whether a worker holds it now.
SELECT q.order_id, q.enqueued_at, q.next_attempt_at, q.attempts, q.last_error, q.dead_at, q.dead_reason,
       q.claimed_until IS NOT NULL AND q.claimed_until > now() AS leased
FROM bunsync.fetch_queue AS q
WHERE q.order_id = $1;

-- name: passes_at
-- The reconcile pass running at each time in $1 (timestamptz[]: when List Orders observations of
-- the order were recorded): the newest pass started at or before it, if not finished before it.
-- One index probe per time (reconcile_passes_started_at_idx).
SELECT DISTINCT p.id, p.started_at, p.finished_at, p.range_start, p.range_end, p.orders_seen,
       p.differences, p.ok, p.error, p.pages
FROM unnest($1::timestamptz[]) AS t(at)
CROSS JOIN LATERAL (
    SELECT r.* FROM bunsync.reconcile_passes AS r
    WHERE r.started_at <= t.at
    ORDER BY r.started_at DESC
    LIMIT 1
) AS p
WHERE p.finished_at IS NULL OR p.finished_at >= t.at
ORDER BY p.started_at;

-- name: order_of_item
-- The order of item $1 (the order_item_status primary key), for search.
SELECT s.order_id FROM bunsync.order_item_status AS s WHERE s.order_item_id = $1;

-- name: order_of_event
-- The stream of the event with idempotency key $1 ('webhook:<eventId>'; the unique index), for search.
SELECT e.stream FROM bunsync.event_log AS e WHERE e.idempotency_key = $1;

-- name: order_seen
-- Whether the log has any event of stream $1 (one probe of event_log_stream).
SELECT EXISTS (SELECT 1 FROM bunsync.event_log AS e WHERE e.stream = $1);
