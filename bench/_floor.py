"""The floor of ``bench/throughput.py``: a trivial ASGI app on ``tether serve``'s server stack.

Every request (any method, any path) has its body read and is answered ``200`` with a small JSON
body. It runs under ``uvicorn.run`` with the arguments ``tether serve`` passes (one process, one
worker, the same event loop and HTTP implementation uvicorn picks in this environment, access log
off), so what it does per second is what HTTP on that stack can do at all on this machine: the
ceiling no endpoint on it can pass, and the yardstick tether's authorize is measured against.

    .venv/bin/python bench/_floor.py --port 8471

(``bench/throughput.py`` starts it; there is no reason to run it by hand.)
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Message = MutableMapping[str, Any]
BODY = b'{"status":"ok"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the request body, as any real endpoint must
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args()
    # The same arguments as src/tether/cli/serve.py passes: keep the two in step.
    uvicorn.run(app, host=options.host, port=options.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
