-- name: load
-- The current rows of items $1 (bigint[]), with the rule's state, as one JSON array (decoded with
-- msgspec: much cheaper than a record per row). Unqualified table: the engine's search_path picks the
-- live table or the one a rebuild is filling.
SELECT coalesce(json_agg(s), '[]')::text
FROM order_item_status AS s
WHERE s.order_item_id = ANY($1::bigint[]);

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
