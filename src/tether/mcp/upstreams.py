"""Connections to upstream MCP servers (MCP client side, official SDK): stdio and streamable HTTP.

Each upstream has at most one live connection, opened on first use (a call to one of its tools,
or a ``tools/list``, which starts every upstream at once) and owned by its own task in the
gateway's task group (the SDK's transports hold task groups that must close in the task that
opened them). A call that finds the connection gone (the process exited, the socket closed)
marks it broken, so the next call opens a new one: a restarted stdio server is reconnected.
Starting is bounded by the upstream's ``timeout_seconds``: one that hangs at start fails as
``unavailable`` and holds up only the requests that need it; it is not started again for
:data:`START_RETRY_SECONDS` (requests that need it fail at once meanwhile), so a hanging server
does not make every ``tools/list`` wait out its timeout again.
A session remembers when a request last used it, how many are under way and what resources are
subscribed to on it, so the pool can close it once idle (:mod:`tether.mcp.pool`).

Every failure surfaces as :class:`UpstreamFailure` with a :class:`FailureKind` and a message that
is safe to show the agent and to audit: it never carries a credential or a response body.

For HTTP upstreams with a credential, :class:`InjectedCredential` adds the header to each request
the gateway sends; the value comes from tether's secret store and never reaches the agent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

import anyio
import httpx2
import mcp_types as types
from anyio.abc import TaskGroup, TaskStatus
from mcp.client.session import ClientSession, IncomingMessage
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.dispatcher import CallOptions, ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT
from pydantic import ValidationError

from tether.core.secret import Secret
from tether.logs import get_logger
from tether.mcp.config import CredentialRef, HttpUpstream, StdioUpstream, Upstream
from tether.mcp.lean_http import LeanHttp, serves
from tether.mcp.lean_upstream import HttpRoute, LeanChannel, Relay, SessionIdWatch
from tether.service.ports import Clock

log = get_logger("tether.mcp.upstreams")

MAX_LIST_PAGES: Final = 50
#: After a start that timed out, how long to fail at once rather than start the upstream again.
START_RETRY_SECONDS: Final = 30


class FailureKind(StrEnum):
    UNAVAILABLE = "unavailable"  # could not connect or start
    CRASHED = "crashed"  # the connection closed under a request
    TIMEOUT = "timeout"  # no answer within the upstream's timeout_seconds
    MALFORMED = "malformed"  # an answer that is not valid MCP
    ERROR_RESPONSE = "error_response"  # a JSON-RPC error instead of a result
    TOO_LARGE = "too_large"  # a result over the gateway's max_result_bytes
    LEAKED_SECRET = "leaked_secret"  # a result holding the credential the gateway injected


class UpstreamFailure(Exception):
    def __init__(self, upstream: str, kind: FailureKind, message: str) -> None:
        super().__init__(f"upstream {upstream!r} {kind.value}: {message}")
        self.upstream = upstream
        self.kind = kind
        self.message = message


class InjectedCredential(httpx2.Auth):
    """Adds the upstream's credential header to every request the gateway sends (httpx Auth)."""

    def __init__(self, ref: CredentialRef, secret: Secret) -> None:
        self._header = ref.header
        self._scheme = ref.scheme
        self._secret = secret

    def header(self) -> tuple[str, str]:
        """The header's name and value (the secret revealed now, for this request only)."""
        value = self._secret.reveal()
        return self._header, f"{self._scheme} {value}" if self._scheme else value

    def auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        name, value = self.header()
        request.headers[name] = value
        yield request

    def __repr__(self) -> str:
        return f"InjectedCredential(header={self._header!r})"


SecretSource = Callable[[str], Secret]


#: Called with each notification an upstream session sends outside a request's progress
#: (logging, resource updates), typed by the SDK, and the session that got it.
NotificationSink = Callable[["UpstreamConnection", types.ServerNotification], Awaitable[None]]
#: Called with the session whose upstream announced ``notifications/tools/list_changed``, in
#: wire order: before any answer the upstream sent after it is seen by its caller.
ToolsChanged = Callable[["UpstreamConnection"], None]
TOOLS_CHANGED: Final = "notifications/tools/list_changed"


