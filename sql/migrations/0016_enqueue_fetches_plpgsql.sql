-- 0016: bunsync.enqueue_fetches (0004) in PL/pgSQL, same statement, same grants (issue 14).
--
-- Why: an SQL function that writes is never inlined, and PostgreSQL 15 parses and plans its body
-- again at every call (its plan lives for one call of the outer statement). The webhook append calls
-- it once per batch: measured on a 1,000,000-event log, appends of 27 webhooks on one connection,
-- four alternated pairs, the server's CPU per event was 119-129 us with the SQL function against
-- 104-110 us with this one, whose statement PL/pgSQL plans once per session and keeps.
-- CREATE OR REPLACE keeps the owner and the grants (0004: EXECUTE for bunsync_service only).
CREATE OR REPLACE FUNCTION bunsync.enqueue_fetches(order_ids bigint[]) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO bunsync.fetch_queue AS q (order_id)
    SELECT DISTINCT o FROM unnest(order_ids) AS o WHERE o IS NOT NULL ORDER BY o
    ON CONFLICT (order_id) DO UPDATE
        SET generation = q.generation + 1,
            next_attempt_at = CASE WHEN q.attempts = 0 OR q.dead_at IS NOT NULL
                                   THEN least(q.next_attempt_at, now()) ELSE q.next_attempt_at END,
            attempts = CASE WHEN q.dead_at IS NOT NULL THEN 0 ELSE q.attempts END,
            dead_at = NULL,
            dead_reason = NULL;
END $$;
