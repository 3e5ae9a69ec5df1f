-- name: claim
-- Claim up to $3 of the most overdue jobs for worker $1 for $2 seconds (a lease), counting the attempt
-- now, so a worker that dies mid-fetch loses nothing: the lease runs out and another worker claims the
-- job. SKIP LOCKED lets any number of workers in any number of processes share the queue without
-- waiting on each other; several jobs per call when several workers are idle (one round trip for all).
-- Returns order_id, generation, attempts (including this one).
WITH due AS (
    SELECT order_id FROM bunsync.fetch_queue
    WHERE dead_at IS NULL
      AND next_attempt_at <= now()
      AND (claimed_until IS NULL OR claimed_until < now())
    ORDER BY next_attempt_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE bunsync.fetch_queue AS q
SET claimed_until = now() + make_interval(secs => $2),
    claimed_by = $1,
    attempts = q.attempts + 1
FROM due
WHERE q.order_id = due.order_id
RETURNING q.order_id, q.generation, q.attempts;

-- name: store
-- Store Get Order answers in one call: log each one's event, keep its personal data, complete its job
-- (migration 0012). Arrays, one element per answer: order ids $1, generations $2, streams $3, types $4,
-- sources $5, idempotency keys $6, payloads $7 (JSON text), personal data $8 (JSON text or NULL).
SELECT bunsync.store_observed($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                              $6::text[], $7::text[], $8::text[]);

-- name: retry_later
-- Order $1's fetch failed with $2 (an error text): release it until $3 (timestamptz).
UPDATE bunsync.fetch_queue
SET claimed_until = NULL, claimed_by = NULL, last_error = $2, next_attempt_at = $3
WHERE order_id = $1;

-- name: park_dead
-- Order $1's fetch will not succeed by retrying (reason $2): park it as dead until re-driven.
UPDATE bunsync.fetch_queue
SET claimed_until = NULL, claimed_by = NULL, last_error = $2, dead_at = now(), dead_reason = $2
WHERE order_id = $1;

-- name: redrive
-- Re-queue dead fetches: all when $1 is NULL, else those of the order ids in $1 (bigint[]).
-- Returns the order ids re-queued.
UPDATE bunsync.fetch_queue
SET dead_at = NULL, dead_reason = NULL, last_error = NULL, attempts = 0, next_attempt_at = now(),
    claimed_until = NULL, claimed_by = NULL
WHERE dead_at IS NOT NULL AND ($1::bigint[] IS NULL OR order_id = ANY ($1::bigint[]))
RETURNING order_id;

-- name: counts
-- Fetch queue depth: pending (not dead) and dead jobs.
SELECT count(*) FILTER (WHERE dead_at IS NULL) AS pending,
       count(*) FILTER (WHERE dead_at IS NOT NULL) AS dead
FROM bunsync.fetch_queue;

-- name: due_retries
-- Failed fetches (attempts > 0) whose backoff has expired and that no worker holds.
SELECT count(*) FROM bunsync.fetch_queue
WHERE dead_at IS NULL AND attempts > 0 AND next_attempt_at <= now()
  AND (claimed_until IS NULL OR claimed_until < now());

-- name: enqueue
-- Ask for a Get Order fetch of each order in $1 (bigint[]), as a new webhook does (see migration 0004).
SELECT bunsync.enqueue_fetches($1::bigint[]);