@dataclass
class _Session:
    """An initialized upstream session: the SDK's session (it ran the handshake and keeps
    answering pings) and the dispatcher under it, through which requests are forwarded as
    JSON-RPC messages."""

    session: ClientSession
    dispatcher: JSONRPCDispatcher[Any]
    protocol_version: str
    capabilities: types.ServerCapabilities
    #: ``tools/call`` without the SDK client's per-request machinery (tether.mcp.lean_upstream).
    lean: LeanChannel


@dataclass
class _Live:
    client: _Session
    stop: anyio.Event
    broken: bool = False


class UpstreamConnection:
    """One session with an upstream MCP server (for one agent, or for all when the upstream
    is shared), connected on demand and reconnected after a failure."""

    def __init__(
        self,
        config: Upstream,
        secrets: SecretSource,
        task_group: TaskGroup,
        clock: Clock,
        notifications: NotificationSink | None = None,
        tools_changed: ToolsChanged | None = None,
        *,
        agent: str | None = None,
        lean: bool = True,
    ) -> None:
        self.config = config
        #: ``tools/call`` without the SDK client's per-request machinery; how many went so.
        self._lean = lean
        self.lean_calls = 0
        #: The agent this session belongs to (``None``: shared by every agent).
        self.agent = agent
        self._notifications = notifications
        self._tools_changed = tools_changed
        self._secrets = secrets
        self._tg = task_group
        self._clock = clock
        self._live: _Live | None = None
        self._lock = anyio.Lock()
        #: Until when a start that timed out is not tried again.
        self._hung_until: datetime | None = None
        #: Finds the credentials the live connection was given (built when it is opened, so a
        #: rotated secret is scanned for from the connection that uses it).
        #: When a request last used this session, how many are under way, and the resources
        #: subscribed to on it: what decides that it is idle (:meth:`idle`).
        self._used_at = clock.now()
        self._busy = 0
        self._subscribed: set[str] = set()

    @property
    def name(self) -> str:
        return self.config.name

    def _fail(self, kind: FailureKind, message: str) -> UpstreamFailure:
        return UpstreamFailure(self.name, kind, message)

    # -- connecting ----------------------------------------------------------------------------

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[_Session]:
        """The SDK's transport and handshake (protocol revision 2025-11-25 or what the server
        answers with): what the SDK earns its place for. Requests then go through the
        dispatcher as raw JSON-RPC params and results (:meth:`request`)."""
        config = self.config
        timeout = config.timeout_seconds
        async with AsyncExitStack() as stack:
            if isinstance(config, StdioUpstream):
                # Credentials come from the secret store at spawn time, never from gateway.yaml.
                env = dict(config.env)
                given = {
                    variable: self._secrets(secret).reveal()
                    for variable, secret in config.secret_env
                }
                env.update(given)
                params = StdioServerParameters(
                    command=config.command, args=list(config.args), env=env, cwd=config.cwd
                )
                read, write = await stack.enter_async_context(stdio_client(params))
                route = None
            else:
                auth = None
                if config.credential is not None:
                    secret = self._secrets(config.credential.secret)
                    auth = InjectedCredential(config.credential, secret)
                watch = SessionIdWatch()
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(
                        auth=auth,
                        timeout=httpx2.Timeout(timeout),
                        event_hooks={"response": [watch]},
                    )
                )
                read, write = await stack.enter_async_context(
                    streamable_http_client(config.url, http_client=http)
                )
                lean_http = None
                if self._lean and serves(config.url):
                    lean_http = LeanHttp(config.url)
                    stack.callback(lean_http.close)
                route = HttpRoute(http, config.url, watch, lean_http, auth)
            # Every message the upstream sends passes the relay first, in wire order: its
            # tools/list_changed is seen before any answer that followed it.
            relay = Relay(self._tap)
            relaying = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(relaying.cancel_scope.cancel)
            relaying.start_soon(relay.run, read)
            dispatcher: JSONRPCDispatcher[Any] = JSONRPCDispatcher(relay.receive, write)
            session = await stack.enter_async_context(
                ClientSession(
                    dispatcher=dispatcher,
                    read_timeout_seconds=timeout,
                    message_handler=self._on_message,
                )
            )
            initialized = await session.initialize()
            version = initialized.protocol_version
            lean = LeanChannel(relay, write, version, route)
            yield _Session(session, dispatcher, version, initialized.capabilities, lean)

    def _tap(self, method: str) -> None:
        if method == TOOLS_CHANGED and self._tools_changed is not None:
            self._tools_changed(self)

    async def _on_message(self, message: IncomingMessage) -> None:
        """The upstream's notifications, passed on; a transport error marks the session
        broken so the next request reconnects."""
        if isinstance(message, Exception):
            if self._live is not None:
                self._live.broken = True
            return
        if (
            self._notifications is None
            or not isinstance(message, types.ServerNotification)
            or isinstance(message, types.ToolListChangedNotification)  # seen by _tap already
        ):
            return
        await self._notifications(self, message)

    async def _own(self, *, task_status: TaskStatus[_Live]) -> None:
        """Hold the connection open in this task until told to stop or it breaks."""
        started = False
        try:
            async with self._open() as client:
                live = _Live(client, anyio.Event())
                task_status.started(live)
                started = True
                await live.stop.wait()
        except Exception as error:
            if not started:
                raise
            log.info("upstream_closed", upstream=self.name, error_type=type(error).__name__)

    async def _client(self) -> _Live:
        live = self._live
        if live is not None and not live.broken:
            # Up: no lock to take (anyio's yields to the loop once even when it is free).
            return live
        async with self._lock:
            live = self._live
            if live is not None and not live.broken:
                return live
            if live is not None:
                live.stop.set()
                self._live = None
            timeout = self.config.timeout_seconds
            if self._hung_until is not None and self._clock.now() < self._hung_until:
                raise self._fail(
                    FailureKind.UNAVAILABLE,
                    f"did not start within {timeout:g} s at the last attempt; the next "
                    f"attempt is after {self._hung_until.isoformat(timespec='seconds')}",
                )
            try:
                with anyio.fail_after(timeout):
                    started: _Live = await self._tg.start(self._own)
            except Exception as error:
                if not _timed_out(error):
                    raise self._fail(
                        FailureKind.UNAVAILABLE, _describe(error, self.config)
                    ) from None
                self._hung_until = self._clock.now() + timedelta(seconds=START_RETRY_SECONDS)
                raise self._fail(
                    FailureKind.UNAVAILABLE, f"did not start within {timeout:g} s"
                ) from None
            self._hung_until = None
            self._live = started
            self._subscribed.clear()  # a new session holds no subscription
            log.info("upstream_connected", upstream=self.name)
            return started

    def close(self) -> None:
        """Stop the live session, if any (its process exits, its HTTP session is ended)."""
        if self._live is not None:
            self._live.stop.set()
            self._live = None

    # -- idleness ------------------------------------------------------------------------------

    def touch(self) -> datetime:
        """The session is about to be used (for a request, or to list through it); now."""
        self._used_at = now = self._clock.now()
        return now

    def idle(self, now: datetime) -> bool:
        """Is the session live but unused for ``idle_timeout_seconds``: no request under way
        or made since, and no resource subscribed to on it?"""
        return (
            self._live is not None
            and self._busy == 0
            and not self._subscribed
            and now - self._used_at >= timedelta(seconds=self.config.idle_timeout_seconds)
        )

    @contextmanager
    def _using(self) -> Iterator[None]:
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1
            self._used_at = self._clock.now()

    # -- requests ------------------------------------------------------------------------------

    async def list_tools(self) -> list[types.Tool]:
        with self._using():
            return await self._list_tools()

    async def _list_tools(self) -> list[types.Tool]:
        live = await self._client()
        tools: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(MAX_LIST_PAGES):
            request = live.client.session.list_tools(
                params=types.PaginatedRequestParams(cursor=cursor)
            )
            page = await self._guard(live, request, "tools/list")
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                return tools
        raise self._fail(
            FailureKind.MALFORMED, f"tools/list did not end within {MAX_LIST_PAGES} pages"
        )

    @property
    def capabilities(self) -> types.ServerCapabilities | None:
        """What the live session's server declared at its handshake (``None``: not connected)."""
        live = self._live
        return None if live is None or live.broken else live.client.capabilities

    async def ready(self) -> types.ServerCapabilities:
        """Connect if need be; what the upstream declared at its handshake."""
        return (await self._client()).client.capabilities

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        *,
        on_progress: ProgressFnT | None = None,
    ) -> dict[str, Any]:
        """Forward one request as a JSON-RPC message and return the raw result object; the
        upstream's progress notifications for it go to ``on_progress``."""
        with self._using():
            result = await self._request(method, params, on_progress)
        uri = params.get("uri") if params is not None else None
        if method == "resources/subscribe" and isinstance(uri, str):
            self._subscribed.add(uri)
        elif method == "resources/unsubscribe" and isinstance(uri, str):
            self._subscribed.discard(uri)
        return result

    async def _request(
        self, method: str, params: Mapping[str, Any] | None, on_progress: ProgressFnT | None
    ) -> dict[str, Any]:
        live = await self._client()
        if self._lean and method == "tools/call" and on_progress is None:
            self.lean_calls += 1
            lean = live.client.lean.request(method, params, self.config.timeout_seconds)
            # Bounded by the channel itself (its timeout, then a cancel notice of at most 1 s).
            answer: dict[str, Any] = await self._guard(live, lean, method, bounded=True)
            return answer
        opts: CallOptions = {
            "timeout": self.config.timeout_seconds,
            "headers": {MCP_PROTOCOL_VERSION_HEADER: live.client.protocol_version},
        }
        if on_progress is not None:
            opts["on_progress"] = on_progress
        sent = live.client.dispatcher.send_raw_request(method, params, opts)
        result: dict[str, Any] = await self._guard(live, sent, method)
        return result

    async def _guard(self, live: _Live, request: Any, method: str, *, bounded: bool = False) -> Any:
        """Await ``request``, turning every way it can fail into an :class:`UpstreamFailure`;
        under a deadline of its own unless the request is ``bounded`` already (a second timer
        per call would only cost)."""
        deadline = nullcontext() if bounded else anyio.fail_after(self.config.timeout_seconds + 1)
        try:
            with deadline:
                return await request
        except MCPError as error:
            if error.code == CONNECTION_CLOSED:
                live.broken = True
                raise self._fail(
                    FailureKind.CRASHED, f"the connection closed during {method}"
                ) from None
            if error.code == REQUEST_TIMEOUT:
                raise self._fail(
                    FailureKind.TIMEOUT,
                    f"no answer to {method} within {self.config.timeout_seconds:g} s",
                ) from None
            raise self._fail(
                FailureKind.ERROR_RESPONSE, f"{method} answered with error {error.code}"
            ) from None
        except TimeoutError:
            live.broken = True
            raise self._fail(
                FailureKind.TIMEOUT,
                f"no answer to {method} within {self.config.timeout_seconds:g} s",
            ) from None
        except ValidationError:
            raise self._fail(
                FailureKind.MALFORMED, f"the answer to {method} is not valid MCP"
            ) from None
        except Exception as error:
            live.broken = True
            raise self._fail(FailureKind.CRASHED, _describe(error, self.config)) from None


def _leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _timed_out(error: BaseException) -> bool:
    """Did starting fail for want of an answer (our deadline, or the SDK's own on initialize)?"""
    leaf = _leaf(error)
    return isinstance(leaf, TimeoutError) or (
        isinstance(leaf, MCPError) and leaf.code == REQUEST_TIMEOUT
    )


def _describe(error: BaseException, config: Upstream) -> str:
    """A short, secret-free account of a connection error."""
    leaf = _leaf(error)
    where = f"command {config.command!r}" if isinstance(config, StdioUpstream) else _origin(config)
    return f"{type(leaf).__name__} talking to {where}"


def _origin(config: HttpUpstream) -> str:
    url = httpx2.URL(config.url)
    return f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")
