"""The path of one webhook, in order: ``endpoint`` (the ASGI handler: size, cheap refusals, body),
``signature`` (verify ``X-Bun-Webhook-Signature``), ``payloads`` (decode the body into a log event, never
failing), ``ingest`` (append it with its fetch, group-committed). Then the fetcher and projectors take
over from the log."""
