"""The operator console: server-rendered pages on the operator listener (see routes.py)."""
