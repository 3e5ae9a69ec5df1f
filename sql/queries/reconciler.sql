-- name: lock
-- Take the reconciler's session advisory lock, waiting for it (bunsync reconcile). Released with
-- `unlock` or when the connection dies, so another replica can take over.
SELECT pg_advisory_lock(hashtext('bunsync.reconcile'));

-- name: try_lock
-- Take the reconciler's session advisory lock if free; true when taken (the scheduled job skips its
-- tick otherwise: another replica is reconciling).
SELECT pg_try_advisory_lock(hashtext('bunsync.reconcile')) AS taken;

-- name: unlock
-- Release the reconciler's advisory lock.
SELECT pg_advisory_unlock(hashtext('bunsync.reconcile'));

-- name: watermark
-- The reconciler's watermark, or no row before the first successful pass.
SELECT watermark FROM bunsync.reconcile_state WHERE id = 1;

-- name: set_watermark
-- Move the watermark to $1 (never backwards).
INSERT INTO bunsync.reconcile_state (id, watermark) VALUES (1, $1)
ON CONFLICT (id) DO UPDATE
    SET watermark = greatest(bunsync.reconcile_state.watermark, excluded.watermark),
        updated_at = clock_timestamp();

-- name: pass_started
-- Record a pass over [$1, $2] that is starting, to be finished within $3 seconds (its deadline, so
-- `bunsync status` can flag it if it is not); returns its id.
INSERT INTO bunsync.reconcile_passes (range_start, range_end, deadline_at)
VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))
RETURNING id;

-- name: pass_finished
-- Record the end of pass $1: orders seen $2, differences $3, ok $4, error $5 (NULL when ok), List
-- Orders pages read $6.
UPDATE bunsync.reconcile_passes
SET finished_at = clock_timestamp(), orders_seen = $2, differences = $3, ok = $4, error = $5, pages = $6
WHERE id = $1;

-- name: current_items
-- What reporting shows now for the items $1 (bigint[]): item id, status, status_updated_at.
-- A time Python cannot hold (after year 9999, only in a view projected before times were judged) is
-- read as absent, so it can never stop a pass; `bunsync rebuild` then corrects the view.
SELECT order_item_id, status,
       CASE WHEN status_updated_at < timestamptz '9999-01-01T00:00:00Z' THEN status_updated_at END
           AS status_updated_at
FROM bunsync.order_item_status
WHERE order_item_id = ANY ($1::bigint[]);
