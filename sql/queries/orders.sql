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

-- name: upsert_addresses
-- Write buyer addresses (personal data), one array per column: $1 order_id, $2 name, $3 phone,
-- $4 address1, $5 address2, $6 zip_code, $7 last_position. Older observations never replace newer.
INSERT INTO order_addresses AS a (order_id, name, phone, address1, address2, zip_code, last_position)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[])
ON CONFLICT (order_id) DO UPDATE SET
    name = excluded.name,
    phone = excluded.phone,
    address1 = excluded.address1,
    address2 = excluded.address2,
    zip_code = excluded.zip_code,
    last_position = excluded.last_position
WHERE a.last_position < excluded.last_position;
