"""The change feed's readers: the cursor read and long poll (``GET /feed``) and the forwarder that
pushes each change to the partner's endpoint as a Standard Webhooks request."""
