"""Names ``vulture app projections vulture_allowlist.py`` (the lint step of scripts/test) must not report.

Each is used, but where vulture cannot see it. Anything else it reports is dead code: delete it.
"""

# ruff: noqa: B018, F821

# Wire and row fields: msgspec decodes into them and the database reads them by name (jsonb, columns).
total_price
total_product_price
no
seller_shop_name
invoice_company_code
invoice_company_name
events_read
# Fields of the sandbox's GET /_sandbox/counters answer (encoded by msgspec, read by its clients).
emitted
dropped
duplicated
delayed
reordered
# Framework hooks and attributes: asyncio.Protocol, uvicorn.Server, logging and context-manager protocols.
_.data_received
_.keep_alive
_.should_exit
_.capture_signals
_.disabled
exc_type
tb
signum
frame
kw
# Used only inside a string type alias (app.store.db.Connection).
PoolConnectionProxy
# Public helpers the tests and the sandbox's clients call (not the daemon itself).
verify  # app.webhook.signature: the whole check in one call
queue_counts  # app.fetcher: the fetch queue's depth
run_sandbox  # app.sandbox.server: an in-process sandbox
_.api_calls  # app.sandbox.counters: API calls by endpoint and status
FINAL_STATUSES  # app.sandbox.lifecycle
START  # app.store.event_log: the checkpoint before every event
# Fields read only by the console's Jinja2 templates or encoded to JSON by msgspec (explain --json).
_.chart_svg
_.totals
_.enqueued_at
_.last_error_at  # app.feed.health: in /status JSON
_.last_delivered_at  # app.feed.health: in /status JSON
_.webhook_timestamp  # app.sandbox.consumer: in GET /_sandbox/consumer/received
_.signature_valid  # app.sandbox.consumer: in GET /_sandbox/consumer/received
# Fetcher.claim: one job at a time (the workers claim in groups with claim_many); the fetch tests drive
# the workers' steps with it.
claim
# Fetcher.process: fetch and store one job, waiting for the store (the workers store in the background
# instead); the fetch tests drive one job at a time with it.
process
