"""The Bunjang Open API client: the only code in bunsync that speaks to Bunjang (see ``client.py``)."""
