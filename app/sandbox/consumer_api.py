"""The consumer's routes (see :mod:`app.sandbox.consumer`): the endpoint and its admin calls.

- ``POST /_sandbox/consumer``: the partner's endpoint (204, or the failure it was told to answer).
- ``GET /_sandbox/consumer``: its fault settings; ``PATCH /_sandbox/consumer``: change them
  (``{"failRate": 0.3, "failStatus": 500, "downForS": 10}``, any subset).
- ``GET /_sandbox/consumer/received[?accepted=true]``: every request in arrival order, or only those
  answered 2xx; ``DELETE /_sandbox/consumer/received``: forget them.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import JSONBody, QueryParameter

from app.sandbox.consumer import MAX_BODY, ConsumerFaults, ReceivedOut
from app.sandbox.service import Sandbox


@post("/_sandbox/consumer", request_max_body_size=MAX_BODY + 1)
async def consume(sandbox: NamedDependency[Sandbox], request: Request[Any, Any, Any]) -> Response[bytes]:
    """One Standard Webhooks delivery from bunsync's forwarder."""
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    return Response(content=b"", status_code=sandbox.consumer.receive(headers, body))


@get("/_sandbox/consumer")
async def read_consumer(sandbox: NamedDependency[Sandbox]) -> ConsumerFaults:
    """The consumer's current fault settings."""
    return sandbox.consumer.faults


@patch("/_sandbox/consumer")
async def update_consumer(
    sandbox: NamedDependency[Sandbox], data: JSONBody[dict[str, Any]]
) -> ConsumerFaults:
    """Partial update of the consumer's faults (``downForS`` counts from now)."""
    try:
        return sandbox.consumer.update(data)
    except msgspec.ValidationError as exc:
        raise ValidationException(str(exc)) from exc


@get("/_sandbox/consumer/received")
async def read_received(
    sandbox: NamedDependency[Sandbox],
    accepted: Annotated[bool, QueryParameter(name="accepted")] = False,
) -> ReceivedOut:
    """What the consumer received, in arrival order."""
    return sandbox.consumer.snapshot(accepted_only=accepted)


@delete("/_sandbox/consumer/received", status_code=204)
async def clear_received(sandbox: NamedDependency[Sandbox]) -> None:
    """Forget what was received."""
    sandbox.consumer.clear()


ROUTES = [consume, read_consumer, update_consumer, read_received, clear_received]
