-- name: lock_feed
-- Become the feed's only writer until this transaction ends (see migration 0009: it keeps the feed
-- commit-ordered). Its own statement, BEFORE the statements that read heads and allocate positions,
-- so that their snapshots (READ COMMITTED: one per statement) see every earlier writer's commit.
-- Qualified tables throughout this file: the feed is never rebuilt, a rebuild's search_path must not
-- point these statements at a build schema.
SELECT pg_advisory_xact_lock(bunsync.feed_lock_key());

-- name: load_heads
-- The heads of items $1 (bigint[]), read under lock_feed.
SELECT order_item_id, status_updated_at, emitted_status
FROM bunsync.item_change_heads
WHERE order_item_id = ANY($1::bigint[]);

-- name: save_heads
-- Upsert heads: $1 item ids, $2 status_updated_at, $3 emitted_status (arrays, one entry per item).
INSERT INTO bunsync.item_change_heads AS h (order_item_id, status_updated_at, emitted_status)
SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[])
ON CONFLICT (order_item_id) DO UPDATE
SET status_updated_at = excluded.status_updated_at, emitted_status = excluded.emitted_status;

-- name: append
-- Append changes in the given order, numbered after the feed's last position (under lock_feed, so no
-- other transaction can number rows concurrently): $1 order_id, $2 order_item_id, $3 status,
-- $4 previous_status, $5 status_updated_at, $6 source, $7 position, $8 recorded_at (arrays).
INSERT INTO bunsync.item_changes
    (feed_position, order_id, order_item_id, status, previous_status, status_updated_at, source,
     position, recorded_at)
SELECT (SELECT coalesce(max(feed_position), 0) FROM bunsync.item_changes) + c.n,
       c.order_id, c.order_item_id, c.status, c.previous_status, c.status_updated_at, c.source,
       c.position, c.recorded_at
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
            $7::bigint[], $8::timestamptz[])
     WITH ORDINALITY AS c(order_id, order_item_id, status, previous_status, status_updated_at, source,
                          position, recorded_at, n);
