-- name: load
-- The current rows of items $1 (bigint[], distinct), with the rule's state, as one JSON array (decoded
-- with msgspec: much cheaper than a record per row). Unqualified table: the engine's search_path picks
-- the live table or the one a rebuild is filling.
-- One primary-key probe per item (LATERAL ... OFFSET 0: a nested loop whatever the statistics say).
-- "= ANY($1)" was planned once per connection, often while the table was empty or small (a new
-- deployment, a rebuild's fresh table), and that generic plan, a sequential scan, was kept as the
-- table grew: 4.5 ms a batch at 6,000 items in bench_latency.
SELECT coalesce(json_agg(s), '[]')::text
FROM unnest($1::bigint[]) AS k(order_item_id)
CROSS JOIN LATERAL (
    SELECT * FROM order_item_status AS t WHERE t.order_item_id = k.order_item_id OFFSET 0
) AS s;

-- name: upsert
-- Write item rows given as one JSON array $1 of objects with every column (msgspec-encoded: one
-- parameter is far cheaper to send than an array per column); ids are distinct, so each row is
-- touched once.
INSERT INTO order_item_status AS s
    (order_item_id, order_id, pid, product_name, price, status, status_updated_at, source,
     last_position, synced_at, api_status, api_source, api_updated_at, api_position,
     webhook_status, webhook_signed_at, webhook_position)
SELECT *
FROM json_to_recordset($1::json) AS r(
    order_item_id bigint, order_id bigint, pid bigint, product_name text, price bigint, status text,
    status_updated_at timestamptz, source text, last_position bigint, synced_at timestamptz,
    api_status text, api_source text, api_updated_at timestamptz, api_position bigint,
    webhook_status text, webhook_signed_at timestamptz, webhook_position bigint)
ON CONFLICT (order_item_id) DO UPDATE SET
    order_id = excluded.order_id,
    pid = excluded.pid,
    product_name = excluded.product_name,
    price = excluded.price,
    status = excluded.status,
    status_updated_at = excluded.status_updated_at,
    source = excluded.source,
    last_position = excluded.last_position,
    synced_at = excluded.synced_at,
    api_status = excluded.api_status,
    api_source = excluded.api_source,
    api_updated_at = excluded.api_updated_at,
    api_position = excluded.api_position,
    webhook_status = excluded.webhook_status,
    webhook_signed_at = excluded.webhook_signed_at,
    webhook_position = excluded.webhook_position;

-- name: record_anomalies
-- Fields of API observations read as absent because implausible or unreadable (projections/events.py):
-- $1 positions, $2 item ids, $3 fields, $4 order ids, $5 problems, $6 recorded_at. A field seen again
-- (a retried or refolded event) is kept once. Unqualified, like the item table (live or rebuild).
INSERT INTO item_anomalies (position, order_item_id, field, order_id, problem, recorded_at)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[])
ON CONFLICT DO NOTHING;

-- name: bulk_functions
-- Session-local (pg_temp) definitions used by bulk_build, created in their own short transaction
-- before the read-only one that runs it. The checks they call (bunsync.json_int, json_text,
-- json_object, json_time, rfc3339) are in migration 0014, shared with the facts every event carries
-- (bunsync.event_log.facts): each says whether a JSON value (NULL when absent) is one that the msgspec
-- types of projections/events.py accept AND that bulk_build reads to the same value; stricter than
-- msgspec on purpose (a refusal costs a Python decode, never a wrong row). CASE, not AND: nothing is
-- cast before it has been checked, so no payload can make the statement fail.
--
-- rules.plausible_time, for every bulk statement (here and orders.sql): whether the time t (NULL: none)
-- is outside the window from 2000-01-01 to the event's recorded_at + 15 minutes. STABLE, as timestamptz
-- arithmetic is, so that PostgreSQL inlines it.
CREATE OR REPLACE FUNCTION pg_temp.bunsync_implausible(t timestamptz, recorded_at timestamptz) RETURNS boolean
LANGUAGE sql STABLE AS
$$ SELECT t IS NOT NULL AND NOT (t >= timestamptz '2000-01-01T00:00:00Z' AND t <= recorded_at + interval '15 minutes') $$;
-- The source an observation's event type stands for, as projections/events.py names it.
CREATE OR REPLACE FUNCTION pg_temp.bunsync_source(type text) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE type WHEN 'webhook.order_status_changed.v1' THEN 'webhook'
                    WHEN 'order.observed' THEN 'get_order' ELSE 'list_orders' END AS source $$;
