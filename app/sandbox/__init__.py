"""``bunsync sandbox``: a local, deterministic stand-in for Bunjang (REST API, webhooks, fault knobs)."""
