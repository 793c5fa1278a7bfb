"""An upstream that hands the injected secret back, in any form an echo gives it and anywhere in its
answer (status line, any header, the body, compressed or not), gets its answer withheld: 502
``upstream_leaked_secret``, recorded with the form found and never the secret. Redirects are never
followed, and a redirect is checked like any answer."""

from __future__ import annotations

import json
from urllib.parse import quote

import anyio
import httpx
import pytest

from proxy.harness import CRM_QUERY, MIRROR_SECRET, Env
from tether.core.audit import AuditKind
from tether.core.errors import ConfigurationError
from tether.core.leaks import LeakScanner
from tether.core.secret import Secret
from tether.credentials.secrets import SecretStore
from tether.proxy import check_secrets
from tether.proxy.config import SecretRef, Upstream
from tether.proxy.forward import FailureKind, Forwarder, Outgoing, UpstreamFailure

SCANNER = LeakScanner([MIRROR_SECRET.encode()])


def _withheld(env: Env, path: str, *, code: str = "upstream_leaked_secret") -> dict[str, object]:
    """Call ``path`` through the proxy; check it was withheld with ``code``, that nothing the
    agent got holds the secret in any form, and return the audit record of the failure."""
    analyst = env.agent("analyst", CRM_QUERY)
    response = analyst.call("GET", path)
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert SCANNER.find(response.content) is None
    for name, value in response.headers.multi_items():
        assert SCANNER.find(f"{name}: {value}".encode()) is None
    [record] = [
        r.body
        for r in env.records(AuditKind.UPSTREAM_FAILED)
        if r.body.get("decision_id") == error["decision_id"]
    ]
    # The audit record names the form and the place, and holds no form of the secret.
    assert SCANNER.find(json.dumps(record).encode()) is None
    [effect] = [
        r.body
        for r in env.records(AuditKind.EFFECT)
        if r.body["decision_id"] == error["decision_id"]
    ]
    assert effect["status"] == "error" and effect["bytes"] == 0
    return record


def test_a_query_secret_echoed_percent_encoded_is_withheld(env: Env) -> None:
    record = _withheld(env, "/mirrorq/leak/url")
    assert env.legacy.seen[-1].authorized  # the upstream did get the secret, in the URL
    assert quote(MIRROR_SECRET, safe="") in env.legacy.seen[-1].query
    assert record["failure"] == "leaked_secret" and record["risks"] == ["ASI03"]
    assert (record["form"], record["where"]) == ("raw+percent", "body")


def test_a_redirect_whose_location_carries_the_encoded_secret_is_withheld(env: Env) -> None:
    record = _withheld(env, "/mirrorq/leak/redirect")
    assert (record["form"], record["where"]) == ("raw+percent", "header:location")
    # The whole URL encoded once more as a next= parameter (%252B …) is found as well.
    again = _withheld(env, "/mirrorq/leak/redirect-next")
    assert (again["form"], again["where"]) == ("raw+percent", "header:location")


def test_a_header_secret_echoed_json_escaped_is_withheld(env: Env) -> None:
    record = _withheld(env, "/mirror/leak/json")
    body_seen = env.legacy.seen[-1].header("authorization")
    assert body_seen == f"Bearer {MIRROR_SECRET}"
    assert (record["form"], record["where"]) == ("raw+json", "body")


def test_base64_in_a_response_header_is_withheld(env: Env) -> None:
    record = _withheld(env, "/mirror/leak/header-b64")
    assert (record["form"], record["where"]) == ("base64", "header:x-echo")
    # Set-Cookie is never passed on, but it is searched too: a leak there is still a leak.
    cookie = _withheld(env, "/mirror/leak/cookie")
    assert cookie["where"] == "header:set-cookie" and cookie["form"] in {"base64url", "base64"}


def test_a_raw_echo_in_any_header_withholds_the_answer(env: Env) -> None:
    record = _withheld(env, "/mirror/leak/header-raw")
    assert (record["form"], record["where"]) == ("raw", "header:x-debug-auth")


def test_hex_in_the_body_is_withheld(env: Env) -> None:
    record = _withheld(env, "/mirror/leak/hex")
    assert (record["form"], record["where"]) == ("hex", "body")