--
-- bunsync_observations(bound): what the bulk phases read from the log (bulk_build here and in
-- order_item_history.sql, and the change feed's fill, feed_fill.sql), defined once: one row per item
-- observation of the events below transaction id bound (xid8 as text): item, api (false: a webhook),
-- status, ts (statusUpdatedAt, or a webhook's signature time t), position, tx_id, recorded_at, product
-- facts, order_id, source, unsure (left to Python, see below), and ord (the item's index in its
-- event's array, from 1: the order the fold reads an event's items in); and one row, item NULL, per
-- event not read ("bad"). webhooks: false leaves the webhook events out altogether (the change feed
-- reads only API observations).
-- STABLE, not STRICT, a single SELECT: PostgreSQL inlines it into the statement that calls it in
-- FROM (its plan is the one the levels had written out in the statement: sharing costs nothing).
--
-- Reading. An event is read only if what it cannot exist without passes the checks
-- (the order id, items that are objects with an integer id and a text status; a webhook's pid). Any
-- other event is "bad": Python parks it with its own message, as the live projector does (or, if
-- Python reads it after all, the caller abandons the bulk phase). An API item's other fields
-- (statusUpdatedAt, product, its id, name, price) are read on their own by Python: a value it cannot
-- read or an implausible time is read as absent and recorded in item_anomalies. Here, an item with a
-- value these checks do not vouch for, or with a time outside the plausibility window of
-- projections/rules.py (plausible_time: from 2000-01-01 to the event's recorded_at + 15 minutes), is
-- left to Python ("unsure", folded), which applies that rule and records the anomaly.
--
-- Two ways, one result. An event with facts (bunsync.event_log.facts, migration 0014: its one item,
-- every field vouched for by the same checks when it was appended) is read from them, without its
-- JSON ("fast" below: all but the plausibility window, which needs recorded_at, was decided then).
-- Every other event is read from its JSON, level by level. Both give the same rows for an event with
-- facts (tests/integration/test_item_facts.py reads every event both ways).
--
-- Each level below is evaluated once per row (OFFSET 0 keeps the planner from copying a level's
-- expressions into every use of its columns).
CREATE OR REPLACE FUNCTION pg_temp.bunsync_observations(bound text, webhooks boolean DEFAULT true)
RETURNS TABLE (item bigint, api boolean, status text, ts timestamptz, "position" bigint, tx_id xid8,
               recorded_at timestamptz, pid bigint, product_name text, price bigint, order_id bigint,
               source text, unsure boolean, ord bigint)
LANGUAGE sql STABLE AS $$
WITH fast AS (
    -- The events with facts: their item's row, with its time (API: checked, so the cast cannot fail).
    SELECT e.position, e.tx_id, e.recorded_at, e.type, e.type = 'webhook.order_status_changed.v1' AS webhook,
           (e.facts).item, (e.facts).status, e.signed_at, (e.facts).ts::timestamptz AS api_ts,
           (e.facts).pid, (e.facts).product_name, (e.facts).price, (e.facts).order_id
    FROM bunsync.event_log AS e
    WHERE e.tx_id < bound::xid8
      AND e.type IN ('webhook.order_status_changed.v1', 'order.observed', 'order.listed')
      -- A constant once inlined: the feed's fill (webhooks false) does not even read the webhooks.
      AND (webhooks OR e.type <> 'webhook.order_status_changed.v1')
      AND (e.facts).item IS NOT NULL
    OFFSET 0
),
events AS (
    -- The other events (the same conditions, without facts): read from their JSON.
    SELECT e.position, e.tx_id, e.recorded_at, e.signed_at, e.type, e.payload,
           e.type = 'webhook.order_status_changed.v1' AS webhook,
           CASE e.type WHEN 'webhook.order_status_changed.v1' THEN e.payload #> '{data,orderItems}'
                       WHEN 'order.observed' THEN e.payload #> '{data,order,orderItems}'
                       ELSE e.payload -> 'orderItems' END AS items,
           CASE e.type WHEN 'webhook.order_status_changed.v1' THEN e.payload #> '{data,orderId}'
                       WHEN 'order.observed' THEN e.payload #> '{data,order,id}'
                       ELSE e.payload -> 'id' END AS order_id
    FROM bunsync.event_log AS e
    WHERE e.tx_id < bound::xid8
      AND e.type IN ('webhook.order_status_changed.v1', 'order.observed', 'order.listed')
      AND (webhooks OR e.type <> 'webhook.order_status_changed.v1')
      AND (e.facts).item IS NULL
    OFFSET 0
),
checked AS (
    -- The event's own checks.
    SELECT ev.*,
           coalesce(jsonb_typeof(ev.payload) = 'object'
               AND bunsync.json_int(ev.order_id, true)
               AND CASE ev.type WHEN 'webhook.order_status_changed.v1'
                                THEN jsonb_typeof(ev.payload -> 'data') = 'object'
                                     AND jsonb_typeof(ev.items) = 'array'
                                WHEN 'order.observed'
                                THEN jsonb_typeof(ev.payload -> 'data') = 'object'
                                     AND jsonb_typeof(ev.payload #> '{data,order}') = 'object'
                                     AND coalesce(jsonb_typeof(ev.items), 'null') IN ('null', 'array')
                                ELSE coalesce(jsonb_typeof(ev.items), 'null') IN ('null', 'array') END,
               false) AS event_ok
    FROM events AS ev
    OFFSET 0
),
items AS (
    -- One row per item (one row of NULLs for an event without items: a bad one must be seen).
    SELECT c.position, c.tx_id, c.recorded_at, c.signed_at, c.type, c.webhook, c.order_id, c.event_ok,
           j.x IS NULL AS no_item, jsonb_typeof(j.x) AS item_type, j.ord,
           j.x ->> CASE WHEN c.webhook THEN 'orderStatus' ELSE 'status' END AS status,
           j.x -> CASE WHEN c.webhook THEN 'orderStatus' ELSE 'status' END AS status_json,
           j.x -> CASE WHEN c.webhook THEN 'orderItemId' ELSE 'id' END AS id,
           CASE WHEN c.webhook THEN j.x -> 'pid' ELSE j.x #> '{product,id}' END AS pid,
           CASE WHEN NOT c.webhook THEN j.x -> 'statusUpdatedAt' END AS ts,
           CASE WHEN NOT c.webhook THEN j.x ->> 'statusUpdatedAt' END AS ts_text,
           CASE WHEN NOT c.webhook THEN j.x -> 'product' END AS product,
           CASE WHEN NOT c.webhook THEN j.x #> '{product,name}' END AS name,
           CASE WHEN NOT c.webhook THEN j.x #> '{product,price}' END AS price
    FROM checked AS c
    LEFT JOIN LATERAL jsonb_array_elements(
        CASE WHEN c.event_ok AND jsonb_typeof(c.items) = 'array' THEN c.items ELSE '[]' END)
        WITH ORDINALITY AS j(x, ord) ON true
    OFFSET 0
),
items_checked AS (
    -- The item's checks; ok: the event's and the item's passed (only then is anything cast).
    SELECT i.*,
           i.event_ok AND (i.no_item OR (
               i.item_type = 'object' AND bunsync.json_int(i.id, true)
               AND CASE WHEN i.webhook THEN bunsync.json_text(i.status_json, true)
                                            AND bunsync.json_int(i.pid, false)
                        ELSE bunsync.json_text(i.status_json, false) END)) AS ok,
           -- An API item's other fields: only values these checks vouch for are read here.
           i.webhook OR (bunsync.json_time(i.ts, i.ts_text) AND bunsync.json_object(i.product)
                         AND bunsync.json_int(i.pid, false) AND bunsync.json_text(i.name, false)
                         AND bunsync.json_int(i.price, false)) AS sure
    FROM items AS i
    OFFSET 0
),
vouched AS (
    -- Values are cast only when checked (ok and sure), so no payload can make the statement fail.
    SELECT k.*, k.ok AND k.sure AS cast_ok,
           CASE WHEN k.ok AND k.sure AND NOT k.webhook THEN k.ts_text::timestamptz END AS api_ts
    FROM items_checked AS k
    OFFSET 0
),
judged AS (
    -- rules.plausible_time. An implausible time is never returned (year 10000 would not even decode
    -- in Python): the item is left to Python, which reads the time as absent.
    SELECT v.*,
           pg_temp.bunsync_implausible(v.api_ts, v.recorded_at) AS implausible
    FROM vouched AS v
    OFFSET 0
),
obs AS MATERIALIZED (
    -- Materialized: read twice (the bad events below, and the rule).
    SELECT CASE WHEN k.ok THEN (k.id ->> 0)::bigint END AS item, NOT k.webhook AS api,
           CASE WHEN k.ok THEN k.status END AS status,
           CASE WHEN NOT k.ok OR k.implausible THEN NULL WHEN k.webhook THEN k.signed_at
                ELSE k.api_ts END AS ts,
           k.position, k.tx_id, k.recorded_at,
           CASE WHEN k.cast_ok THEN (k.pid ->> 0)::bigint END AS pid,
           CASE WHEN k.cast_ok THEN k.name ->> 0 END AS product_name,
           CASE WHEN k.cast_ok THEN (k.price ->> 0)::bigint END AS price,
           CASE WHEN k.ok THEN (k.order_id ->> 0)::bigint END AS order_id,
           pg_temp.bunsync_source(k.type) AS source,
           NOT k.ok AS bad,
           -- Left to Python: a value not vouched for, or a time outside rules.plausible_time's window.
           k.ok AND NOT k.webhook AND (NOT k.sure OR k.implausible) AS unsure,
           k.ord
    FROM judged AS k
),
-- Events not read: one bad item makes the whole event bad (usually none).
bad AS (
    SELECT DISTINCT o.position FROM obs AS o WHERE o.bad
),
-- Rows that matter: an API item without a status observes nothing; every row of a bad event is kept,
-- item NULL, so that its position reaches the caller.
kept AS (
    SELECT o.item, o.api, o.status, o.ts, o.position, o.tx_id, o.recorded_at, o.pid, o.product_name,
           o.price, o.order_id, o.source, o.unsure, o.ord
    FROM obs AS o
    WHERE o.status IS NOT NULL AND o.position NOT IN (SELECT b.position FROM bad AS b)
    UNION ALL
    SELECT NULL, false, NULL, NULL, b.position, NULL, NULL, NULL, NULL, NULL, NULL, NULL, false, NULL
    FROM bad AS b
    UNION ALL
    -- The events with facts. Implausible (as in judged above): the time is not returned, and the item
    -- is left to Python (api_ts is NULL for a webhook).
    SELECT f.item, NOT f.webhook, f.status,
           CASE WHEN f.webhook THEN f.signed_at
                WHEN pg_temp.bunsync_implausible(f.api_ts, f.recorded_at) THEN NULL ELSE f.api_ts END,
           f.position, f.tx_id, f.recorded_at, f.pid, f.product_name, f.price, f.order_id,
           pg_temp.bunsync_source(f.type), pg_temp.bunsync_implausible(f.api_ts, f.recorded_at), 1
    FROM fast AS f
)
SELECT * FROM kept $$;

-- name: bulk_build
-- The rebuild's bulk phase, set-based: the row of every item observed by the events below
-- transaction id $1 (xid8 as text; the caller's snapshot xmin, so all of them have committed) of the
-- projection's types. A SELECT, run in a read-only transaction: it takes no transaction id, so it
-- holds back no commit-safe reader (the live projectors carry on while it runs); the caller runs it
-- as a COPY TO STDOUT and writes the rows in short COPYs. One row per item; folded: the item is left to Python, with the positions of its events
-- (item NULL: the events bulk_build did not read, "bad").
-- What it reads: pg_temp.bunsync_observations (bulk_functions), shared with order_item_history.sql.
--
-- The rule. projections/rules.py (apply_status) folded in log order is a function of the set of an
-- item's observations: the API state is the newest API observation by (statusUpdatedAt NULLS FIRST,
-- position); the shown webhook is the newest by (t, position) among the webhooks after that API
-- observation in the log with t later than its statusUpdatedAt; product facts come from the newest
-- observation (by position) that has them. That holds when the projector reads the item's
-- observations in position order. It reads in commit-safe order (tx_id, position), which differs when
-- transactions commit out of position order; and the fold treats an unsigned webhook and an item twice
-- in one event in ways a set cannot. Items with any of those are left out, and folded in Python.
-- Test: tests/integration/test_projection_bulk.py (random event sets: SQL == Python).
WITH kept AS (
    SELECT * FROM pg_temp.bunsync_observations($1)
),
-- One sort (item, position DESC) serves every window below: w is the item's whole partition.
step1 AS (
    SELECT o.*,
           max(o.ts) FILTER (WHERE o.api) OVER w AS a_ts,
           max(o.position) OVER w AS last_pos,
           max(o.position) FILTER (WHERE o.pid IS NOT NULL) OVER w AS pid_pos,
           max(o.position) FILTER (WHERE o.product_name IS NOT NULL) OVER w AS name_pos,
           max(o.position) FILTER (WHERE o.price IS NOT NULL) OVER w AS price_pos,
           -- Left to Python: the next newer observation was written by an older transaction (read
           -- after this one) or is in the same event; an unsigned webhook; bad events (item NULL);
           -- an unsure API item.
           coalesce(lag(o.tx_id) OVER w < o.tx_id OR lag(o.position) OVER w = o.position, false)
               OR (NOT o.api AND o.ts IS NULL) OR o.item IS NULL OR o.unsure AS fold
    FROM kept AS o
    WINDOW w AS (PARTITION BY o.item ORDER BY o.position DESC
                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
),
step2 AS (
    SELECT s.*,
           max(s.position) FILTER (WHERE s.api AND s.ts IS NOT DISTINCT FROM s.a_ts) OVER w AS a_pos,
           bool_or(s.fold) OVER w AS folded
    FROM step1 AS s
    WINDOW w AS (PARTITION BY s.item ORDER BY s.position DESC
                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
),
shown AS (
    -- A webhook shown over the API state (before choosing the newest of them).
    SELECT t.*,
           NOT t.api AND (t.a_pos IS NULL OR (t.position > t.a_pos AND (t.a_ts IS NULL OR t.ts > t.a_ts)))
               AS shown
    FROM step2 AS t
),
per_item AS (
    -- The shown webhook is the newest by (t, position) of those rows: an ordered aggregate over
    -- them only (few per item), rather than two more passes over every row.
    SELECT s.item,
           bool_or(s.folded) AS folded,
           array_agg(s.position) FILTER (WHERE s.folded) AS positions,
           max(s.order_id) FILTER (WHERE s.position = s.last_pos) AS order_id,
           max(s.pid) FILTER (WHERE s.position = s.pid_pos) AS pid,
           max(s.product_name) FILTER (WHERE s.position = s.name_pos) AS product_name,
           max(s.price) FILTER (WHERE s.position = s.price_pos) AS price,
           max(s.last_pos) AS last_position,
           max(s.recorded_at) FILTER (WHERE s.position = s.last_pos) AS synced_at,
           max(s.status) FILTER (WHERE s.api AND s.position = s.a_pos) AS api_status,
           max(s.source) FILTER (WHERE s.api AND s.position = s.a_pos) AS api_source,
           max(s.a_ts) AS api_updated_at,
           max(s.a_pos) AS api_position,
           (array_agg(s.status ORDER BY s.ts DESC, s.position DESC) FILTER (WHERE s.shown))[1]
               AS webhook_status,
           max(s.ts) FILTER (WHERE s.shown) AS webhook_signed_at,
           (array_agg(s.position ORDER BY s.ts DESC, s.position DESC) FILTER (WHERE s.shown))[1]
               AS webhook_position
    FROM shown AS s
    GROUP BY s.item
)
SELECT p.folded, p.positions, p.item AS order_item_id, p.order_id, p.pid, p.product_name, p.price,
       -- What readers see: the provisional webhook while there is one, else the API state.
       CASE WHEN p.webhook_position IS NULL THEN p.api_status ELSE p.webhook_status END AS status,
       CASE WHEN p.webhook_position IS NULL THEN p.api_updated_at END AS status_updated_at,
       CASE WHEN p.webhook_position IS NULL THEN p.api_source ELSE 'webhook' END AS source,
       p.last_position, p.synced_at, p.api_status, p.api_source, p.api_updated_at, p.api_position,
       p.webhook_status, p.webhook_signed_at, p.webhook_position
FROM per_item AS p;

-- name: bulk_bound
-- The bulk phase's bound: the xmin of this statement's snapshot (xid8 as text). Every transaction
-- below it has ended, and any that ends later has an id at or above it, so "tx_id < bound" is a fixed
-- set of events, the same for every statement of the bulk phase (the commit-safe reader's rule, see
-- event_log.sql read_after), and the engine can carry on from the last of them.
SELECT pg_snapshot_xmin(pg_current_snapshot())::text;

-- name: bulk_checkpoint
-- The last event (tx id as text, position) below transaction id $1 (xid8 as text) in commit-safe
-- order, and how many events (of every type) are below it: the checkpoint the bulk phase reached.
-- (The text column is named tx_text so that ORDER BY tx_id sorts by the xid8, not by its text, where
-- '999' > '1000'.)
SELECT l.tx_text, l.position,
       (SELECT count(*) FROM bunsync.event_log WHERE tx_id < $1::text::xid8) AS events
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT e.tx_id::text AS tx_text, e.position FROM bunsync.event_log AS e
    WHERE e.tx_id < $1::text::xid8
    ORDER BY e.tx_id DESC, e.position DESC
    LIMIT 1
) AS l ON true;

-- name: in_log_order
-- Positions $1 (bigint[]) in commit-safe order (tx_id, position): the order the fold reads them in.
SELECT position FROM bunsync.event_log WHERE position = ANY ($1::bigint[]) ORDER BY tx_id, position;

-- name: events_at
-- The logged events at positions $1 (bigint[]), in commit-safe order, shaped like read_after's rows.
SELECT position, tx_id::text AS tx_text, stream, type, payload::text AS payload, source,
       signed_at, received_at, recorded_at
FROM bunsync.event_log
WHERE position = ANY ($1::bigint[])
ORDER BY tx_id, position;

-- name: bulk_settings
-- For the rest of the bulk phase's transaction: times without an offset are UTC (as
-- projections/events.py reads them), and times are written in ISO style with their offset (the rows
-- travel to the build table as COPY text: read back the same whatever the writer's settings); no JIT (compiling the big statement costs more than it saves);
-- work_mem $1 (e.g. '64MB') so the statement's sort stays in memory (one sort per rebuild, on the
-- server: the rebuild process itself stays small).
SELECT set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO', true), set_config('jit', 'off', true), set_config('work_mem', $1::text, true);
