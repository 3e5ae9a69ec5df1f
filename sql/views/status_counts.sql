-- reporting.status_counts: how many items are in each status now.
CREATE OR REPLACE VIEW reporting.status_counts AS
SELECT s.status,
       count(*) AS items,
       count(*) FILTER (WHERE s.source = 'webhook') AS provisional_items
FROM bunsync.order_item_status AS s
GROUP BY s.status;

COMMENT ON VIEW reporting.status_counts IS
    'One row per current status: status (verbatim); items: order items in it now; provisional_items: '
    'of those, how many are known only from a webhook so far (not yet confirmed by the API).';

GRANT SELECT ON reporting.status_counts TO bunsync_reporting, bunsync_service;
