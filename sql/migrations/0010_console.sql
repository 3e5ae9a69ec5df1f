-- 0010: indexes for the operator console (app/console), so every page is an index walk on a big log.
--
-- Webhook rates per minute over the last hour: only webhook deliveries have received_at, so a partial
-- index on it holds the webhooks alone and the last hour is one range scan; with the type included,
-- an index-only one (the console also caches sealed minutes: app/console/pages.py, MinuteCache).
CREATE INDEX event_log_received_at_idx ON bunsync.event_log (received_at) INCLUDE (type)
    WHERE received_at IS NOT NULL;
-- The dead-letter page lists dead fetches newest first, page by page.
CREATE INDEX fetch_queue_dead_idx ON bunsync.fetch_queue (dead_at DESC, order_id) WHERE dead_at IS NOT NULL;
-- The parked-events page lists unresolved parked events newest first, page by page.
CREATE INDEX parked_events_unresolved_parked_at_idx
    ON bunsync.parked_events (parked_at DESC, projection, position) WHERE resolved_at IS NULL;
