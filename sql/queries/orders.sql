-- name: upsert_orders
-- Write order facts, one array per column: $1 order_id, $2 total_price, $3 total_product_price,
-- $4 delivery_price, $5 order_done_at, $6 approved_at, $7 seller_id, $8 seller_shop_name,
-- $9 invoice_no, $10 invoice_company_code, $11 invoice_company_name, $12 ship_done_at,
-- $13 last_position, $14 synced_at. An older observation (lower position) never replaces a newer one.
INSERT INTO orders AS o
    (order_id, total_price, total_product_price, delivery_price, order_done_at, approved_at,
     seller_id, seller_shop_name, invoice_no, invoice_company_code, invoice_company_name,
     ship_done_at, last_position, synced_at)
SELECT *
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::timestamptz[],
            $6::timestamptz[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[],
            $12::timestamptz[], $13::bigint[], $14::timestamptz[])
ON CONFLICT (order_id) DO UPDATE SET
    total_price = excluded.total_price,
    total_product_price = excluded.total_product_price,
    delivery_price = excluded.delivery_price,
    order_done_at = excluded.order_done_at,
    approved_at = excluded.approved_at,
    seller_id = excluded.seller_id,
    seller_shop_name = excluded.seller_shop_name,
    invoice_no = excluded.invoice_no,
    invoice_company_code = excluded.invoice_company_code,
    invoice_company_name = excluded.invoice_company_name,
    ship_done_at = excluded.ship_done_at,
    last_position = excluded.last_position,
    synced_at = excluded.synced_at
WHERE o.last_position < excluded.last_position;

-- name: mark_erased
-- Mark orders' buyer personal data as erased, one array per column: $1 order_id, $2 erased_at (the
-- erasure event's recorded_at), $3 reason. The first erasure's time and reason stay. An order never
-- observed yet gets a row of its own with last_position 0 ("no observation yet"), so that any
-- observation, even one that commits after the erasure with a lower position, fills in its facts.
INSERT INTO orders AS o (order_id, personal_data_erased_at, personal_data_erasure_reason, last_position, synced_at)
SELECT order_id, erased_at, reason, 0, erased_at
FROM unnest($1::bigint[], $2::timestamptz[], $3::text[]) AS i(order_id, erased_at, reason)
ON CONFLICT (order_id) DO UPDATE SET
    personal_data_erased_at = coalesce(o.personal_data_erased_at, excluded.personal_data_erased_at),
    personal_data_erasure_reason = coalesce(o.personal_data_erasure_reason, excluded.personal_data_erasure_reason);

-- name: record_anomalies
-- Fields of order.observed events read as absent because unreadable or implausible
-- (projections/order_facts.py): $1 positions, $2 order ids, $3 fields, $4 problems, $5 recorded_at.
-- A field seen again (a retried or re-read event) is kept once. Unqualified, like orders (live or
-- rebuild).
INSERT INTO order_anomalies (position, order_id, field, problem, recorded_at)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[])
ON CONFLICT DO NOTHING;