def test_a_compressed_body_is_decoded_before_it_is_searched(env: Env) -> None:
    gzipped = _withheld(env, "/mirrorq/leak/gzip")
    assert (gzipped["form"], gzipped["where"]) == ("raw+percent", "body")
    assert _withheld(env, "/mirror/leak/gzip-raw")["form"] == "raw"
    assert _withheld(env, "/mirror/leak/deflate")["form"] == "raw"
    # A clean compressed answer passes, decoded (the proxy answers in the clear).
    analyst = env.agent("analyst", CRM_QUERY)
    clean = analyst.call("GET", "/mirror/leak/gzip-clean")
    assert clean.status_code == 200, clean.text
    assert clean.json() == {"items": [1, 2, 3]}
    assert "content-encoding" not in clean.headers
    assert env.legacy.seen[-1].header("accept-encoding") == "gzip, deflate"


def test_a_body_that_cannot_be_decoded_within_bounds_is_withheld(env: Env) -> None:
    brotli = _withheld(env, "/mirror/leak/br", code="upstream_malformed")
    assert brotli["failure"] == "malformed" and "'br'" in str(brotli["message"])
    truncated = _withheld(env, "/mirror/leak/gzip-truncated", code="upstream_malformed")
    assert "ends before its stream does" in str(truncated["message"])
    bomb = _withheld(env, "/mirror/leak/gzip-bomb", code="upstream_response_too_large")
    assert bomb["failure"] == "response_too_large"
    # A coding the proxy cannot read on an answer without a body is no reason to withhold it.
    analyst = env.agent("analyst", CRM_QUERY)
    assert analyst.call("HEAD", "/mirror/leak/br").status_code == 200


def test_redirects_are_never_followed_to_another_origin_or_this_one(env: Env) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    hits = env.legacy.hits
    away = analyst.call("GET", "/mirrorq/leak/away")
    assert away.status_code == 302
    assert away.headers["location"] == f"{env.legacy.elsewhere}/collect"
    assert env.elsewhere.hits == 0  # nothing, and no secret, went to the other origin
    here = analyst.call("GET", "/mirror/leak/here")
    assert here.status_code == 307 and here.headers["location"] == "/mirror/customers/c-1"
    assert env.legacy.hits == hits + 2  # one request each; neither redirect was followed
    assert env.proxy._forwarder is not None
    assert env.proxy._forwarder._client.follow_redirects is False


def test_a_secret_too_short_to_search_for_is_refused(env: Env) -> None:
    upstreams = env.proxy.config.upstreams
    with pytest.raises(ConfigurationError) as caught:
        check_secrets(env.proxy.config, lambda _: Secret("s3cr3t"))
    assert "at least 8 bytes" in caught.value.message and "s3cr3t" not in caught.value.message
    assert "tether secrets set" in caught.value.message
    # Rotated to a short one while running: refused before anything is sent with it.
    store = SecretStore(env.data_dir, environ={})
    store.set("mirror-key", Secret("s3cr3t"))
    try:
        analyst = env.agent("analyst", CRM_QUERY)
        hits = env.legacy.hits
        response = analyst.call("GET", "/mirror/leak/hex")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "credential_unavailable"
        assert env.legacy.hits == hits
    finally:
        store.set("mirror-key", Secret(MIRROR_SECRET))
    assert upstreams["mirror"].secret is not None


def test_the_status_line_is_searched_too() -> None:
    """A reason phrase echoing the secret (uvicorn cannot send one, so a transport stands in
    for the upstream's socket)."""
    secret = Secret(MIRROR_SECRET)
    upstream = Upstream("odd", "http://127.0.0.1:9", SecretRef("mirror-key"))

    def answer(request: httpx.Request) -> httpx.Response:
        reason = b"Unauthorized " + quote(request.headers["authorization"]).encode()
        stream = httpx.ByteStream(b"{}")
        return httpx.Response(401, stream=stream, extensions={"reason_phrase": reason})

    async def send() -> UpstreamFailure:
        async with Forwarder.new_client(httpx.MockTransport(answer)) as client:
            forwarder = Forwarder(client)
            out = Outgoing("GET", "/x", {}, (), b"")
            with pytest.raises(UpstreamFailure) as caught:
                await forwarder.send(upstream, out, secret, forwarder.scanner("odd", secret))
            return caught.value

    failure = anyio.run(send)
    assert failure.kind is FailureKind.LEAKED_SECRET
    assert failure.detail == {"form": "raw+percent", "where": "status_line"}
