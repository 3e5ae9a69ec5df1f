-- 0012: store several Get Order answers in ONE call (one round trip, one statement, hence one atomic,
-- durable commit of its own): for each answer, append its order.observed event, keep its personal data
-- (bunsync.keep_personal_data, migration 0007), and complete its fetch job. The fetch workers used to
-- spend six round trips and a commit per answer on this (BEGIN, append, keep, complete, COMMIT, and the
-- pool's reset); now a group of answers shares one call and one fsync (issue 14).
--
-- Arrays, one element per answer: the order id, the job's generation when it was claimed, the event
-- (stream, type, source, idempotency key, payload as JSON text) and the personal data (JSON text, or
-- NULL when the answer held none: then keep_personal_data is not called at all).
--
-- Guarantees, as before: an answer is in the log before its job disappears (same statement); a job
-- whose generation moved on (a webhook re-enqueued it during the fetch) is made due again instead of
-- removed; a forgotten order's personal data is never kept. If any answer is refused (bad data), the
-- whole call fails and changes nothing: the caller retries answer by answer, so the others still land.
--
-- Lock order, so that concurrent callers cannot deadlock: the fetch jobs first, by order id (as
-- bunsync.enqueue_fetches locks them), then the personal-data advisory locks, by order id (as
-- bunsync.forget's erasures take them, one order at a time in sorted order).
CREATE FUNCTION bunsync.store_observed(
    order_ids bigint[], generations bigint[], streams text[], types text[], sources text[],
    keys text[], payloads text[], personal text[]
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    answer record;
BEGIN
    PERFORM 1 FROM bunsync.fetch_queue AS q
    WHERE q.order_id = ANY (store_observed.order_ids)
    ORDER BY q.order_id
    FOR UPDATE;

    FOR answer IN
        WITH input AS (
            SELECT *
            FROM unnest(store_observed.order_ids, streams, types, sources, keys, payloads, personal)
                 WITH ORDINALITY AS i(order_id, stream, type, source, key, payload, personal, ord)
        ),
        inserted AS (
            INSERT INTO bunsync.event_log (stream, type, payload, source, idempotency_key)
            SELECT i.stream, i.type, i.payload::jsonb, i.source, i.key
            FROM input AS i
            ORDER BY i.ord
            -- A key already logged (the same fetch stored twice) is skipped, as event_log.append does;
            -- its personal data is then not kept again either.
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING idempotency_key, position
        )
        SELECT i.order_id, n.position, i.personal
        FROM input AS i JOIN inserted AS n ON n.idempotency_key = i.key
        WHERE i.personal IS NOT NULL
        ORDER BY i.order_id, n.position
    LOOP
        PERFORM bunsync.keep_personal_data(answer.order_id, answer.position, answer.personal::jsonb);
    END LOOP;

    -- Complete each job: remove it, unless a webhook re-enqueued it meanwhile (its generation moved
    -- on), in which case make it due again, fresh (what sql/queries/fetcher.sql's complete did alone).
    WITH input AS (
        SELECT * FROM unnest(store_observed.order_ids, generations) AS i(order_id, generation)
    ),
    done AS (
        DELETE FROM bunsync.fetch_queue AS q
        USING input AS i
        WHERE q.order_id = i.order_id AND q.generation = i.generation
        RETURNING q.order_id
    )
    UPDATE bunsync.fetch_queue AS q
    SET claimed_until = NULL, claimed_by = NULL, attempts = 0, next_attempt_at = now(), last_error = NULL
    WHERE q.order_id IN (SELECT i.order_id FROM input AS i)
      AND q.order_id NOT IN (SELECT d.order_id FROM done AS d);
END $$;

REVOKE ALL ON FUNCTION bunsync.store_observed(bigint[], bigint[], text[], text[], text[], text[], text[], text[])
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bunsync.store_observed(bigint[], bigint[], text[], text[], text[], text[], text[], text[])
    TO bunsync_service;
