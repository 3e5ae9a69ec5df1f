-- name: append_batch
-- Append a batch of events (arrays $1..$9, one element per event: stream, type, payload as JSON text,
-- raw body, source, signed_at, received_at, idempotency_key, order id to fetch or NULL) in ONE statement,
-- skipping any whose idempotency key is already in the log, and enqueue a Get Order fetch for the
-- order of every event that was really inserted and names one (bunsync.enqueue_fetches, migration
-- 0004). Returns the keys inserted, with their positions.
WITH input AS (
    SELECT *
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[],
                $6::timestamptz[], $7::timestamptz[], $8::text[], $9::bigint[])
         WITH ORDINALITY AS i(stream, type, payload, raw, source, signed_at, received_at, key, fetch_order, ord)
),
inserted AS (
    INSERT INTO bunsync.event_log
        (stream, type, payload, raw, source, signed_at, received_at, idempotency_key)
    SELECT stream, type, payload::jsonb, raw, source, signed_at, received_at, key
    FROM input
    ORDER BY ord
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING idempotency_key, position
),
-- One row (an aggregate always returns one), joined below so the statement runs the enqueue.
enqueued AS (
    SELECT bunsync.enqueue_fetches(array_agg(i.fetch_order)) AS done
    FROM input AS i JOIN inserted AS n ON n.idempotency_key = i.key
)
SELECT n.idempotency_key, n.position FROM inserted AS n CROSS JOIN enqueued;

-- name: compare_existing
-- For deliveries (keys $1, payloads $2 as JSON text or NULL, raw bodies $3) whose key is already in the
-- log: their 1-based index in the arrays and whether the stored event has the same content. JSON
-- payloads compare as JSON (key order and spacing do not matter); other bodies compare byte for byte.
SELECT i.ord,
       CASE WHEN i.payload IS NULL OR e.payload IS NULL THEN e.raw IS NOT DISTINCT FROM i.raw
            ELSE e.payload = i.payload::jsonb END AS same
FROM unnest($1::text[], $2::text[], $3::bytea[]) WITH ORDINALITY AS i(key, payload, raw, ord)
JOIN bunsync.event_log AS e ON e.idempotency_key = i.key;

-- name: record_conflicts
-- Keep deliveries whose eventId is already logged with different content: keys $1, payloads $2
-- (JSON text or NULL), raw bodies $3, signed_at $4, received_at $5.
INSERT INTO bunsync.webhook_conflicts (idempotency_key, payload, raw, signed_at, received_at)
SELECT key, payload::jsonb, raw, signed_at, received_at
FROM unnest($1::text[], $2::text[], $3::bytea[], $4::timestamptz[], $5::timestamptz[])
     AS i(key, payload, raw, signed_at, received_at);

-- name: read_after
-- Up to $3 events after the checkpoint ($1 tx id as text, $2 position), in commit-safe order.
-- Why this is safe: positions are taken from a sequence before commit, so position 11 can commit and
-- be read while position 10 is still in flight; a reader that remembered "after 11" would skip 10
-- forever. Instead we order by (writing transaction id, position) and read only rows written by
-- transactions older than the xmin of our snapshot. Every transaction below xmin has finished, and any
-- transaction that finishes later has an id >= xmin, so nothing can ever appear before our cursor.
-- The price: one long-open transaction holds readers back (latency, never loss).
-- (tx_id travels as text: asyncpg has no codec for xid8. The output column is named tx_text so that
-- ORDER BY tx_id below sorts by the xid8 column, not by its text, where '999' > '1000'.)
-- $4 (text[]): the types whose payload is read (NULL: every type). A projector reads every event, to
-- count it and move its checkpoint past it, but needs the payload only of the types it handles: the
-- others come without it (not rendered as text, not sent; e.g. every webhook, for the change feed).
SELECT position, tx_id::text AS tx_text, stream, type,
       CASE WHEN $4::text[] IS NULL OR type = ANY ($4::text[]) THEN payload::text END AS payload, source,
       signed_at, received_at, recorded_at
FROM bunsync.event_log
WHERE (tx_id, position) > ($1::text::xid8, $2::bigint)
  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY tx_id, position
LIMIT $3;
