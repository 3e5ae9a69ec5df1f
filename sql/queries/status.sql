-- name: sync_health
-- From the one row of reporting.sync_health, what the other statements here do not detail (the log,
-- projection lag, webhooks), plus the log head (the newest position: one step down the primary key)
-- and the database's clock (checked_at) so the report says when it was true. No parameters.
SELECT h.events_total, h.last_event_at, h.max_projection_lag, h.unrecognized_events, h.webhook_conflicts,
       coalesce((SELECT e.position FROM bunsync.event_log AS e ORDER BY e.position DESC LIMIT 1), 0)
           AS log_head_position,
       now() AS checked_at
FROM reporting.sync_health AS h;

-- name: checkpoints
-- Each projection's checkpoint: name, log position, events read so far, and when it last moved.
-- No parameters. (The lag itself comes from projections.engine.lag, its one definition.)
SELECT c.projection, c.position, c.events_read, c.updated_at
FROM bunsync.projection_checkpoints AS c
ORDER BY c.projection;

-- name: fetch_queue
-- The fetch queue's shape: pending (not dead), due now (pending, backoff over, not leased),
-- retrying (pending after at least one failed attempt), dead. No parameters.
SELECT count(*) FILTER (WHERE q.dead_at IS NULL)                                 AS pending,
       count(*) FILTER (WHERE q.dead_at IS NULL AND q.next_attempt_at <= now()
                          AND (q.claimed_until IS NULL OR q.claimed_until < now())) AS due,
       count(*) FILTER (WHERE q.dead_at IS NULL AND q.last_error IS NOT NULL)     AS retrying,
       count(*) FILTER (WHERE q.dead_at IS NOT NULL)                             AS dead
FROM bunsync.fetch_queue AS q;

-- name: dead_fetches
-- The $1 most recently parked dead fetches: order_id, attempts, dead_at, reason (dead_reason, else
-- the last error).
SELECT q.order_id, q.attempts, q.dead_at, coalesce(q.dead_reason, q.last_error, '') AS reason
FROM bunsync.fetch_queue AS q
WHERE q.dead_at IS NOT NULL
ORDER BY q.dead_at DESC, q.order_id
LIMIT $1;

-- name: parked_counts
-- Unresolved parked events per projection (walks the partial index on unresolved). No parameters.
SELECT p.projection, count(*) AS parked
FROM bunsync.parked_events AS p
WHERE p.resolved_at IS NULL
GROUP BY p.projection
ORDER BY p.projection;

-- name: parked_newest
-- The $1 most recently parked unresolved events: projection, position, error, parked_at, attempts,
-- and whether a retry was requested.
SELECT p.projection, p.position, p.error, p.parked_at, p.attempts,
       p.retry_requested_at IS NOT NULL AS retry_requested
FROM bunsync.parked_events AS p
WHERE p.resolved_at IS NULL
ORDER BY p.parked_at DESC, p.projection, p.position
LIMIT $1;

-- name: reconcile_passes
-- The $1 latest reconcile passes, newest first (a running pass has finished_at and ok NULL).
SELECT r.id, r.started_at, r.finished_at, r.range_start, r.range_end, r.orders_seen, r.differences,
       r.ok, r.error, r.pages
FROM bunsync.reconcile_passes AS r
ORDER BY r.started_at DESC, r.id DESC
LIMIT $1;

-- name: last_reconcile
-- The newest finished reconcile pass, chosen as reporting.sync_health chooses last_reconcile_at and
-- last_reconcile_ok (by finished_at), so the report agrees with the view. No parameters.
SELECT r.id, r.started_at, r.finished_at, r.range_start, r.range_end, r.orders_seen, r.differences,
       r.ok, r.error, r.pages
FROM bunsync.reconcile_passes AS r
WHERE r.finished_at IS NOT NULL
ORDER BY r.finished_at DESC, r.id DESC
LIMIT 1;

-- name: item_anomaly_count
-- Fields of API observations read as absent (implausible or unreadable). No parameters.
SELECT count(*) FROM bunsync.item_anomalies;

-- name: item_anomalies_newest
-- The $1 newest item anomalies (by log position).
SELECT a.order_id, a.order_item_id, a.position, a.field, a.problem, a.recorded_at
FROM bunsync.item_anomalies AS a
ORDER BY a.position DESC, a.order_item_id, a.field
LIMIT $1;

-- name: order_anomaly_count
-- Order-level fields of Get Order answers read as absent (implausible or unreadable). No parameters.
SELECT count(*) FROM bunsync.order_anomalies;

-- name: order_anomalies_newest
-- The $1 newest order anomalies (by log position).
SELECT a.order_id, a.position, a.field, a.problem, a.recorded_at
FROM bunsync.order_anomalies AS a
ORDER BY a.position DESC, a.field
LIMIT $1;

-- name: overdue_passes
-- Reconcile passes unfinished past their own deadline (stuck, or their process died). No parameters.
-- Few rows match (open passes are recent, or dead and rare): a plain filter is enough.
SELECT r.id, r.started_at, r.deadline_at
FROM bunsync.reconcile_passes AS r
WHERE r.finished_at IS NULL AND r.deadline_at < now()
ORDER BY r.started_at DESC
LIMIT 5;

-- name: clock_reading
-- The newest clock reading taken within the last $1 seconds (none: nothing to judge).
SELECT c.reporter, c.skew_s, c.measured_at
FROM bunsync.clock_readings AS c
WHERE c.measured_at > now() - make_interval(secs => $1)
ORDER BY c.measured_at DESC
LIMIT 1;
