-- name: lock_log
-- Hold off every writer of the log for this transaction (readers go on): no row written by an older
-- bunsync can slip in between the scan and the rewrite. Webhooks wait (Bunjang retries for a minute;
-- the reconciler catches up anything given up on).
LOCK TABLE bunsync.event_log IN EXCLUSIVE MODE;

-- name: staging
-- Where the redacted rows are staged (dropped at commit): position, order id, the order facts, the
-- raw bytes redacted likewise (NULL when the row had none), the personal data taken out.
CREATE TEMPORARY TABLE log_redaction (
    position bigint PRIMARY KEY,
    order_id bigint NOT NULL,
    payload  text   NOT NULL,               -- JSON text (COPY in binary: cast where used)
    raw      bytea,
    personal text   NOT NULL
) ON COMMIT DROP;

-- name: candidates
-- Get Order observations that may hold personal data (a cheap text pre-filter; Python decides).
SELECT position, stream, payload::text AS payload, raw
FROM bunsync.event_log
WHERE type = 'order.observed'
  AND (payload::text LIKE '%ddress"%' OR position('ddress"' IN encode(raw, 'escape')) > 0);

-- name: keep_newest
-- Move each order's newest staged personal data into bunsync.personal_data, unless the order was
-- forgotten or newer data is kept already.
INSERT INTO bunsync.personal_data AS p (order_id, fields, position)
SELECT DISTINCT ON (r.order_id) r.order_id, r.personal::jsonb, r.position
FROM log_redaction AS r
WHERE NOT EXISTS (SELECT 1 FROM bunsync.erasures AS e WHERE e.order_id = r.order_id)
ORDER BY r.order_id, r.position DESC
ON CONFLICT (order_id) DO UPDATE
    SET fields = excluded.fields, position = excluded.position
    WHERE p.position < excluded.position;

-- name: lift_append_only
-- THE documented exception to append-only (README, "Existing data"): only inside the redaction's
-- transaction, which re-arms the trigger before it commits (a failure rolls the ALTER back too), and
-- ALTER TABLE holds the log's ACCESS EXCLUSIVE lock until then, so no other session can act on the log
-- while the trigger is off.
ALTER TABLE bunsync.event_log DISABLE TRIGGER event_log_append_only;

-- name: rewrite
-- Replace the staged rows' payload (and raw bytes, if any) by their redacted form; nothing else.
UPDATE bunsync.event_log AS e
SET payload = r.payload::jsonb, raw = r.raw
FROM log_redaction AS r
WHERE e.position = r.position AND e.type = 'order.observed';

-- name: rearm_append_only
-- Put the append-only trigger back exactly as migration 0001 set it (ALWAYS: even replicas' apply).
ALTER TABLE bunsync.event_log ENABLE ALWAYS TRIGGER event_log_append_only;

-- name: vacuum_log
-- Rewrite the log so the old versions of the redacted rows are gone from its pages (not in a
-- transaction; takes an ACCESS EXCLUSIVE lock for as long as the copy takes).
VACUUM (FULL) bunsync.event_log;
