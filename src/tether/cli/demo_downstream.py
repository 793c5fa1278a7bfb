"""The demo's downstream HTTP API: a payments service that accepts only tether's scoped tokens.

It does what a real API behind tether does: verify the token's signature with tether's published
JWKS (algorithm pinned, audience its own, not expired), check the operation it serves is in the
token's scope, and ask tether (introspection) whether the lease is still live, so a token is
refused the moment its task ends rather than when it expires.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tether.core.errors import Unauthenticated
from tether.credentials.jwt_lease import verify_scoped_jwt
from tether.service.clock import SystemClock

AUDIENCE = "https://payments.example"
OPERATION = "payments.transfer:spend"


@contextmanager
def payments_api(tether_url: str, own_svid: Callable[[], str]) -> Iterator[str]:
    """Serve the payments API on 127.0.0.1 (an OS-chosen port); yield its URL."""
    clock = SystemClock()

    def check(token: str) -> tuple[int, dict[str, Any]]:
        with httpx.Client(base_url=tether_url, timeout=10) as tether:
            jwks = tether.get("/.well-known/jwks.json").json()
            try:
                claims = verify_scoped_jwt(token, jwks, AUDIENCE, clock.now())
            except Unauthenticated as error:
                return 401, {"error": f"token refused: {error.message}"}
            if not claims.allows(OPERATION):
                return 403, {"error": f"token does not allow {OPERATION}"}
            live = tether.post(
                "/v1/leases/introspect",
                json={"token": token, "audience": AUDIENCE},
                headers={"Authorization": f"Bearer {own_svid()}"},
            ).json()
        if not live.get("active"):
            return 401, {"error": f"lease {claims.jti} has ended (tether introspection)"}
        return 200, {"refunded": True, "lease_id": claims.jti, "agent": claims.subject}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            header = self.headers.get("Authorization", "")
            token = header[7:] if header.startswith("Bearer ") else ""
            status, body = check(token) if token else (401, {"error": "no bearer token"})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: the demo prints what matters

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
