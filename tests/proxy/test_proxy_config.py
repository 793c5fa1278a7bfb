"""The proxy config is validated strictly (errors name their path); path normalization, route
matching and argument mapping behave as ``tether.proxy.routes`` says; every code has a status."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tether.core.errors import ConfigurationError, ErrorCode
from tether.core.scope import ActionKind
from tether.proxy import PROXY_STATUS, ProxyCode, load_config, parse_config
from tether.proxy.config import ArgSourceKind, ArgType
from tether.proxy.errors import Refused
from tether.proxy.routes import RouteTable, call_args, count_records, parse_target

GOOD: dict[str, Any] = {
    "upstreams": {
        "legacy": {
            "url": "https://legacy.internal/api/",
            "secret": {"name": "legacy-key"},
        }
    },
    "routes": [
        {
            "upstream": "legacy",
            "method": "get",
            "path": "/customers/{id}",
            "tool": "legacy.customers.read",
            "action": "read",
            "dataset": "crm",
            "args": {"id": "path.id", "limit": {"from": "query.limit", "type": "integer"}},
            "count_records": "body.items",
        },
        {
            "upstream": "legacy",
            "method": "POST",
            "path": "/customers/{id}/credit",
            "tool": "legacy.customers.credit",
            "action": "spend",
            "args": {"id": "path.id", "amount": "body.credit.amount"},
        },
    ],
}


def with_change(path: list[str | int], value: object) -> dict[str, Any]:
    config = copy.deepcopy(GOOD)
    target: Any = config
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return config


def test_a_good_config_parses_with_restrictive_defaults() -> None:
    config = parse_config(GOOD)
    upstream = config.upstreams["legacy"]
    assert upstream.url == "https://legacy.internal/api"
    assert upstream.secret is not None
    assert (upstream.secret.header, upstream.secret.scheme) == ("Authorization", "Bearer")
    assert upstream.timeout_seconds == 30 and upstream.max_request_bytes == 1024 * 1024
    assert "authorization" not in upstream.forward_headers
    read, credit = config.routes
    assert (read.method, read.action, read.count_records) == ("GET", ActionKind.READ, ("items",))
    assert dict(read.args)["limit"].type is ArgType.INTEGER
    assert dict(credit.args)["amount"].kind is ArgSourceKind.BODY
    assert dict(credit.args)["amount"].path == ("credit", "amount")
    assert read.query_names == {"limit"} and credit.reads_body


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["upstreams", "legacy", "urll"], "x", "upstreams.legacy.urll: unknown key"),
        (["upstreams", "legacy", "url"], "ftp://x", "upstreams.legacy.url: must be an http"),
        (["upstreams", "legacy", "url"], "https://u:p@x", "must not carry credentials"),
        (["upstreams", "legacy", "secret", "nam"], "x", "upstreams.legacy.secret.nam: unknown"),
        (["upstreams", "legacy", "secret", "header"], "Host", "upstreams.legacy.secret.header"),
        (
            ["upstreams", "legacy", "secret"],
            {"name": "k", "header": "X-Key", "query_param": "key"},
            "either query_param or header/scheme",
        ),
        (["upstreams", "legacy", "timeout_seconds"], 0, "upstreams.legacy.timeout_seconds"),
        (["upstreams", "legacy", "forward_headers"], ["Authorization"], "forward_headers"),
        (["upstreams", "legacy", "forward_headers"], ["X-Tether-Grant"], "forward_headers"),
        (["routes", 0, "verb"], "GET", "routes[0].verb: unknown key"),
        (["routes", 0, "method"], "TRACE", "routes[0].method: must be one of"),
        (["routes", 0, "upstream"], "other", "routes[0].upstream: no upstream named 'other'"),
        (["routes", 0, "action"], "admin", "routes[0].action"),
        (["routes", 0, "path"], "/a/../b", "routes[0].path"),
        (["routes", 0, "path"], "/a/x{id}", "routes[0].path"),
        (["routes", 0, "path"], "customers", "routes[0].path: must start with '/'"),
        (["routes", 0, "args", "id"], "path.nope", "routes[0].args.id: the route path"),
        (["routes", 0, "args", "id"], "header.x", "routes[0].args.id: must be path"),
        (["routes", 0, "args", "limit", "type"], "float", "routes[0].args.limit.type"),
        (["routes", 0, "args", "limit", "form"], "x", "routes[0].args.limit.form: unknown"),
        (["routes", 0, "count_records"], "items", "routes[0].count_records"),
        (["routes", 0, "recipients_arg"], "to", "routes[0].recipients_arg"),
        (["routes", 1, "path"], "/customers/{cid}", "routes[1]"),
        (["routs"], [], "proxy config: routs: unknown key; did you mean 'routes'?"),
    ],
)
def test_bad_configs_name_the_path(path: list[str | int], value: object, message: str) -> None:
    config = with_change(path, value)
    if path == ["routes", 1, "path"]:  # same method and shape as another route: ambiguous
        config["routes"][1]["method"] = "GET"
        config["routes"][1]["args"] = {}
    with pytest.raises(ConfigurationError) as caught:
        parse_config(config)
    assert message in caught.value.message


def test_a_config_needs_routes_and_the_secret_parameter_is_not_the_agents() -> None:
    with pytest.raises(ConfigurationError, match="routes: must not be empty"):
        parse_config({"upstreams": GOOD["upstreams"], "routes": []})
    vault = with_change(["upstreams", "legacy", "secret"], {"name": "k", "query_param": "limit"})
    with pytest.raises(ConfigurationError, match="carries the secret"):
        parse_config(vault)


def test_load_config_reports_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"missing\.yaml: cannot be read \(No such"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("upstreams: [\n")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_config(bad)


# -- routes -------------------------------------------------------------------------------------


def test_targets_are_decoded_segment_by_segment() -> None:
    target = parse_target(b"/legacy/customers/caf%C3%A9/")
    assert target.upstream == "legacy" and target.segments == ("customers", "café", "")
    for raw in (b"/", b"//x", b"/legacy/a%2fb", b"/legacy/%2e", b"/legacy/..%3b/x"):
        with pytest.raises(Refused) as caught:
            parse_target(raw)
        assert caught.value.code is ProxyCode.INVALID_PATH, raw


def test_literals_beat_parameters_whatever_the_config_order() -> None:
    config = parse_config(
        {
            "upstreams": GOOD["upstreams"],
            "routes": [
                {"upstream": "legacy", "method": "GET", "path": p, "tool": t, "action": "read"}
                for p, t in [("/a/{x}/c", "param"), ("/a/b/{y}", "literal"), ("/a/b/c", "exact")]
            ],
        }
    )
    table = RouteTable(config.routes)

    def tool(path: bytes) -> str | None:
        match = table.match("GET", parse_target(b"/legacy" + path))
        return match.route.tool if match else None

    assert tool(b"/a/b/c") == "exact"
    assert tool(b"/a/b/d") == "literal"
    assert tool(b"/a/z/c") == "param"
    assert tool(b"/a/z/d") is None
    assert table.match("POST", parse_target(b"/legacy/a/b/c")) is None


def test_arguments_are_mapped_and_typed() -> None:
    config = parse_config(GOOD)
    table = RouteTable(config.routes)
    match = table.match("POST", parse_target(b"/legacy/customers/c-1/credit"))
    assert match is not None
    assert call_args(match, {}, {"credit": {"amount": 40}}) == {"id": "c-1", "amount": 40}
    assert call_args(match, {}, {"credit": 5}) == {"id": "c-1"}  # absent: left out
    read = table.match("GET", parse_target(b"/legacy/customers/c-1"))
    assert read is not None
    assert call_args(read, {"limit": "20"}, None) == {"id": "c-1", "limit": 20}
    with pytest.raises(Refused):
        call_args(read, {"limit": "1e3"}, None)


def test_records_are_counted_in_the_response_body() -> None:
    assert count_records(b'{"items": [1, 2]}', ("items",)) == 2
    assert count_records(b"[1, 2, 3]", ()) == 3
    assert count_records(b'{"items": 7}', ("items",)) is None
    assert count_records(b"not json", ()) is None


def test_every_proxy_code_has_a_status() -> None:
    assert set(PROXY_STATUS) == set(ProxyCode)
    for code, status in PROXY_STATUS.items():
        assert 400 <= status < 600, code
    # Codes the proxy shares with tether's error tree mean the same thing.
    assert ProxyCode.PAYLOAD_TOO_LARGE.value == ErrorCode.PAYLOAD_TOO_LARGE.value
    assert ProxyCode.UPSTREAM_LEAKED_SECRET.value == ErrorCode.UPSTREAM_LEAKED_SECRET.value
    assert PROXY_STATUS[ProxyCode.UPSTREAM_LEAKED_SECRET] == 502
