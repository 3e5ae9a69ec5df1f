"""The two HTTP listeners: the guarded server both run on (``server``, limits and deadlines against
abusive clients; ``refusals``, counted and summarised), the internet-facing webhook listener
(``webhook_app``: the webhook route and health only) and the operator listener (``operator_app``:
status, metrics, and what operators use; bearer token)."""