-- name: bulk_build
-- The bulk phase of projection orders (projections/bulk.py), set-based: the row of every order
-- observed by the events below transaction id $1 (xid8 as text; the caller's snapshot xmin, so all
-- of them have committed). A SELECT in a read-only transaction, run as a COPY TO STDOUT; the caller
-- writes the rows in short COPYs (see order_item_status.sql bulk_build for why).
--
-- The rule. projections/orders.py: an order's row holds the facts of its newest order.observed event
-- by log position (upsert_orders refuses an older one, whatever order the events are applied in), the
-- anomalies are those of every observation, and an erasure marks the row. So the row is a function of
-- one event, and every write commutes with the others (except two erasures of one order: the first
-- applied keeps its time; both are folded in Python, in commit-safe order).
--
-- What is left to Python ("folded", one line per event, with its position): every erasure event, and
-- every order.observed event with a value these checks (migration 0014's, the same as the item bulk
-- phases') do not vouch for or a time outside rules.plausible_time's window (bunsync_implausible,
-- bulk_functions in order_item_status.sql).
-- Python decodes it (projections/order_facts.py): it parks it, or upserts its facts (replacing a row
-- written here only when its position is later) and records its anomalies. A "clean" event (every
-- field the projection reads is absent, null, or vouched for) has no anomaly, and the SQL reads each
-- of its fields to the value Python reads, so its row here is the row Python would write.
-- Test: tests/integration/test_projection_bulk.py (random event sets: SQL == Python).
WITH events AS (
    SELECT e.position, e.recorded_at, e.type = 'order.observed' AS observed,
           e.payload -> 'data' AS data, e.payload #> '{data,order}' AS o,
           e.payload #> '{data,seller}' AS seller, e.payload #> '{data,delivery}' AS delivery,
           e.payload #> '{data,delivery,invoice}' AS invoice
    FROM bunsync.event_log AS e
    WHERE e.tx_id < $1::text::xid8 AND e.type IN ('order.observed', 'order.personal_data_erased')
    OFFSET 0
),
fields AS (
    -- Each value read once (the time checks read the text more than once: see bunsync.rfc3339, migration 0014).
    SELECT ev.*,
           ev.o ->> 'orderDoneAt' AS done_text, ev.o ->> 'approvedAt' AS approved_text,
           ev.delivery ->> 'shipDoneAt' AS ship_text
    FROM events AS ev
    OFFSET 0
),
checked AS (
    -- CASE, not AND, in the checks: nothing is cast before it has been checked.
    SELECT f.*,
           coalesce(f.observed
               AND jsonb_typeof(f.data) = 'object' AND jsonb_typeof(f.o) = 'object'
               AND bunsync.json_int(f.o -> 'id', true)
               AND bunsync.json_int(f.o -> 'totalPrice', false)
               AND bunsync.json_int(f.o -> 'totalProductPrice', false)
               AND bunsync.json_int(f.o -> 'deliveryPrice', false)
               AND bunsync.json_time(f.o -> 'orderDoneAt', f.done_text)
               AND bunsync.json_time(f.o -> 'approvedAt', f.approved_text)
               AND bunsync.json_object(f.seller)
               AND bunsync.json_int(f.seller -> 'id', false)
               AND bunsync.json_text(f.seller -> 'shopName', false)
               AND bunsync.json_object(f.delivery)
               AND bunsync.json_object(f.invoice)
               AND bunsync.json_text(f.invoice -> 'no', false)
               AND bunsync.json_text(f.invoice -> 'companyCode', false)
               AND bunsync.json_text(f.invoice -> 'companyName', false)
               AND bunsync.json_time(f.delivery -> 'shipDoneAt', f.ship_text),
               false) AS vouched
    FROM fields AS f
    OFFSET 0
),
read AS (
    -- The values, cast only when vouched for.
    SELECT c.position, c.recorded_at, c.vouched, c.o, c.seller, c.invoice,
           CASE WHEN c.vouched THEN c.done_text::timestamptz END AS order_done_at,
           CASE WHEN c.vouched THEN c.approved_text::timestamptz END AS approved_at,
           CASE WHEN c.vouched THEN c.ship_text::timestamptz END AS ship_done_at
    FROM checked AS c
    OFFSET 0
),
judged AS (
    -- rules.plausible_time: an implausible time is an anomaly, so the event is left to Python.
    SELECT r.*,
           r.vouched
           AND NOT pg_temp.bunsync_implausible(r.order_done_at, r.recorded_at)
           AND NOT pg_temp.bunsync_implausible(r.approved_at, r.recorded_at)
           AND NOT pg_temp.bunsync_implausible(r.ship_done_at, r.recorded_at) AS clean
    FROM read AS r
    OFFSET 0
),
newest AS (
    SELECT DISTINCT ON ((j.o ->> 'id')::bigint)
           (j.o ->> 'id')::bigint AS order_id, j.position, j.recorded_at, j.o, j.seller, j.invoice,
           j.order_done_at, j.approved_at, j.ship_done_at
    FROM judged AS j
    WHERE j.clean
    ORDER BY (j.o ->> 'id')::bigint, j.position DESC
)
SELECT false AS folded, NULL::bigint[] AS positions, n.order_id,
       (n.o ->> 'totalPrice')::bigint AS total_price,
       (n.o ->> 'totalProductPrice')::bigint AS total_product_price,
       (n.o ->> 'deliveryPrice')::bigint AS delivery_price,
       n.order_done_at, n.approved_at,
       (n.seller ->> 'id')::bigint AS seller_id, n.seller ->> 'shopName' AS seller_shop_name,
       n.invoice ->> 'no' AS invoice_no, n.invoice ->> 'companyCode' AS invoice_company_code,
       n.invoice ->> 'companyName' AS invoice_company_name,
       n.ship_done_at, n.position AS last_position, n.recorded_at AS synced_at
FROM newest AS n
UNION ALL
SELECT true, ARRAY[j.position], NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL
FROM judged AS j
WHERE NOT j.clean;
