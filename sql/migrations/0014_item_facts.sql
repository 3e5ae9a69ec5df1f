-- 0014: every item observation's facts, read from its JSON once, when the event is appended (issue 14).
--
-- Why: a rebuild or a fresh projection's fill reads the whole log set-based (the bulk phases,
-- projections/bulk.py, and the change feed's fill). Reading each item's fields out of the JSON and
-- checking them cost ~12 s of a ~16 s statement per 1,000,000 events, and every projection paid it
-- again (three times over in a catch-up). Read once, at append time, by whoever writes the event (the
-- webhook route, the fetchers, the reconciler, a COPY), and kept next to the event, they cost a
-- rebuild ~0.5 s per 1,000,000 events. At append time: ~30 us more per single-row INSERT
-- (pgbench), within the noise of a webhook's ~200-250 us of PostgreSQL CPU under the ingest flood,
-- where many webhooks share one INSERT (scripts/bench_ingest.py, alternated runs).
--
-- What is kept: bunsync.event_log.facts, a generated column (computed by PostgreSQL on every INSERT,
-- COPY or UPDATE, never written by the service), holding the one item of an event that has exactly one
-- (the common case: a webhook, Get Order or List Orders answer about one item) when EVERY field the
-- bulk phases read passes the checks below: the same values, to the byte, that the bulk phases' full
-- reading of the JSON (pg_temp.bunsync_observations, sql/queries/order_item_status.sql) finds for it.
-- Anything else (several items, none, a value not vouched for, an event the projections cannot read)
-- is NULL and read the long way, as before. So the facts only ever save work; they decide nothing.
--
-- The checks (moved here from the bulk phases' session-local functions, which now call these): each
-- says whether a JSON value (NULL when absent) is one that the msgspec types of projections/events.py
-- accept AND that the bulk phases read to the same value; stricter than msgspec on purpose (a refusal
-- costs a Python decode, never a wrong row).
--
-- Never raises: an INSERT must not fail because of what Bunjang or a forger sent (the webhook would be
-- refused; tests/integration/test_item_facts.py throws hostile payloads at it). Nothing is cast before
-- it has been checked (only in a RETURN after an IF of checks: PostgreSQL does not promise the order
-- of AND's operands), and
-- no function that raises on a shape (jsonb_array_length, for one) is called at all.
--
-- Changing a check or the facts later needs a migration that recomputes the column (drop and add it
-- again: a rewrite of the log), or the facts of old events would follow the old rules.
--
-- The ALTER TABLE below rewrites the log (~21 s per 1,000,000 events on the benchmark machine) under
-- an ACCESS EXCLUSIVE lock: webhooks wait, then are answered 503 past the pool's timeout and retried
-- by Bunjang (see README, "Existing data").

CREATE FUNCTION bunsync.json_int(j jsonb, required boolean) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE jsonb_typeof(j) WHEN 'number' THEN scale(j::numeric) = 0 AND abs(j::numeric) < 1e18
                               WHEN 'null' THEN NOT required ELSE j IS NULL AND NOT required END $$;
CREATE FUNCTION bunsync.json_text(j jsonb, required boolean) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE jsonb_typeof(j) WHEN 'string' THEN length(j #>> '{}') <= 10000
                               WHEN 'null' THEN NOT required ELSE j IS NULL AND NOT required END $$;
CREATE FUNCTION bunsync.json_object(j jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE jsonb_typeof(j) WHEN 'object' THEN true WHEN 'null' THEN true ELSE j IS NULL END $$;
-- Plain RFC 3339 ('T', at most 6 fraction digits, offset under 14 h or none: read as UTC, as
-- events.utc does) on a real calendar date. No regex: PostgreSQL's regex engine cost ~4 us a time.
-- Each fixed field is looked up among its allowed values (digits and range in one hashed lookup of a
-- constant array: '00'..'23' for the hour...), the separators by one LIKE, and only the tail after the
-- seconds (fraction, offset) is mapped digit by digit to 0 and looked up among its 28 allowed shapes
-- (translate() over the whole string and an integer cast per field cost twice as much: ~5.5 us against
-- ~2.7 us). The few integer casts left read fields already known to be digits, so cannot fail. Inlined
-- into the statement when t is a column (it is read more than once: given an expression, PostgreSQL
-- would call it as a function, much slower).
CREATE FUNCTION bunsync.rfc3339(t text) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE WHEN t LIKE '____-__-__T__:__:__%'
                    AND substr(t, 1, 2) = ANY ('{00,01,02,03,04,05,06,07,08,09,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79,80,81,82,83,84,85,86,87,88,89,90,91,92,93,94,95,96,97,98,99}'::text[])
                    AND substr(t, 3, 2) = ANY ('{00,01,02,03,04,05,06,07,08,09,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79,80,81,82,83,84,85,86,87,88,89,90,91,92,93,94,95,96,97,98,99}'::text[])
                    AND substr(t, 6, 2) = ANY ('{01,02,03,04,05,06,07,08,09,10,11,12}'::text[])
                    AND substr(t, 9, 2) = ANY ('{01,02,03,04,05,06,07,08,09,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31}'::text[])
                    AND substr(t, 12, 2) = ANY ('{00,01,02,03,04,05,06,07,08,09,10,11,12,13,14,15,16,17,18,19,20,21,22,23}'::text[])
                    AND substr(t, 15, 2) = ANY ('{00,01,02,03,04,05,06,07,08,09,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59}'::text[])
                    AND substr(t, 18, 2) = ANY ('{00,01,02,03,04,05,06,07,08,09,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59}'::text[])
                    AND translate(substr(t, 20), '123456789', '000000000') = ANY ('{"",Z,+00:00,-00:00,.0,.0Z,.0+00:00,.0-00:00,.00,.00Z,.00+00:00,.00-00:00,.000,.000Z,.000+00:00,.000-00:00,.0000,.0000Z,.0000+00:00,.0000-00:00,.00000,.00000Z,.00000+00:00,.00000-00:00,.000000,.000000Z,.000000+00:00,.000000-00:00}'::text[])
               THEN substr(t, 1, 4) <> '0000'
                   -- An offset is the last 6 characters ('+hh:mm'); no other shape has a sign there.
                   AND (substr(t, length(t) - 5, 1) NOT IN ('+', '-')
                        OR (substr(t, length(t) - 4, 2)::int <= 13 AND substr(t, length(t) - 1, 2)::int <= 59))
                   AND CASE substr(t, 6, 2)
                       WHEN '02' THEN substr(t, 9, 2)::int <= 28
                                      OR (substr(t, 9, 2) = '29' AND substr(t, 1, 4)::int % 4 = 0
                                          AND (substr(t, 1, 4)::int % 100 <> 0 OR substr(t, 1, 4)::int % 400 = 0))
                       WHEN '04' THEN substr(t, 9, 2) <> '31' WHEN '06' THEN substr(t, 9, 2) <> '31'
                       WHEN '09' THEN substr(t, 9, 2) <> '31' WHEN '11' THEN substr(t, 9, 2) <> '31'
                       ELSE true END
               ELSE false END $$;
-- j: the JSON value, t: its text (j ->> 0, computed by the caller as a column: see rfc3339).
CREATE FUNCTION bunsync.json_time(j jsonb, t text) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE jsonb_typeof(j) WHEN 'string' THEN bunsync.rfc3339(t)
                               WHEN 'null' THEN true ELSE j IS NULL END $$;

-- One item observation's facts (see above): its id, status, statusUpdatedAt as sent (API; checked,
-- cast when read, where the plausibility window needs recorded_at), the product's id, name and price
-- (API; a webhook's pid), and the event's order id.
CREATE TYPE bunsync.item_fact AS (
    item bigint, status text, ts text, pid bigint, product_name text, price bigint, order_id bigint
);

-- The facts of an event of type t with payload p, or NULL (see above). PL/pgSQL, not SQL: an SQL
-- function is inlined into the column's expression, and PostgreSQL 15 plans a generated column's
-- expression again at every INSERT, which re-parses the body of every SQL function it inlines
-- (measured: 2.5 ms a single-row INSERT, against 0.1 ms without the column). Here the expressions are
-- planned once per session, and each JSON path is looked up once, into a variable.
--
-- The three types share one shape: an object o holding the order id and "orderItems" (webhook:
-- data; Get Order: data.order; List Orders: the payload itself), whose one item x is an object with
-- an integer id. A path through a value of another type is NULL, never an error, so o is NULL when
-- any level above it is not an object. Casts only in a RETURN reached after an IF of checks.
CREATE FUNCTION bunsync.item_fact(t text, p jsonb) RETURNS bunsync.item_fact
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    webhook boolean := t = 'webhook.order_status_changed.v1';
    o jsonb := CASE WHEN webhook THEN p -> 'data'
                    WHEN t = 'order.observed' THEN p #> '{data,order}'
                    WHEN t = 'order.listed' THEN p END;
    order_key text := CASE WHEN webhook THEN 'orderId' ELSE 'id' END;
    items jsonb := o -> 'orderItems';
    x jsonb := items -> 0;
    ts text;
BEGIN
    -- (An IF whose condition is NULL is not taken: hence the coalesce here.)
    IF NOT coalesce(jsonb_typeof(o) = 'object' AND bunsync.json_int(o -> order_key, true)
                    AND jsonb_typeof(items) = 'array' AND items -> 1 IS NULL
                    AND jsonb_typeof(x) = 'object', false) THEN
        RETURN NULL;
    END IF;
    IF webhook THEN
        IF bunsync.json_int(x -> 'orderItemId', true) AND bunsync.json_text(x -> 'orderStatus', true)
           AND bunsync.json_int(x -> 'pid', false) THEN
            RETURN ROW((x ->> 'orderItemId')::bigint, x ->> 'orderStatus', NULL, (x ->> 'pid')::bigint,
                       NULL, NULL, (o ->> 'orderId')::bigint)::bunsync.item_fact;
        END IF;
        RETURN NULL;
    END IF;
    ts := x ->> 'statusUpdatedAt';
    -- A status, not JSON null: an API item without one observes nothing (read the long way).
    IF jsonb_typeof(x -> 'status') = 'string' AND bunsync.json_text(x -> 'status', true)
       AND bunsync.json_int(x -> 'id', true) AND bunsync.json_time(x -> 'statusUpdatedAt', ts)
       AND bunsync.json_object(x -> 'product') AND bunsync.json_int(x #> '{product,id}', false)
       AND bunsync.json_text(x #> '{product,name}', false) AND bunsync.json_int(x #> '{product,price}', false) THEN
        RETURN ROW((x ->> 'id')::bigint, x ->> 'status', ts, (x #>> '{product,id}')::bigint,
                   x #>> '{product,name}', (x #>> '{product,price}')::bigint, (o ->> 'id')::bigint)::bunsync.item_fact;
    END IF;
    RETURN NULL;
END $$;

ALTER TABLE bunsync.event_log
    ADD COLUMN facts bunsync.item_fact GENERATED ALWAYS AS (bunsync.item_fact(type, payload)) STORED;
