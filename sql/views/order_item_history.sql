-- reporting.order_item_history: every observed status change of every item, in order.
CREATE OR REPLACE VIEW reporting.order_item_history AS
SELECT h.order_id, h.order_item_id, h.status,
       lag(h.status) OVER item_order AS previous_status,
       h.status_updated_at, h.source, h.position, h.recorded_at
FROM bunsync.order_item_history AS h
WINDOW item_order AS (PARTITION BY h.order_item_id
                      ORDER BY coalesce(h.status_updated_at, h.signed_at), h.position);

COMMENT ON VIEW reporting.order_item_history IS
    'One row per observed status change of an order item, each change once. order_id, order_item_id; '
    'status: the status entered (verbatim); previous_status: the status before it in this item''s '
    'history (NULL for the first); status_updated_at: Bunjang''s statusUpdatedAt of the change, NULL '
    'when only a webhook has reported it so far (ordered by its signature time until the API confirms '
    'it); source: webhook, get_order or list_orders; position: the event-log position that first '
    'reported it; recorded_at: when bunsync recorded that event. Order rows of an item by '
    'status_updated_at, then position (filter on order_item_id or order_id: it stays cheap).';

GRANT SELECT ON reporting.order_item_history TO bunsync_reporting, bunsync_service;
