-- name: use_schema
-- Point unqualified table names at schema $1 for the rest of this transaction only (is_local):
-- 'bunsync' for the live projection, 'bunsync_build_<name>' while a rebuild fills fresh tables.
SELECT set_config('search_path', $1::text, true);

-- name: ensure_checkpoint
-- Create projection $1's checkpoint at the start of the log if it has none yet.
INSERT INTO bunsync.projection_checkpoints (projection) VALUES ($1) ON CONFLICT DO NOTHING;

-- name: lock_writer
-- Become the only writer of projection $2's tables in schema $1 until this transaction ends.
-- Every batch takes it before reading its checkpoint, so two writers of one projection (a projector
-- that lost its advisory session lock a moment ago, a retry, or a rebuild's swap) are serialised and
-- never apply an event twice. An advisory lock, not SELECT ... FOR UPDATE: a row lock would give the
-- transaction an xid, and an open xid holds back every commit-safe reader (see read_after), even when
-- there is nothing to write.
SELECT pg_advisory_xact_lock(hashtext('bunsync.projection_writer'), hashtext($1::text || '.' || $2::text));

-- name: begin_batch
-- A batch's first statement (after BEGIN): use_schema and lock_writer in one round trip. Point
-- unqualified names at schema $1 for the rest of the transaction and become the only writer of
-- projection $2's tables there (see lock_writer). The search path applies from the next statement on;
-- nothing in this one is looked up by name.
SELECT set_config('search_path', $1::text, true),
       pg_advisory_xact_lock(hashtext('bunsync.projection_writer'), hashtext($1::text || '.' || $2::text));

-- name: checkpoint
-- Projection $1's checkpoint (read after lock_writer, so it is the last writer's). Unqualified: the
-- live checkpoint, or the rebuild's own one in the build schema.
SELECT tx_id::text AS tx_text, position, events_read
FROM projection_checkpoints
WHERE projection = $1;

-- name: save_checkpoint
-- Move projection $1's checkpoint to ($2 tx id as text, $3 position), having read $4 more events.
UPDATE projection_checkpoints
SET tx_id = $2::text::xid8, position = $3, events_read = events_read + $4, updated_at = clock_timestamp()
WHERE projection = $1;

-- name: try_lock
-- Try to become projection $1's active projector: a session-level advisory lock, held for as long
-- as this connection lives (if the process dies, PostgreSQL releases it and a standby takes over).
SELECT pg_try_advisory_lock(hashtext('bunsync.projector'), hashtext($1));

-- name: unlock
-- Give up projection $1's advisory lock taken by try_lock on this connection.
SELECT pg_advisory_unlock(hashtext('bunsync.projector'), hashtext($1));

-- name: try_rebuild_lock
-- Only one rebuild of projection $1 at a time (session-level advisory lock).
SELECT pg_try_advisory_lock(hashtext('bunsync.rebuild'), hashtext($1));

-- name: ping
-- Check that the connection still answers (the projector's lock connection; its loss means the lock
-- is gone).
SELECT 1;

-- name: park
-- Park event $2 of projection $1 with error $3: the projection goes on without it. Parking the same
-- event again (a failed retry) counts the attempt and keeps it unresolved.
INSERT INTO parked_events AS p (projection, position, error)
VALUES ($1, $2, $3)
ON CONFLICT (projection, position) DO UPDATE
SET error = excluded.error, attempts = p.attempts + 1, retried_at = clock_timestamp(),
    retry_requested_at = NULL, resolved_at = NULL;

-- name: request_retry
-- Ask for the unresolved parked events of projection $1 to be retried; returns how many.
WITH r AS (
    UPDATE bunsync.parked_events SET retry_requested_at = clock_timestamp()
    WHERE projection = $1 AND resolved_at IS NULL
    RETURNING 1
)
SELECT count(*) FROM r;

-- name: retry_requested
-- Positions of projection $1's parked events awaiting a retry, oldest first (read under lock_writer).
SELECT position FROM parked_events
WHERE projection = $1 AND resolved_at IS NULL AND retry_requested_at IS NOT NULL
ORDER BY position;

-- name: any_retry_requested
-- Whether projection $1 has parked events awaiting a retry (cheap: partial index on unresolved).
SELECT EXISTS (
    SELECT 1 FROM bunsync.parked_events
    WHERE projection = $1 AND resolved_at IS NULL AND retry_requested_at IS NOT NULL
);

-- name: resolve
-- Mark parked event $2 of projection $1 as applied by a retry.
UPDATE parked_events
SET resolved_at = clock_timestamp(), retried_at = clock_timestamp(), retry_requested_at = NULL
WHERE projection = $1 AND position = $2;

-- name: event_at
-- The logged event at position $1 (to retry a parked event), shaped like read_after's rows.
SELECT position, tx_id::text AS tx_text, stream, type, payload::text AS payload, source,
       signed_at, received_at, recorded_at
FROM bunsync.event_log
WHERE position = $1;

-- name: lag
-- Per projection: how many log events are after its checkpoint (its lag). Each count walks the
-- (tx_id, position) index from the checkpoint on, so it costs what the lag is, not the log's size.
SELECT c.projection,
       (SELECT count(*) FROM bunsync.event_log AS e
         WHERE (e.tx_id, e.position) > (c.tx_id, c.position)) AS lag
FROM bunsync.projection_checkpoints AS c
ORDER BY c.projection;

-- name: log_events
-- How many events the log holds (a rebuild's total, for its progress bar and ETA).
SELECT count(*) FROM bunsync.event_log;

-- name: build_indexes
-- The indexes of build table $2 in schema $1 (a rebuild's bunsync_build_<name> or a fill's temporary
-- schema; the caller owns the table), as pairs of statements: one dropping the index (or the primary
-- key or unique constraint it backs) and one re-creating it exactly, under its own name. The bulk
-- phase drops them before it streams its rows in and re-creates them after (projections/bulk.py):
-- one index build over the sorted rows instead of an index insert per row. Indexes a foreign key
-- relies on are left in place (build tables have none: CREATE TABLE ... LIKE copies no foreign key).
SELECT format('ALTER TABLE %I.%I DROP CONSTRAINT %I', $1::text, $2::text, c.conname) AS drop_ddl,
       format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', $1::text, $2::text, c.conname,
              pg_get_constraintdef(c.oid)) AS create_ddl
FROM pg_constraint AS c
WHERE c.conrelid = format('%I.%I', $1::text, $2::text)::regclass AND c.contype IN ('p', 'u', 'x')
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS f WHERE f.conindid = c.conindid AND f.contype = 'f')
UNION ALL
SELECT format('DROP INDEX %I.%I', $1::text, x.relname), pg_get_indexdef(i.indexrelid)
FROM pg_index AS i
JOIN pg_class AS x ON x.oid = i.indexrelid
WHERE i.indrelid = format('%I.%I', $1::text, $2::text)::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conindid = i.indexrelid);
