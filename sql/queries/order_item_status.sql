-- name: load
-- The current rows of items $1 (bigint[]), with the rule's state. Unqualified table: the engine's
-- search_path picks the live table or the one a rebuild is filling.
SELECT order_item_id, order_id, pid, product_name, price, status, status_updated_at, source,
       last_position, synced_at, api_status, api_source, api_updated_at, api_position,
       webhook_status, webhook_signed_at, webhook_position
FROM order_item_status
WHERE order_item_id = ANY($1::bigint[]);

-- name: upsert
-- Write item rows, one array per column ($1 order_item_id … $17 webhook_position, in table order);
-- the ids are distinct (one row per item per batch), so each row is touched once.
INSERT INTO order_item_status AS s
    (order_item_id, order_id, pid, product_name, price, status, status_updated_at, source,
     last_position, synced_at, api_status, api_source, api_updated_at, api_position,
     webhook_status, webhook_signed_at, webhook_position)
SELECT *
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::text[],
            $7::timestamptz[], $8::text[], $9::bigint[], $10::timestamptz[], $11::text[], $12::text[],
            $13::timestamptz[], $14::bigint[], $15::text[], $16::timestamptz[], $17::bigint[])
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
