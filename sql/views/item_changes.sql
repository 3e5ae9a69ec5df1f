-- reporting.item_changes: the change feed, read with `WHERE feed_position > $last ORDER BY feed_position`.
CREATE OR REPLACE VIEW reporting.item_changes AS
SELECT c.feed_position, c.order_id, c.order_item_id, c.status, c.previous_status,
       c.status_updated_at, c.source, c.recorded_at
FROM bunsync.item_changes AS c;

COMMENT ON VIEW reporting.item_changes IS
    'The change feed: one row each time an order item''s confirmed (Get Order / List Orders) status '
    'moved forward (a later statusUpdatedAt than the last one taken into account, and a different '
    'status). feed_position is the cursor: reading feed_position > last ORDER BY feed_position in a '
    'loop never misses a row and never returns one twice (rows commit in position order and are never '
    'changed or renumbered, even by bunsync rebuild). previous_status is NULL for the item''s first row; '
    'source: get_order or list_orders; recorded_at: when bunsync recorded the observation.';

GRANT SELECT ON reporting.item_changes TO bunsync_reporting, bunsync_service;
