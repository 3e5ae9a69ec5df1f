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
