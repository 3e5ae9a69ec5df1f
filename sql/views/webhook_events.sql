-- reporting.webhook_events: one row per recorded webhook delivery (the first copy of each eventId).
CREATE OR REPLACE VIEW reporting.webhook_events AS
SELECT
    e.payload ->> 'eventId'                             AS event_id,
    e.payload ->> 'eventType'                           AS event_type,
    e.payload ->> 'payloadVersion'                      AS payload_version,
    CASE WHEN e.type = 'webhook.order_status_changed.v1'
         THEN (e.payload -> 'data' ->> 'orderId')::bigint END AS order_id,
    e.type <> 'webhook.unrecognized'                    AS recognized,
    e.signed_at,
    e.received_at,
    e.position
FROM bunsync.event_log AS e
WHERE e.source = 'webhook';

COMMENT ON VIEW reporting.webhook_events IS
    'One row per recorded webhook delivery (first copy of each eventId). event_id, event_type, '
    'payload_version: from the envelope (NULL when the body was not JSON); order_id: NULL unless '
    'recognized; recognized: a known eventType and payloadVersion that decoded; signed_at: the '
    'signature time t; received_at: when bunsync received it; position: its place in the event log.';

GRANT SELECT ON reporting.webhook_events TO bunsync_reporting, bunsync_service;
