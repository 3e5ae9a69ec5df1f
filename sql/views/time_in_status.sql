-- reporting.time_in_status: per item and status visit, when it entered, left, and how long it stayed.
CREATE OR REPLACE VIEW reporting.time_in_status AS
SELECT t.order_id, t.order_item_id, t.status, t.entered_at,
       t.left_at, t.left_at - t.entered_at AS duration
FROM (
    SELECT h.order_id, h.order_item_id, h.status, h.position,
           coalesce(h.status_updated_at, h.signed_at) AS entered_at,
           lead(coalesce(h.status_updated_at, h.signed_at)) OVER item_order AS left_at
    FROM bunsync.order_item_history AS h
    WINDOW item_order AS (PARTITION BY h.order_item_id
                          ORDER BY coalesce(h.status_updated_at, h.signed_at), h.position)
) AS t;

COMMENT ON VIEW reporting.time_in_status IS
    'One row per stay of an order item in a status (from the history). order_id, order_item_id, '
    'status; entered_at: Bunjang''s statusUpdatedAt of entering it (a webhook''s signature time while '
    'the API has not confirmed it); left_at: when the next status was entered (NULL while still in '
    'it); duration: left_at - entered_at (NULL while still in it).';

GRANT SELECT ON reporting.time_in_status TO bunsync_reporting, bunsync_service;
