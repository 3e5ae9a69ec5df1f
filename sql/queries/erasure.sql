-- name: erase
-- Erase order $1's personal data for reason $2 ('retention' | 'request'), leaving a tombstone. Returns
-- what was erased ("pointer: field, ..." texts; empty when nothing was held) or NULL when the order
-- had been forgotten before.
SELECT bunsync.erase_personal_data($1::bigint, $2::text);

-- name: known_orders
-- Which of the order ids $1 (bigint[]) the log has ever seen (any event in their stream).
SELECT o AS order_id
FROM unnest($1::bigint[]) AS o
WHERE EXISTS (SELECT 1 FROM bunsync.event_log AS e WHERE e.stream = 'order-' || o);

-- name: erased_before
-- The tombstones of the order ids $1 (bigint[]): when and why each was forgotten.
SELECT order_id, erased_at, reason FROM bunsync.erasures WHERE order_id = ANY ($1::bigint[]);

-- name: expired
-- Orders whose personal data is due for erasure: every item's newest API status (not a provisional
-- webhook one) is final (PURCHASE_CONFIRM, REFUNDED) and the last of them reached it more than $1
-- days ago (API statusUpdatedAt). Only orders that still hold personal data; at most $2 of them.
SELECT p.order_id
FROM bunsync.personal_data AS p
JOIN bunsync.order_item_status AS s ON s.order_id = p.order_id
GROUP BY p.order_id
HAVING bool_and(s.api_status IN ('PURCHASE_CONFIRM', 'REFUNDED'))
   AND max(s.api_updated_at) < now() - make_interval(days => $1::int)
ORDER BY p.order_id
LIMIT $2;

-- name: vacuum
-- Rewrite bunsync.personal_data so that no deleted row lingers in a heap page (a plain VACUUM leaves
-- the bytes of removed tuples in the pages' free space). Not in a transaction; the table is small.
VACUUM (FULL) bunsync.personal_data;

-- name: held
-- The personal data kept for order $1 (jsonb as text), or no row.
SELECT fields::text AS fields FROM bunsync.personal_data WHERE order_id = $1;

-- name: try_lock
-- Take the retention job's session advisory lock if free (one replica runs the daily pass; the lock
-- goes with the connection if the holder dies). True when taken.
SELECT pg_try_advisory_lock(hashtext('bunsync.pii_retention')) AS taken;

-- name: unlock
-- Release the retention job's advisory lock.
SELECT pg_advisory_unlock(hashtext('bunsync.pii_retention'));
