"""What operators read: the health snapshot and its verdict (``status``) and Prometheus metrics
(``metrics``)."""
