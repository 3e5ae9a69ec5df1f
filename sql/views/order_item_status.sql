-- reporting.order_item_status: the current status of every order item.
CREATE OR REPLACE VIEW reporting.order_item_status AS
SELECT s.order_id, s.order_item_id, s.pid, s.product_name, s.price, s.status, s.status_updated_at,
       s.source, s.last_position, s.synced_at
FROM bunsync.order_item_status AS s;

COMMENT ON VIEW reporting.order_item_status IS
    'One row per order item: its current status. order_id, order_item_id, pid (product id), '
    'product_name, price (KRW): from the newest observation that carried them; status: verbatim from '
    'Bunjang (unknown values kept as they came); status_updated_at: Bunjang''s statusUpdatedAt of '
    'that status, NULL while not known from the API; source: get_order or list_orders (authoritative) '
    'or webhook (provisional: shown only while its signature time is later than the newest API time, '
    'replaced by the next fetch); last_position: the newest event-log position about this item; '
    'synced_at: when bunsync recorded that event.';

GRANT SELECT ON reporting.order_item_status TO bunsync_reporting, bunsync_service;
