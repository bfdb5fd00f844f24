"""A deadline for a request's body.

aiohttp closes a connection that stays idle (`keepalive_timeout`, which also bounds headers
that drip in), but a body that drips in, a byte now and then, is waited for as long as the
client likes: each such request holds a connection and a file descriptor, and a few thousand
of them leave none for the webhooks that matter (or for the database). A body not whole within
its deadline ends the request with 408 and the connection is closed. The handler is cancelled
only while the body is still arriving, so nothing is cancelled once it could have been stored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from aiohttp import web

BODY_SECONDS = 30.0  # a webhook's body (at most server.max_body) arrives well within this
BODY_TIMEOUT: web.AppKey[float] = web.AppKey("body_timeout", float)


class BodyTimeout(Exception):
    """The request's body did not arrive whole within its deadline."""


@contextlib.contextmanager
def body_deadline(request: web.Request) -> Iterator[None]:
    """Cancel the current handler, as BodyTimeout, if the body is not whole in time."""
    task = asyncio.current_task()
    if task is None or request.content.is_eof():  # no body, or all of it already here
        yield
        return
    expired = False

    def check() -> None:
        nonlocal expired
        if not request.content.is_eof():
            expired = True
            task.cancel()

    seconds = request.app.get(BODY_TIMEOUT, BODY_SECONDS)
    handle = asyncio.get_running_loop().call_later(seconds, check)
    try:
        yield
    except asyncio.CancelledError:
        if not expired:
            raise
        task.uncancel()
        raise BodyTimeout from None
    finally:
        handle.cancel()


def body_timed_out() -> web.Response:
    """The answer to a body that came too slowly; the connection is not kept."""
    response = web.Response(status=408, text="the request body did not arrive in time")
    response.force_close()
    return response
