-- 0004: one definition of "ask for a Get Order fetch of these orders", used by the webhook append
-- (sql/queries/event_log.sql, append_batch) and by the reconciler (sql/queries/fetcher.sql, enqueue).
--
-- A fresh or dead job is due now (a dead one starts its attempts afresh); a job waiting out an API
-- failure keeps its backoff; every call bumps the generation, so a fetch already in flight does not
-- remove the job (it may have read the order before this change). Order ids are de-duplicated (ON
-- CONFLICT DO UPDATE may touch a row only once per statement) and sorted, so concurrent callers lock
-- rows in the same order and cannot deadlock.
CREATE FUNCTION bunsync.enqueue_fetches(order_ids bigint[]) RETURNS void
LANGUAGE sql VOLATILE AS $$
    INSERT INTO bunsync.fetch_queue AS q (order_id)
    SELECT DISTINCT o FROM unnest(order_ids) AS o WHERE o IS NOT NULL ORDER BY o
    ON CONFLICT (order_id) DO UPDATE
        SET generation = q.generation + 1,
            next_attempt_at = CASE WHEN q.attempts = 0 OR q.dead_at IS NOT NULL
                                   THEN least(q.next_attempt_at, now()) ELSE q.next_attempt_at END,
            attempts = CASE WHEN q.dead_at IS NOT NULL THEN 0 ELSE q.attempts END,
            dead_at = NULL,
            dead_reason = NULL;
$$;

REVOKE ALL ON FUNCTION bunsync.enqueue_fetches(bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bunsync.enqueue_fetches(bigint[]) TO bunsync_service;
