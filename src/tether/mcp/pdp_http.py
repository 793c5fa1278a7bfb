"""The remote decision point's HTTP client for ``tether serve``: one request, one JSON answer or
one error, fail closed (:mod:`tether.mcp.pdp_remote` says what it asks).

Two clients, one set of rules. The requests made for every tool call (:data:`PER_CALL`:
``POST /v1/authorize``, ``/v1/effects``, ``/v1/observations``) go through the gateway's own
keep-alive HTTP/1.1 client (:class:`~tether.mcp.lean_http.LeanHttp`, one pool per path) when
serve's URL is one it serves (plain ``http://``, no user, no proxy in the environment): on
loopback ``httpx``'s client spends ~0.35 ms of CPU on one such POST, this ~0.05 ms. Everything
else (the cached ``GET``s, the gateway's own records) and every request to an ``https://`` or
proxied serve goes through one ``httpx`` client (connection pool, keep-alive, TLS and proxy
settings).

Both: at most :data:`MAX_CONNECTIONS` requests in flight (more wait their turn within their
timeout); a request serve may have received is never sent twice (only a connection that failed to
open is tried once more); no answer within ``timeout`` seconds (the whole request on the lean
client; connect, each read and write on ``httpx``'s), a broken connection, a ``5xx`` or an
answer that is not serve's JSON raise ``Unavailable(pdp_unavailable)``; a ``4xx`` with one of
tether's stable codes raises that error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import anyio
import httpx
import httpx2

from tether.core.errors import CODE_BRANCH, ErrorCode, InvalidRequest, Unavailable
from tether.mcp.lean_http import LeanHttp, serves

#: The requests every tool call makes (the lean client's, when it serves the URL).
PER_CALL: Final = frozenset({"/v1/authorize", "/v1/effects", "/v1/observations"})
#: Requests in flight to serve at once, on each client (more wait for a turn, within their
#: timeout), as httpx's ``max_connections``.
MAX_CONNECTIONS: Final = 100


def unavailable(message: str) -> Unavailable:
    return Unavailable(message, code=ErrorCode.PDP_UNAVAILABLE)


class ServeClient:
    """Requests to ``tether serve`` at ``url`` (an ``http(s)`` URL, checked by the caller)."""

    def __init__(
        self,
        url: str,
        where: str,
        timeout: float,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._url = url.rstrip("/")
        self._where = where
        self._timeout = timeout
        self._http: httpx.AsyncClient | None = None
        #: One lean pool per path (its request line is fixed), if the lean client serves url.
        self._lean: dict[str, LeanHttp] | None = {} if serves(self._url, environ) else None
        self._turns = anyio.CapacityLimiter(MAX_CONNECTIONS)

    @property
    def lean(self) -> bool:
        """Whether the per-call requests take the lean client."""
        return self._lean is not None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self._url,
                timeout=httpx.Timeout(self._timeout, connect=min(self._timeout, 2.0)),
                limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=32),
                # Only a connection that failed to open is retried: a request serve may have
                # received is never sent twice.
                transport=httpx.AsyncHTTPTransport(retries=1),
                follow_redirects=False,
            )
        return self._http

    async def request(
        self,
        method: str,
        path: str,
        bearer: str,
        expected: int,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Serve's JSON answer (an object) to one request with status ``expected``."""
        sent = {"authorization": f"Bearer {bearer}", **(headers or {})}
        content = b""
        if body is not None:
            try:
                content = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
            except (TypeError, ValueError):
                raise InvalidRequest(
                    "the request is not JSON", code=ErrorCode.INVALID_FIELD
                ) from None
            sent["content-type"] = "application/json"
        if self._lean is not None and method == "POST" and path in PER_CALL:
            status, answer = await self._lean_post(path, sent, content)
        else:
            status, answer = await self._httpx(
                method, path, sent, content if body is not None else None
            )
        return self._read(method, path, status, answer, expected)

    async def _httpx(
        self, method: str, path: str, headers: dict[str, str], content: bytes | None
    ) -> tuple[int, bytes]:
        try:
            response = await self._client().request(method, path, content=content, headers=headers)
        except httpx.HTTPError as error:
            raise self._no_answer(type(error).__name__) from None
        return response.status_code, response.content

    async def _lean_post(
        self, path: str, headers: dict[str, str], content: bytes
    ) -> tuple[int, bytes]:
        assert self._lean is not None
        pool = self._lean.get(path)
        if pool is None:
            pool = self._lean[path] = LeanHttp(f"{self._url}{path}")
        try:
            with anyio.fail_after(self._timeout):
                async with self._turns:
                    try:
                        response = await pool.post(headers, content)
                    except httpx2.ConnectError:
                        # Nothing was sent: once more on a new connection, as httpx's retries=1.
                        response = await pool.post(headers, content)
                    try:
                        answer = await response.aread()
                    finally:
                        await response.aclose()
        except TimeoutError:
            raise self._no_answer("timeout") from None
        except httpx2.HTTPError as error:
            raise self._no_answer(type(error).__name__) from None
        return response.status_code, answer

    def _no_answer(self, why: str) -> Unavailable:
        return unavailable(
            f"tether serve at {self._where} did not answer ({why}); the request was not "
            "decided, retry when it is back"
        )

    def _read(self, method: str, path: str, status: int, answer: bytes, expected: int) -> Any:
        """``answer`` if it is serve's JSON object with ``expected``; else its error."""
        try:
            data = json.loads(answer) if answer else None
        except ValueError:
            data = None
        if status == expected and isinstance(data, dict):
            return data
        if 400 <= status < 500 and isinstance(data, dict):
            said = data.get("error")
            said = said if isinstance(said, dict) else {}
            code = said.get("code")
            if isinstance(code, str) and code in ErrorCode.__members__.values():
                known = ErrorCode(code)
                raise CODE_BRANCH[known](str(said.get("message", "")), code=known)
        raise unavailable(
            f"tether serve at {self._where} answered {method} {path} with HTTP {status}; the "
            "request was not decided, retry later"
        )

    async def aclose(self) -> None:
        if self._lean is not None:
            for pool in self._lean.values():
                pool.close()
            self._lean = {}
        if self._http is not None:
            await self._http.aclose()
            self._http = None
