-- name: webhook_minutes
-- Webhooks recorded per minute since $1 (timestamptz), by minute: received (recognised) and
-- unrecognised. Walks event_log_received_at_idx (only webhook deliveries have received_at).
SELECT date_trunc('minute', e.received_at) AS minute,
       count(*) FILTER (WHERE e.type <> 'webhook.unrecognized') AS received,
       count(*) FILTER (WHERE e.type = 'webhook.unrecognized') AS unrecognized
FROM bunsync.event_log AS e
WHERE e.received_at >= $1 AND e.received_at IS NOT NULL
GROUP BY 1
ORDER BY 1;

-- name: dead_page
-- One page of dead fetches, newest first: $1 rows after skipping $2 (fetch_queue_dead_idx).
SELECT q.order_id, q.attempts, q.dead_at, coalesce(q.dead_reason, q.last_error, '') AS reason
FROM bunsync.fetch_queue AS q
WHERE q.dead_at IS NOT NULL
ORDER BY q.dead_at DESC, q.order_id
LIMIT $1 OFFSET $2;

-- name: parked_page
-- One page of unresolved parked events, newest first: $1 rows after skipping $2
-- (parked_events_unresolved_parked_at_idx).
SELECT p.projection, p.position, p.error, p.parked_at, p.attempts,
       p.retry_requested_at IS NOT NULL AS retry_requested
FROM bunsync.parked_events AS p
WHERE p.resolved_at IS NULL
ORDER BY p.parked_at DESC, p.projection, p.position
LIMIT $1 OFFSET $2;

-- name: passes_page
-- One page of reconcile passes, newest first: $1 rows after skipping $2 (reconcile_passes_started_at_idx).
SELECT r.id, r.started_at, r.finished_at, r.range_start, r.range_end, r.orders_seen, r.differences,
       r.ok, r.error, r.pages
FROM bunsync.reconcile_passes AS r
ORDER BY r.started_at DESC, r.id DESC
LIMIT $1 OFFSET $2;

-- name: retry_parked_one
-- Ask for one parked event (projection $1, position $2) to be retried by the active projector;
-- returns how many were asked (0 or 1).
WITH r AS (
    UPDATE bunsync.parked_events SET retry_requested_at = clock_timestamp()
    WHERE projection = $1 AND position = $2 AND resolved_at IS NULL
    RETURNING 1
)
SELECT count(*) FROM r;

-- name: retry_parked_all
-- Ask for every unresolved parked event to be retried by the active projectors; returns how many.
WITH r AS (
    UPDATE bunsync.parked_events SET retry_requested_at = clock_timestamp()
    WHERE resolved_at IS NULL
    RETURNING 1
)
SELECT count(*) FROM r;
