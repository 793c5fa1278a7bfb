"""Wiring the proxy to a :class:`~tether.runtime.Runtime`: its verifier, authorizer, effects, store
and the secret store in the runtime's data directory (the same files ``tether secrets``
manages)."""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx
from starlette.types import ASGIApp

from tether.core.errors import ConfigurationError, NotFound
from tether.core.ids import IdFactory
from tether.core.redact import Redactor
from tether.core.secret import Secret
from tether.credentials.secrets import SecretStore
from tether.observability.http import METRICS_PATH
from tether.proxy.app import EgressProxy, ProxyDeps, proxy_app
from tether.proxy.config import ProxyConfig
from tether.runtime import Runtime

#: The upstream name ``GET /metrics`` would shadow.
METRICS_UPSTREAM = METRICS_PATH.strip("/")


def deps_from_runtime(
    runtime: Runtime, *, random_bytes: Callable[[int], bytes] = os.urandom
) -> ProxyDeps:
    secrets = SecretStore(runtime.config.data_dir, runtime.config.environ)
    metrics = runtime.observability.metrics if runtime.config.metrics else None
    if metrics is not None:
        metrics.watch_store(runtime.store, runtime.clock)
    return ProxyDeps(
        verifier=runtime.verifier,
        authorizer=runtime.authorizer,
        effects=runtime.effects,
        store=runtime.store,
        clock=runtime.clock,
        settings=runtime.config.settings,
        secrets=secrets.get,
        ids=IdFactory(random_bytes),
        provenance=runtime.provenance,
        metrics=metrics,
    )


def check_secrets(config: ProxyConfig, secrets: Callable[[str], Secret]) -> None:
    """Refuse to start when an upstream's secret is missing, unreadable, or too short for its
    echo to be told from ordinary text (named, never shown)."""
    for upstream in config.upstreams.values():
        if upstream.secret is None:
            continue
        name = upstream.secret.name
        try:
            value = secrets(name)
        except NotFound:
            raise ConfigurationError(
                f"upstream {upstream.name!r} needs the secret {name!r}; store it "
                f"with `tether secrets set {name}` (the value on standard input)"
            ) from None
        try:
            Redactor([(name, value.reveal().encode())])  # what each answer is searched with
        except ConfigurationError as error:
            raise ConfigurationError(f"upstream {upstream.name!r}: {error.message}") from None


def check_metrics_path(config: ProxyConfig, deps: ProxyDeps) -> None:
    """Refuse an upstream named ``metrics`` while ``GET /metrics`` is served: its routes would
    be shadowed by the scrape."""
    if deps.metrics is not None and METRICS_UPSTREAM in config.upstreams:
        raise ConfigurationError(
            f"upstream {METRICS_UPSTREAM!r} would be shadowed by the proxy's GET /metrics; "
            "rename the upstream, or turn metrics off (--no-metrics)"
        )


def open_proxy(
    config: ProxyConfig,
    runtime: Runtime,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[EgressProxy, ASGIApp]:
    """The proxy over ``runtime`` and the ASGI app serving it; every secret checked first."""
    deps = deps_from_runtime(runtime)
    check_metrics_path(config, deps)
    check_secrets(config, deps.secrets)
    proxy = EgressProxy(config, deps, transport=transport)
    return proxy, proxy_app(proxy)
