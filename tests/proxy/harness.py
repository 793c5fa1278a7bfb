"""Test support for the egress proxy: a real legacy HTTP service and the real proxy, both served by
uvicorn on 127.0.0.1, and agents speaking plain HTTP to the proxy.

The legacy service demands its standing secret (``Authorization: Bearer …`` under ``/api``, an
``api_key`` query parameter under ``/vault``) and records every request it receives, so a test
can see the proxy injected the secret, stripped the agent's SVID and grant, and forwarded
nothing it did not allow. Under ``/mirror`` it takes its secret either way and hands it back in
the form the path names (``/mirror/leak/<how>``), as careless services echo what they were sent;
a second server, :class:`Elsewhere`, stands for another origin a redirect may point to, and a
third, :class:`ReasonServer`, writes HTTP/1.1 by hand to echo the secret in its reason phrase
(which no ASGI server can send).
"""

from __future__ import annotations

import base64
import gzip
import html
import http.client
import json
import socketserver
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import anyio.to_thread
import httpx
import uvicorn
import yaml
from starlette.types import ASGIApp, Receive, Scope, Send

from support import INTENT, make_runtime, mint
from tether.core.audit import AuditKind, AuditRecord
from tether.core.scope import Scope as GrantScope
from tether.core.secret import Secret
from tether.core.task import Intent
from tether.credentials.secrets import SecretStore
from tether.proxy import load_config, open_proxy
from tether.proxy.app import EgressProxy
from tether.runtime import Runtime
from tether.service.clock import ManualClock

LEGACY_SECRET = "legacy-standing-key-5f1e2d3c4b7a"  # what the agent must never see
VAULT_SECRET = "vault-api-key-9a8b7c6d5e4f3a2b"
#: A secret with the characters encoders change (+ / =), as base64-shaped API keys have.
MIRROR_SECRET = "mirror-key+4f3e/2d1c=0b9a8f7e"
#: A secret whose first character ends the redaction marker: redacting one echo followed by
#: the rest of another makes a new occurrence, which must be withheld rather than passed.
ODD_SECRET = "]odd-secret-0123"
CRM_QUERY = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}
CRM_UPDATE = {
    "tool": "crm.update",
    "actions": ["write"],
    "datasets": ["tickets"],
    "constraints": {"discount": {"max": 10}},
}
PAY = {"tool": "payments.transfer", "actions": ["spend"], "constraints": {"amount": {"max": 1000}}}
MAIL = {"tool": "email.send", "actions": ["send"]}


def _wrapped(data: bytes) -> bytes:
    text = base64.b64encode(data)
    return b"\\n".join(text[i : i + 16] for i in range(0, len(text), 16))


#: The forms ``/mirror/leak/in-body-<form>`` and ``in-header-<form>`` echo the credential in
#: (the credential of ``/mirror`` is ``Bearer <secret>``: base64 at each prefix puts the secret
#: at each of the three alignments). The JSON and HTML forms escape ``/`` and ``+`` as PHP's
#: ``json_encode`` and OWASP's encoder do.
ECHO_FORMS: dict[str, Any] = {
    "raw": lambda c: c,
    "percent": lambda c: quote(c, safe="").encode(),
    "percent-plus": lambda c: quote_plus(c, safe="").encode(),
    "json": lambda c: (
        json.dumps(c.decode())[1:-1].replace("/", "\\/").replace("+", "\\u002B").encode()
    ),
    "html": lambda c: html.escape(c.decode()).replace("/", "&#x2F;").replace("+", "&#43;").encode(),
    "base64-0": base64.b64encode,
    "base64-1": lambda c: base64.b64encode(b"x" + c),
    "base64-2": lambda c: base64.b64encode(b"xy" + c),
    "base64url": lambda c: base64.urlsafe_b64encode(c).rstrip(b"="),
    "hex": lambda c: c.hex().encode(),
    "HEX": lambda c: c.hex().upper().encode(),
    "wrapped": _wrapped,
}
#: The form each of those is named in the audit record.
ECHO_FORM_NAMES: dict[str, set[str]] = {
    "raw": {"raw"},
    "percent": {"raw+percent"},
    "percent-plus": {"raw+percent"},
    "json": {"raw+json"},
    "html": {"raw+html"},
    "base64-0": {"base64"},
    "base64-1": {"base64"},
    "base64-2": {"base64"},
    "base64url": {"base64url", "base64"},  # a fragment with neither -_ nor +/ reads as both
    "hex": {"hex"},
    "HEX": {"hex"},
    "wrapped": {"base64+wrapped"},
}
#: A body free of the secret, with bytes that are not UTF-8 and a near miss of the secret.
CLEAN_BODY = (
    b'{"near": "' + MIRROR_SECRET[:-1].encode() + b'"}\xff\xfe\x00 caf\xe9 %2B \\u002b &amp;'
)
#: A header value in Latin-1 (an older server's ``filename=``), passed byte for byte.
CLEAN_HEADER = b"attachment; filename=caf\xe9.txt"
#: A header value in UTF-8, with a character Latin-1 does not have, passed byte for byte.
UTF8_HEADER = "price in \u20ac".encode()


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (an OS-chosen port); yield its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)  # waiting for a socket to bind, not for tether's clock
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# -- the legacy service -------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as the legacy service received it."""

    method: str
    raw_path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    authorized: bool

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name.lower():
                return value
        return None

    def dump(self) -> str:
        return repr((self.method, self.raw_path, self.query, self.headers, self.body))


