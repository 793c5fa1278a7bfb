"""What the proxy cannot rewrite is withheld: a compressed body holding the injected secret, one that
cannot be decoded within bounds, one past the size bound, one still holding the secret once
redacted. 502 with a stable code, recorded with the form found and never the secret. Redirects are
never followed. (Everything the proxy can rewrite is redacted instead: test_proxy_redaction.)"""

from __future__ import annotations

import json

import pytest

from proxy.harness import CRM_QUERY, MIRROR_SECRET, ODD_SECRET, Env
from tether.core.audit import AuditKind
from tether.core.errors import ConfigurationError
from tether.core.redact import Redactor
from tether.core.secret import Secret
from tether.credentials.secrets import SecretStore
from tether.proxy import check_secrets

SCANNER = Redactor([("mirror-key", MIRROR_SECRET.encode()), ("odd-key", ODD_SECRET.encode())])


def _withheld(env: Env, path: str, *, code: str = "upstream_leaked_secret") -> dict[str, object]:
    """Call ``path`` through the proxy; check it was withheld with ``code``, that nothing the
    agent got holds the secret in any form, and return the audit record of the failure."""
    analyst = env.agent("analyst", CRM_QUERY)
    response = analyst.call("GET", path)
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert not SCANNER.holds(response.content)
    for name, value in response.headers.multi_items():
        assert not SCANNER.holds(f"{name}: {value}".encode())
    [record] = [
        r.body
        for r in env.records(AuditKind.UPSTREAM_FAILED)
        if r.body.get("decision_id") == error["decision_id"]
    ]
    # The audit record names the form and the place, and holds no form of the secret.
    assert not SCANNER.holds(json.dumps(record).encode())
    [effect] = [
        r.body
        for r in env.records(AuditKind.EFFECT)
        if r.body["decision_id"] == error["decision_id"]
    ]
    assert effect["status"] == "error" and effect["bytes"] == 0
    # Nothing was redacted from an answer that never went out.
    assert not [
        r
        for r in env.records(AuditKind.SECRET_REDACTED)
        if r.body["decision_id"] == error["decision_id"]
    ]
    return record


def test_a_compressed_body_holding_the_secret_is_withheld(env: Env) -> None:
    """Decoded to be searched, but never rewritten: withheld, as it always was."""
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


def test_a_body_past_the_size_bound_is_withheld_unsearched(env: Env) -> None:
    """The body is read whole within max_response_bytes or not at all; one past it is never
    passed, whatever it holds."""
    record = _withheld(env, "/mirror/leak/oversized", code="upstream_response_too_large")
    assert record["failure"] == "response_too_large" and "4096" in str(record["message"])


def test_a_body_still_holding_the_secret_once_redacted_is_withheld(env: Env) -> None:
    """The marker ends in ``]``, the odd secret starts with it: redacting the first echo leaves
    a second whole one, so the redactor refuses and the answer is withheld."""
    record = _withheld(env, "/odd/leak/twice")
    assert (record["failure"], record["where"], record["form"]) == ("leaked_secret", "body", "raw")
    assert record["risks"] == ["ASI03"]


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
