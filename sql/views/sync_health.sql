-- reporting.sync_health: one row saying how well bunsync keeps up. Every part is cheap on a large log:
-- counts walk indexes over small sets (lag, parked, unrecognised, queue), never the whole log.
CREATE OR REPLACE VIEW reporting.sync_health AS
WITH lags AS (
    SELECT c.projection, c.events_read,
           (SELECT count(*) FROM bunsync.event_log AS e
             WHERE (e.tx_id, e.position) > (c.tx_id, c.position)) AS lag
    FROM bunsync.projection_checkpoints AS c
),
newest AS (
    SELECT e.recorded_at FROM bunsync.event_log AS e ORDER BY e.position DESC LIMIT 1
),
last_pass AS (
    SELECT r.finished_at, r.ok FROM bunsync.reconcile_passes AS r
    WHERE r.finished_at IS NOT NULL
    ORDER BY r.finished_at DESC, r.id DESC LIMIT 1
)
SELECT
    -- events read by the least-lagging projection + its lag = every event in the log, exactly
    coalesce((SELECT l.events_read + l.lag FROM lags AS l ORDER BY l.lag LIMIT 1),
             (SELECT count(*) FROM bunsync.event_log))                              AS events_total,
    (SELECT recorded_at FROM newest)                                                AS last_event_at,
    coalesce((SELECT max(l.lag) FROM lags AS l), 0)                                 AS max_projection_lag,
    (SELECT count(*) FROM bunsync.fetch_queue AS q WHERE q.dead_at IS NULL)         AS fetch_pending,
    (SELECT count(*) FROM bunsync.fetch_queue AS q WHERE q.dead_at IS NOT NULL)     AS fetch_dead,
    (SELECT count(*) FROM bunsync.event_log AS e WHERE e.type = 'webhook.unrecognized')
                                                                                    AS unrecognized_events,
    (SELECT count(*) FROM bunsync.webhook_conflicts)                                AS webhook_conflicts,
    (SELECT finished_at FROM last_pass)                                             AS last_reconcile_at,
    (SELECT ok FROM last_pass)                                                      AS last_reconcile_ok,
    (SELECT count(*) FROM bunsync.parked_events AS p WHERE p.resolved_at IS NULL)   AS parked_events;

COMMENT ON VIEW reporting.sync_health IS
    'One row. events_total: events in the log (exact; counted from the projections'' checkpoints, not '
    'by scanning the log); last_event_at: when the newest event was recorded; max_projection_lag: '
    'events the most lagging projection has still to apply; fetch_pending: Get Order fetches waiting '
    '(incl. retrying); fetch_dead: fetches given up (re-drive them); unrecognized_events: webhooks '
    'stored verbatim but not understood; webhook_conflicts: eventIds redelivered with a different '
    'body; last_reconcile_at / last_reconcile_ok: when the last reconcile pass finished and whether '
    'it succeeded (NULL before the first); parked_events: events a projection could not apply and '
    'set aside (fix, then retry them).';

GRANT SELECT ON reporting.sync_health TO bunsync_reporting, bunsync_service;