@dataclass
class LegacyService:
    """An ASGI legacy HTTP API that demands its standing secret."""

    seen: list[Seen] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    elsewhere: str = ""  # the other origin's base URL

    @property
    def hits(self) -> int:
        return len(self.seen)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan
            message = await receive()
            while message["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
                message = await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
        raw_path = scope["raw_path"].decode("ascii")
        query = scope["query_string"].decode("ascii")
        auth = dict(headers).get("authorization")
        if raw_path.startswith("/vault/"):
            authorized = parse_qs(query).get("api_key") == [VAULT_SECRET]
        elif raw_path.startswith("/mirror/"):
            given = parse_qs(query).get("api_key", [auth])[0]
            authorized = given in {MIRROR_SECRET, f"Bearer {MIRROR_SECRET}", ODD_SECRET}
        else:
            authorized = auth == f"Bearer {LEGACY_SECRET}"
        self.seen.append(Seen(scope["method"], raw_path, query, headers, body, authorized))
        if not authorized:
            await _send(send, 401, {"error": "the standing secret is required"})
            return
        if raw_path.startswith("/mirror/leak/"):
            target = raw_path + (f"?{query}" if query else "")
            await self._mirror(raw_path.rsplit("/", 1)[1], (given or "").encode(), target, send)
            return
        await self._answer(scope["method"], raw_path.split("/", 2)[2], body, auth, send)

    async def _mirror(self, how: str, credential: bytes, target: str, send: Send) -> None:
        """Hand the credential back as a careless service would, in the form ``how`` names."""
        plain = {"ok": True}
        form = how.removeprefix("in-body-").removeprefix("in-header-")
        if form != how and form in ECHO_FORMS:
            echoed = ECHO_FORMS[form](credential)
            if how.startswith("in-body-"):
                await _send_raw(send, 200, b'{"echo": "' + echoed + b'"}')
            else:
                await _send(send, 200, plain, [(b"x-echo", echoed), (b"x-plain", b"kept")])
            return
        match how:
            case "url":  # an error page quoting the request: the query as received, encoded
                await _send(send, 404, {"error": "no such page", "url": target})
            case "redirect":  # on to a login page that keeps the query
                location = f"/login?{target.partition('?')[2]}".encode()
                await _send(send, 302, plain, [(b"location", location)])
            case "redirect-next":  # the whole target, encoded again, as a next= parameter
                location = f"/login?next={quote(target, safe='')}".encode()
                await _send(send, 302, plain, [(b"location", location)])
            case "away":  # another origin; the proxy must not go there
                await _send(send, 302, plain, [(b"location", f"{self.elsewhere}/collect".encode())])
            case "here":  # the same origin
                await _send(send, 307, plain, [(b"location", b"/mirror/customers/c-1")])
            case "json":  # a debug field, escaped as PHP's json_encode writes it
                escaped = credential.replace(b"/", b"\\/").replace(b"+", b"\\u002b")
                await _send_raw(send, 200, b'{"seen": "' + escaped + b'"}')
            case "header-b64":
                await _send(send, 200, plain, [(b"x-echo", base64.b64encode(credential))])
            case "cookie":
                cookie = b"session=" + base64.urlsafe_b64encode(b"s:" + credential)
                await _send(send, 200, plain, [(b"set-cookie", cookie)])
            case "header-raw":
                await _send(send, 200, plain, [(b"x-debug-auth", credential)])
            case "hex":
                await _send(send, 200, {"trace": credential.hex()})
            case "gzip":  # the URL as received (the query secret percent-encoded), compressed
                data = gzip.compress(json.dumps({"url": target}).encode())
                await _send_raw(send, 200, data, [(b"content-encoding", b"gzip")])
            case "gzip-raw":
                data = gzip.compress(json.dumps({"seen": credential.decode()}).encode())
                await _send_raw(send, 200, data, [(b"content-encoding", b"gzip")])
            case "deflate":  # a bare RFC 1951 stream, as some servers send for deflate
                packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
                data = packer.compress(b"token=" + credential) + packer.flush()
                await _send_raw(send, 200, data, [(b"content-encoding", b"deflate")])
            case "gzip-clean":
                data = gzip.compress(json.dumps({"items": [1, 2, 3]}).encode())
                await _send_raw(send, 200, data, [(b"content-encoding", b"gzip")])
            case "gzip-truncated":
                data = gzip.compress(json.dumps({"items": list(range(200))}).encode())
                await _send_raw(send, 200, data[:-12], [(b"content-encoding", b"gzip")])
            case "gzip-bomb":  # 10 MB of zeros in about 10 KB
                data = gzip.compress(b"\0" * 10_000_000)
                await _send_raw(send, 200, data, [(b"content-encoding", b"gzip")])
            case "header-name":  # the credential (hex: a token) in a header's name
                name = b"x-" + credential.hex().encode()
                await _send(send, 200, plain, [(name, b"1"), (b"x-plain", b"kept")])
            case "clean":
                extra = [(b"content-disposition", CLEAN_HEADER), (b"x-plain", b"kept")]
                await _send_raw(send, 200, CLEAN_BODY, extra)
            case "utf8-header":  # UTF-8 beyond Latin-1 in a header value (RFC 9110 calls it opaque)
                await _send(send, 200, plain, [(b"x-note", UTF8_HEADER)])
            case "binary":  # not UTF-8 around a raw echo
                await _send_raw(send, 200, b"\xff\x00" + credential + b"\xfe\x01")
            case "no-content":  # no body; the echo in a header
                await _send_raw(send, 204, b"", [(b"x-echo", credential)])
            case "many":  # the credential three times, in two forms, in one body
                data = credential + b" " + credential.hex().encode() + b" " + credential
                await _send_raw(send, 200, data)
            case "big":  # past the size at which the proxy searches off its event loop
                pad = b"a" * 150_000
                await _send_raw(send, 200, credential + pad + quote(credential).encode() + pad)
            case "oversized":  # past max_response_bytes, the echo first
                await _send_raw(send, 200, credential + b"a" * 8000)
            case "twice":  # an echo, then the echo without its first character
                await _send_raw(send, 200, credential + credential[1:])
            case "br":  # a coding the proxy does not decode, so cannot check
                await _send_raw(
                    send, 200, b"\x1b\x03\x00\xf8opaque", [(b"content-encoding", b"br")]
                )
            case _:
                await _send(send, 404, {"error": "no such mirror"})

    async def _answer(
        self, method: str, path: str, body: bytes, auth: str | None, send: Send
    ) -> None:
        parts = path.split("/")
        match parts:
            case ["customers", "search"]:
                await _send(send, 200, {"matches": [], "search": True})
            case ["customers", customer]:
                items = [{"order": i} for i in range(3)]
                await _send(send, 200, {"id": customer, "items": items})
            case ["tickets", ticket] if method == "PUT":
                await _send(send, 200, {"updated": ticket})
            case ["payments"]:
                await _send(send, 201, {"transferred": json.loads(body)["amount"]})
            case ["mail"]:
                await _send(send, 202, {"queued": True})
            case ["echo"]:
                await _send(send, 200, {"you_sent": auth})
            case ["headers"]:
                extra = [
                    (b"x-debug-auth", b"present" if auth else b"absent"),
                    (b"authorization", b"Bearer upstream-issued-token"),
                    (b"set-cookie", b"session=standing-session; HttpOnly"),
                    (b"x-plain", b"kept"),
                ]
                await _send(send, 200, {"ok": True}, extra)
            case ["big"]:
                await _send(send, 200, {"blob": "x" * 10_000})
            case ["status", code]:
                await _send(send, int(code), {"status": int(code)})
            case ["slow"]:
                await anyio.to_thread.run_sync(self.release.wait, 10)
                await _send(send, 200, {"late": True})
            case _:
                await _send(send, 404, {"error": "no such legacy endpoint"})


class _ReasonHandler(socketserver.StreamRequestHandler):
    """Reads one request's head and answers ``401`` with the request's ``Authorization`` value,
    percent-encoded, in the reason phrase; then closes."""

    def handle(self) -> None:
        auth = b""
        while (line := self.rfile.readline(65536)) not in {b"\r\n", b"\n", b""}:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"authorization":
                auth = value.strip()
        reason = b"Unauthorized " + quote(auth).encode()
        self.wfile.write(
            b"HTTP/1.1 401 " + reason + b"\r\ncontent-type: application/json\r\n"
            b"content-length: 2\r\nconnection: close\r\n\r\n{}"
        )


@contextmanager
def reason_server() -> Iterator[str]:
    """A real HTTP/1.1 server on 127.0.0.1 whose reason phrase echoes the credential; its URL."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _ReasonHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


async def _send(
    send: Send, status: int, body: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _send_raw(send, status, json.dumps(body).encode(), extra)


async def _send_raw(
    send: Send, status: int, data: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": data})


# -- the proxy ----------------------------------------------------------------------------------


def proxy_config(legacy: str, down: str, reason: str = "http://127.0.0.1:9") -> dict[str, Any]:
    """Routes onto the legacy service (and the reason-phrase server), mapped to tools the example
    policies know."""
    crm = {"tool": "crm.query", "action": "read", "dataset": "crm"}
    secret = {"name": "legacy-key", "header": "Authorization", "scheme": "Bearer"}
    return {
        "upstreams": {
            "legacy": {
                "url": f"{legacy}/api",
                "secret": secret,
                "timeout_seconds": 5,
                "max_response_bytes": 4096,
                "forward_headers": ["X-Request-Id"],
            },
            "vault": {
                "url": f"{legacy}/vault",
                "secret": {"name": "vault-key", "query_param": "api_key"},
            },
            "down": {"url": down, "secret": secret, "timeout_seconds": 2},
            "mirror": {
                "url": f"{legacy}/mirror",
                "secret": {"name": "mirror-key", "header": "Authorization", "scheme": "Bearer"},
                "max_response_bytes": 4096,
            },
            "mirrorq": {
                "url": f"{legacy}/mirror",
                "secret": {"name": "mirror-key", "query_param": "api_key"},
                "max_response_bytes": 4096,
            },
            "slow": {"url": f"{legacy}/api", "secret": secret, "timeout_seconds": 0.5},
            "mirrorbig": {
                "url": f"{legacy}/mirror",
                "secret": {"name": "mirror-key", "header": "Authorization", "scheme": "Bearer"},
                "max_response_bytes": 1024 * 1024,
            },
            "odd": {
                "url": f"{legacy}/mirror",
                "secret": {"name": "odd-key", "header": "Authorization", "scheme": "none"},
            },
            "reason": {"url": reason, "secret": {"name": "mirror-key"}},
        },
        "routes": [
            {
                "upstream": "legacy",
                "method": "GET",
                "path": "/customers/{id}",
                **crm,
                "args": {
                    "customer": "path.id",
                    "limit": {"from": "query.limit", "type": "integer"},
                },
                "count_records": "body.items",
            },
            {
                "upstream": "legacy",
                "method": "GET",
                "path": "/customers/search",
                **crm,
                "allow_query": ["q"],
            },
            {
                "upstream": "legacy",
                "method": "PUT",
                "path": "/tickets/{id}",
                "tool": "crm.update",
                "action": "write",
                "dataset": "tickets",
                "args": {"ticket": "path.id", "discount": "body.discount"},
            },
            {
                "upstream": "legacy",
                "method": "POST",
                "path": "/payments",
                "tool": "payments.transfer",
                "action": "spend",
                "args": {"amount": {"from": "body.amount", "type": "integer"}},
            },
            {
                "upstream": "legacy",
                "method": "POST",
                "path": "/mail",
                "tool": "email.send",
                "action": "send",
                "args": {"to": "body.to"},
                "recipients_arg": "to",
            },
            {"upstream": "legacy", "method": "GET", "path": "/echo", **crm},
            {"upstream": "legacy", "method": "GET", "path": "/headers", **crm},
            {"upstream": "legacy", "method": "GET", "path": "/big", **crm},
            {"upstream": "legacy", "method": "GET", "path": "/status/{code}", **crm},
            {"upstream": "vault", "method": "GET", "path": "/customers/{id}", **crm},
            {"upstream": "down", "method": "GET", "path": "/customers/{id}", **crm},
            {"upstream": "slow", "method": "GET", "path": "/slow", **crm},
            {"upstream": "mirror", "method": "GET", "path": "/leak/{how}", **crm},
            {"upstream": "mirror", "method": "HEAD", "path": "/leak/{how}", **crm},
            {"upstream": "mirrorq", "method": "GET", "path": "/leak/{how}", **crm},
            {"upstream": "mirrorbig", "method": "GET", "path": "/leak/{how}", **crm},
            {"upstream": "odd", "method": "GET", "path": "/leak/{how}", **crm},
            {"upstream": "reason", "method": "GET", "path": "/anything", **crm},
        ],
    }


def closed_port_url() -> str:
    """A loopback URL nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass
class Agent:
    """An agent speaking plain HTTP to the proxy with its SVID and its task's grant."""

    client: httpx.Client
    svid: str
    grant: str
    task_id: str

    def headers(self, approval: str | None = None) -> dict[str, str]:
        out = {"Authorization": f"Bearer {self.svid}", "X-Tether-Grant": self.grant}
        if approval is not None:
            out["X-Tether-Approval"] = approval
        return out

    def call(
        self, method: str, path: str, *, approval: str | None = None, **kw: Any
    ) -> httpx.Response:
        headers = {**self.headers(approval), **kw.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kw)


@dataclass
class Env:
    runtime: Runtime
    clock: ManualClock
    data_dir: Path
    url: str
    client: httpx.Client
    legacy: LegacyService
    proxy: EgressProxy
    elsewhere: LegacyService

    def agent(self, name: str, *scopes: dict[str, object]) -> Agent:
        svid = mint(self.runtime, name, self.clock)
        workload = self.runtime.verifier.verify(svid, self.clock.now())
        opened = self.runtime.tasks.open_task(
            workload, Intent(**INTENT), [GrantScope.from_json(s) for s in scopes], 600
        )
        return Agent(self.client, svid, opened.token, opened.task.task_id)

    def records(self, kind: AuditKind | None = None) -> list[AuditRecord]:
        return [r for r in self.runtime.store.audit_records() if kind is None or r.kind is kind]

    def raw(self, method: str, raw_path: str, headers: dict[str, str]) -> tuple[int, Any]:
        """Send ``raw_path`` byte for byte (httpx would normalize it); the status and JSON."""
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        try:
            conn.request(method, raw_path, headers=headers)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(body)
        except ValueError:
            return response.status, body


@contextmanager
def running_proxy(root: Path, clock: ManualClock) -> Iterator[Env]:
    data_dir = root / "data"
    runtime = make_runtime(data_dir, clock)
    store = SecretStore(data_dir, environ={})
    store.set("legacy-key", Secret(LEGACY_SECRET))
    store.set("vault-key", Secret(VAULT_SECRET))
    store.set("mirror-key", Secret(MIRROR_SECRET))
    store.set("odd-key", Secret(ODD_SECRET))
    elsewhere = LegacyService()  # another origin: it only records what reaches it
    legacy = LegacyService()
    try:
        with (
            serve(elsewhere) as elsewhere_url,
            serve(legacy) as legacy_url,
            reason_server() as reason_url,
        ):
            legacy.elsewhere = elsewhere_url
            path = root / "proxy.yaml"
            config = proxy_config(legacy_url, closed_port_url(), reason_url)
            path.write_text(yaml.safe_dump(config))
            proxy, app = open_proxy(load_config(path), runtime)
            try:
                with serve(app) as url, httpx.Client(base_url=url, timeout=15) as client:
                    yield Env(runtime, clock, data_dir, url, client, legacy, proxy, elsewhere)
            finally:
                legacy.release.set()
    finally:
        runtime.close()
