-- name: item_statuses
-- Every item's current status as reporting tools see it; the demo compares it with the sandbox's truth.
SELECT order_item_id, status, status_updated_at FROM reporting.order_item_status;

-- name: listed_events
-- Observations the reconciler recorded (what webhooks missed); the literal is app.events.ORDER_LISTED.
SELECT count(*) FROM bunsync.event_log WHERE type = 'order.listed';

-- name: status_counts
-- README's analyst query: items per status.
SELECT status, items FROM reporting.status_counts ORDER BY items DESC;

-- name: sources
-- README's analyst query: items per source of their current status.
SELECT source, count(*) AS n FROM reporting.order_item_status GROUP BY 1;

-- name: personal_data
-- The buyer personal data kept per order (JSON text), to pick one order to forget.
SELECT order_id, fields::text AS fields FROM bunsync.personal_data ORDER BY order_id;

-- name: feed
-- The change feed in feed order, to compare with what the sandbox's consumer received.
SELECT feed_position, order_item_id, status FROM reporting.item_changes ORDER BY feed_position;
