-- name: read_after
-- Up to $2 feed rows after cursor $1, in cursor order.
--
-- Why this never skips a row: rows are inserted only under the feed writer lock, taken before their
-- positions are computed and held until commit (migration 0009), so transactions that write the feed
-- commit one after the other in position order. Any snapshot that shows position p therefore shows
-- every position below p: the rows a reader has not seen yet are all above the last one it saw.
-- And it never repeats one: rows are append-only (trigger) and positions are never reused or
-- renumbered (a rebuild does not touch this table). Read from the table, not the view, to serve /feed
-- and the forwarder with emitted_at as well.
SELECT feed_position, order_id, order_item_id, status, previous_status, status_updated_at, source,
       recorded_at, emitted_at
FROM bunsync.item_changes
WHERE feed_position > $1
ORDER BY feed_position
LIMIT $2;

-- name: head
-- The feed's last position and when it was emitted (0 and NULL when empty). The primary key's last
-- entry: one index probe.
SELECT coalesce(max(feed_position), 0) AS last_position,
       (SELECT emitted_at FROM bunsync.item_changes ORDER BY feed_position DESC LIMIT 1) AS last_emitted_at
FROM bunsync.item_changes;

-- name: forwarder_state
-- The forwarder's row, with its lag: changes after its cursor, and the age of the oldest of them.
SELECT f.delivered_through, f.state, f.url, f.holder, f.attempts, f.last_error, f.last_error_at,
       f.last_delivered_at, f.paused_url, f.updated_at,
       (SELECT count(*) FROM bunsync.item_changes AS c WHERE c.feed_position > f.delivered_through)
           AS lag_changes,
       (SELECT extract(epoch FROM clock_timestamp() - c.emitted_at)::float8
          FROM bunsync.item_changes AS c WHERE c.feed_position > f.delivered_through
         ORDER BY c.feed_position LIMIT 1) AS lag_seconds
FROM bunsync.feed_forwarder AS f;

-- name: try_forwarder_lock
-- Become the one forwarder across replicas: a session-level advisory lock on the forwarder's own
-- connection (when its process dies, PostgreSQL releases it and a standby takes over).
SELECT pg_try_advisory_lock(hashtext('bunsync.forwarder'), 0);

-- name: unlock_forwarder
-- Give the forwarder's lock up (clean shutdown).
SELECT pg_advisory_unlock(hashtext('bunsync.forwarder'), 0);

-- name: claim
-- The active forwarder ($1 holder, $2 url) announces itself.
UPDATE bunsync.feed_forwarder
SET holder = $1, url = $2, state = CASE WHEN state = 'paused' AND paused_url = $2 THEN 'paused' ELSE 'idle' END,
    paused_url = CASE WHEN paused_url = $2 THEN paused_url END, updated_at = clock_timestamp()
RETURNING delivered_through, state;

-- name: delivered
-- Change $1 was acknowledged (2xx): move the cursor to it. Never backwards. One round trip, with a
-- relaxed commit (see relaxed_commit: the setting is local to this statement's own transaction and
-- still in force when it commits).
WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))
UPDATE bunsync.feed_forwarder
SET delivered_through = greatest(delivered_through, $1), state = 'delivering', attempts = 0,
    last_delivered_at = clock_timestamp(), updated_at = clock_timestamp()
FROM relaxed;

-- name: failed
-- An attempt at the next change failed with error $1 (no personal data, no secret): count it.
UPDATE bunsync.feed_forwarder
SET state = 'retrying', attempts = attempts + 1, last_error = $1, last_error_at = clock_timestamp(),
    updated_at = clock_timestamp();

-- name: paused
-- The endpoint $1 answered 410 Gone (error $2): stop forwarding to it until the URL changes.
UPDATE bunsync.feed_forwarder
SET state = 'paused', paused_url = $1, last_error = $2, last_error_at = clock_timestamp(),
    updated_at = clock_timestamp();

-- name: idle
-- Caught up with the feed.
UPDATE bunsync.feed_forwarder
SET state = 'idle', updated_at = clock_timestamp()
WHERE state <> 'paused';

-- name: relaxed_commit
-- This transaction's commit does not wait for its WAL flush. Only for the forwarder's cursor: if the
-- database itself crashes, the last few cursor moves may be lost and those changes are sent again
-- (at least once, same webhook-id); a crash of bunsync loses nothing (the commit is visible at once).
-- It saves one fsync per delivered change, which otherwise bounds forwarding to the disk's rate.
SELECT set_config('synchronous_commit', 'off', true);
