-- 0013: bunsync.store_observed (migration 0012) touches the fetch jobs of its answers by one primary-key
-- probe per job instead of a join of the whole queue with the answers (issue 14).
--
-- Why: the fetch queue is small and churned (every webhook inserts or bumps a row, every stored answer
-- deletes one), so its statistics are always stale and it is full of dead rows. The set-based lock,
-- delete and update of 0012 were planned as sequential scans of the queue (hash joins against a few
-- answers): 1.2-1.7 ms a call at 200 webhooks/s with a few hundred jobs waiting, the largest statement
-- of the fetch path, and growing with the queue. An equality on the primary key is planned as an index
-- probe whatever the statistics say; a call stores one to a few answers, so a loop of probes is cheap.
--
-- Everything else is unchanged: the same arguments and guarantees, the same lock order (the jobs by
-- order id, then the personal-data locks by order id), the same completion rule (a job whose generation
-- moved on during its fetch is made due again, the others removed).
CREATE OR REPLACE FUNCTION bunsync.store_observed(
    order_ids bigint[], generations bigint[], streams text[], types text[], sources text[],
    keys text[], payloads text[], personal text[]
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    answer record;
    job record;
BEGIN
    FOR job IN SELECT DISTINCT j.order_id FROM unnest(store_observed.order_ids) AS j(order_id) ORDER BY 1 LOOP
        PERFORM 1 FROM bunsync.fetch_queue AS q WHERE q.order_id = job.order_id FOR UPDATE;
    END LOOP;

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
    -- on), in which case make it due again, fresh. (An order named twice ends as 0012 left it: removed
    -- if either generation is current.)
    FOR job IN
        SELECT j.order_id, j.generation
        FROM unnest(store_observed.order_ids, generations) AS j(order_id, generation)
        ORDER BY j.order_id
    LOOP
        DELETE FROM bunsync.fetch_queue AS q WHERE q.order_id = job.order_id AND q.generation = job.generation;
        IF NOT FOUND THEN
            UPDATE bunsync.fetch_queue AS q
            SET claimed_until = NULL, claimed_by = NULL, attempts = 0, next_attempt_at = now(), last_error = NULL
            WHERE q.order_id = job.order_id;
        END IF;
    END LOOP;
END $$;
