"""``tether serve``: the HTTP API, on the embedded SQLite store or, for several replicas, on one
PostgreSQL database (``--store-url`` / ``TETHER_DATABASE_URL``).

``--workers N`` runs N worker processes behind one listening socket (uvicorn's supervisor). The
parent checks the configuration once (keys, schema, policies), then hands it to the workers in
the environment (:data:`WORKER_OPTIONS_ENV`), and each worker builds its own runtime from it
(:func:`worker_app`). Workers share the store: SQLite in WAL mode with ``BEGIN IMMEDIATE``
writers, or PostgreSQL. Their metrics meet in a directory private to this replica (prometheus
multiprocess mode), so ``GET /metrics`` on any worker reports the whole replica.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Annotated

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE

from tether.api.app import create_app
from tether.api.front import add_front
from tether.cli.common import console, tether_errors
from tether.cli.config_schema import option
from tether.cli.server_options import (
    Shared,
    blank_is_none,
    with_shared_options,
)
from tether.core.errors import ConfigurationError, TetherError
from tether.core.identity import Workload
from tether.heap import HeapFreezer
from tether.identity import DEFAULT_MAX_LIFETIME_SECONDS
from tether.identity.dev_issuer import DEFAULT_AUDIENCE, DEFAULT_TRUST_DOMAIN
from tether.logs import configure_logging, flush_logs, get_logger
from tether.observability import Metrics, Observability
from tether.observability.http import install_observability
from tether.observability.tracing import Tracing, no_export, otlp_tracing
from tether.runtime import (
    REDIS_URL_ENV,
    WEBHOOK_SECRET_ENV,
    Runtime,
    RuntimeConfig,
    open_runtime,
    packaged_policies,
)
from tether.service.checkpoints import (
    DEFAULT_EVERY_RECORDS,
    DEFAULT_EVERY_SECONDS,
    CheckpointSchedule,
)

log = get_logger("tether.serve")


class Housekeeping:
    """Background work of a server: reap expired tasks, pick up changed policies, checkpoint
    the audit log (and a last checkpoint when it stops, so a clean stop leaves none unsigned),
    and keep the long-lived heap out of full collections (:mod:`tether.heap`)."""

    def __init__(self, runtime: Runtime, interval: float) -> None:
        self._runtime = runtime
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tether-housekeeping", daemon=True)
        self._heap = HeapFreezer()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.checkpoint(force=True)

    def checkpoint(self, *, force: bool = False) -> None:
        checkpoints = self._runtime.checkpoints
        if checkpoints is None:
            return
        try:
            made = checkpoints.tick(force=force)
        except TetherError as error:  # the message names the record, never a secret
            log.error("audit_checkpoint_failed", error=error.message, code=error.code.value)
        except Exception as error:  # keep the server alive; the next sweep retries
            log.error("audit_checkpoint_failed", error_type=type(error).__name__)
        else:
            if made is not None:
                log.info("audit_checkpoint", size=made.size, root=made.root)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._runtime.policy.check_for_changes()
                ended = self._runtime.tasks.reap_expired()
                if ended:
                    log.info("tasks_expired", count=ended)
                expired, released = self._runtime.leases.reap()
                if expired or released:
                    log.info("leases_reaped", expired=expired, released=released)
                self._runtime.forget_idle()
            except Exception as error:  # keep the server alive; the next sweep retries
                log.error("housekeeping_failed", error_type=type(error).__name__)
            self.checkpoint()
            self._heap.tick()


#: The serve options a worker process reads (JSON), set by the parent of ``--workers N``.
WORKER_OPTIONS_ENV = "TETHER_SERVE_WORKER_OPTIONS"
#: prometheus_client's multiprocess directory; read when it is first imported in a worker.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
STORE_URL_ENV = "TETHER_DATABASE_URL"


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """What a server needs besides the store URL (which travels as ``TETHER_DATABASE_URL``,
    never in these options, so it stays out of any listing of them)."""

    data_dir: str
    policy_dir: str
    trust_bundle: str | None = None
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    audience: str = DEFAULT_AUDIENCE
    oidc_issuer: str | None = None
    oidc_jwks: str | None = None
    approval_webhook: str | None = None
    approver_oidc_issuer: str | None = None
    approver_oidc_jwks: str | None = None
    public_url: str | None = None
    housekeeping_interval: float = 2.0
    log_level: str = "info"
    json_logs: bool = True
    metrics: bool = True
    otlp_endpoint: str | None = None
    fix_permissions: bool = False
    max_token_lifetime: int = DEFAULT_MAX_LIFETIME_SECONDS
    audit_witness: str | None = None
    checkpoint_records: int = DEFAULT_EVERY_RECORDS
    checkpoint_seconds: float = DEFAULT_EVERY_SECONDS
    #: Comma-separated SPIFFE IDs of the MCP gateways whose records /v1/gateway/events takes.
    gateway_ids: str | None = None
    #: The replica's audit partition (``--replica-id``); the workers of ``--workers N`` share it.
    replica_id: str | None = None

    def to_env(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_env(cls, text: str) -> ServeOptions:
        return cls(**json.loads(text))

    def runtime_config(self, environ: Mapping[str, str], store_url: str | None) -> RuntimeConfig:
        return RuntimeConfig(
            data_dir=Path(self.data_dir),
            policy_dir=Path(self.policy_dir),
            environ=dict(environ),
            trust_bundle=Path(self.trust_bundle) if self.trust_bundle else None,
            trust_domain=self.trust_domain,
            audience=self.audience,
            oidc_issuer=self.oidc_issuer,
            oidc_jwks=self.oidc_jwks,
            approval_webhook=self.approval_webhook,
            approver_oidc_issuer=self.approver_oidc_issuer,
            approver_oidc_jwks=self.approver_oidc_jwks,
            public_url=self.public_url,
            store_url=store_url,
            metrics=self.metrics,
            fix_permissions=self.fix_permissions,
            max_token_lifetime_seconds=self.max_token_lifetime,
            checkpoints=CheckpointSchedule(self.checkpoint_records, self.checkpoint_seconds),
            audit_witness=self.audit_witness,
            gateways=gateway_ids(self.gateway_ids),
            replica_id=self.replica_id,
        )

    def tracing(self, environ: Mapping[str, str]) -> Tracing:
        if not self.otlp_endpoint:
            return no_export()
        return otlp_tracing(self.otlp_endpoint, environ)


def gateway_ids(listed: str | None) -> frozenset[str]:
    """The MCP gateways' workload ids from ``--gateway-ids`` (comma-separated SPIFFE IDs)."""
    if not listed:
        return frozenset()
    ids = frozenset(part.strip() for part in listed.split(",") if part.strip())
    for one in ids:
        try:
            Workload.from_spiffe_id(one)
        except ValueError as error:
            raise ConfigurationError(
                f"--gateway-ids: {one!r} is not a SPIFFE ID: {error}"
            ) from None
    return ids


def build_app(runtime: Runtime) -> FastAPI:
    """The HTTP API of ``runtime`` with its operations side: the request middleware and, unless
    turned off, ``GET /metrics``."""
    app = create_app(runtime.api_deps)
    install_observability(
        app,
        runtime.observability,
        runtime.store,
        runtime.clock,
        front=partial(add_front, app),
        metrics=runtime.config.metrics,
    )
    return app


@with_shared_options
def serve(
    shared: Shared,
    host: Annotated[str, option("serve.host", "--host")] = "127.0.0.1",
    port: Annotated[int, option("serve.port", "--port")] = 8470,
    approval_webhook: Annotated[
        str | None, option("serve.approval_webhook", "--approval-webhook", show_default=False)
    ] = None,
    approval_webhook_secret: Annotated[
        str | None,
        option("serve.approval_webhook_secret", "--approval-webhook-secret", show_default=False),
    ] = None,
    approver_oidc_issuer: Annotated[
        str | None, option("serve.approver_oidc_issuer", "--approver-oidc-issuer")
    ] = None,
    approver_oidc_jwks: Annotated[
        str | None, option("serve.approver_oidc_jwks", "--approver-oidc-jwks")
    ] = None,
    public_url: Annotated[str | None, option("serve.public_url", "--public-url")] = None,
    housekeeping_interval: Annotated[
        float, option("serve.housekeeping_interval", "--housekeeping-interval")
    ] = 2.0,
    workers: Annotated[int, option("serve.workers", "--workers")] = 1,
    metrics: Annotated[bool, option("serve.metrics", "--metrics/--no-metrics")] = True,
    otlp_endpoint: Annotated[
        str | None, option("serve.otlp_endpoint", "--otlp-endpoint", show_default=False)
    ] = None,
    fix_permissions: Annotated[
        bool, option("serve.fix_permissions", "--fix-permissions", show_default=False)
    ] = False,
    audit_witness: Annotated[
        str | None, option("serve.audit_witness", "--audit-witness", show_default=False)
    ] = None,
    checkpoint_records: Annotated[
        int, option("serve.checkpoint_records", "--checkpoint-records")
    ] = DEFAULT_EVERY_RECORDS,
    checkpoint_seconds: Annotated[
        float, option("serve.checkpoint_seconds", "--checkpoint-seconds")
    ] = DEFAULT_EVERY_SECONDS,
    gateway_ids: Annotated[
        str | None, option("serve.gateway_ids", "--gateway-ids", show_default=False)
    ] = None,
) -> None:
    """Run the tether HTTP API (embedded SQLite unless --store-url; dev identity issuer unless
    production)."""
    otlp = blank_is_none(otlp_endpoint)
    options = ServeOptions(
        data_dir=str(shared.data_dir),
        policy_dir=str(shared.policies or packaged_policies()),
        trust_bundle=str(shared.trust_bundle) if shared.trust_bundle else None,
        trust_domain=shared.trust_domain,
        audience=shared.audience,
        oidc_issuer=blank_is_none(shared.oidc_issuer),
        oidc_jwks=blank_is_none(shared.oidc_jwks),
        approval_webhook=blank_is_none(approval_webhook),
        approver_oidc_issuer=blank_is_none(approver_oidc_issuer),
        approver_oidc_jwks=blank_is_none(approver_oidc_jwks),
        public_url=blank_is_none(public_url),
        housekeeping_interval=housekeeping_interval,
        log_level=shared.log_level.value,
        json_logs=shared.json_logs,
        metrics=metrics,
        otlp_endpoint=otlp,
        fix_permissions=fix_permissions,
        max_token_lifetime=shared.max_token_lifetime,
        audit_witness=blank_is_none(audit_witness),
        checkpoint_records=checkpoint_records,
        checkpoint_seconds=checkpoint_seconds,
        gateway_ids=blank_is_none(gateway_ids),
        replica_id=blank_is_none(shared.replica_id),
    )
    configure_logging(options.log_level, json=options.json_logs, capture_stdlib=True, queued=True)
    url = blank_is_none(shared.store_url)
    redis = blank_is_none(shared.redis_url)
    if redis is not None:  # read by open_runtime, and inherited by --workers processes
        os.environ[REDIS_URL_ENV] = redis
    if approval_webhook_secret is not None:  # the same way: never in the worker options
        os.environ[WEBHOOK_SECRET_ENV] = approval_webhook_secret
    if workers > 1:
        _serve_workers(options, url, host, port, workers)
        return
    with tether_errors():
        tracing = options.tracing(os.environ)
        runtime = open_runtime(
            options.runtime_config(os.environ, url),
            observability=Observability(tracer=tracing.tracer),
        )
    app = build_app(runtime)
    lifecycle = Lifecycle(runtime, tracing, options.housekeeping_interval)
    lifecycle.attach(app)
    _banner(runtime, host, port, 1)
    try:
        uvicorn.run(
            app, host=host, port=port, log_level="warning", log_config=None, access_log=False
        )
    finally:
        lifecycle.stop()  # when uvicorn returned without running the app's shutdown


def _banner(runtime: Runtime, host: str, port: int, workers: int) -> None:
    config = runtime.config
    console.print(
        f"tether listening on http://{host}:{port}  policies {config.policy_dir} "
        f"(revision {runtime.policy.revision[:12]})  data {config.data_dir}  "
        f"store {runtime.store.backend}" + (f"  workers {workers}" if workers > 1 else ""),
        highlight=False,
    )


def _serve_workers(
    options: ServeOptions, store_url: str | None, host: str, port: int, workers: int
) -> None:
    """Check the configuration here once, then run ``workers`` processes of :func:`worker_app`."""
    with tether_errors():
        options.tracing(os.environ).shutdown()  # an endpoint the workers could not use fails here
        runtime = open_runtime(options.runtime_config(os.environ, store_url))
        try:
            _banner(runtime, host, port, workers)
        finally:
            runtime.close()
    # The workers inherit this environment when uvicorn spawns them.
    os.environ[WORKER_OPTIONS_ENV] = options.to_env()
    if store_url is not None:
        os.environ[STORE_URL_ENV] = store_url
    metrics_dir = None
    if options.metrics:
        # Private to this replica and emptied by its exit: replicas may share a data directory,
        # and multiprocess files must not outlive the processes that wrote them.
        metrics_dir = tempfile.mkdtemp(prefix="tether-metrics-")
        os.environ[METRICS_DIR_ENV] = metrics_dir
    else:
        os.environ.pop(METRICS_DIR_ENV, None)
    try:
        uvicorn.run(
            f"{__name__}:worker_app",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level="warning",
            log_config=None,
            access_log=False,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def worker_app() -> FastAPI:
    """The app of one worker of ``tether serve --workers N`` (uvicorn calls it in each worker
    process), built from the options the parent put in the environment."""
    options = ServeOptions.from_env(os.environ[WORKER_OPTIONS_ENV])
    configure_logging(options.log_level, json=options.json_logs, capture_stdlib=True, queued=True)
    metrics_dir = os.environ.get(METRICS_DIR_ENV)
    try:
        tracing = options.tracing(os.environ)
        observability = Observability(
            Metrics(multiprocess_dir=Path(metrics_dir) if metrics_dir else None), tracing.tracer
        )
        config = options.runtime_config(os.environ, blank_is_none(os.environ.get(STORE_URL_ENV)))
        # Workers serve at once: each appends to an audit partition of its own.
        runtime = open_runtime(replace(config, own_partition=True), observability=observability)
    except TetherError as error:
        # A worker that cannot start would fail the same way on every restart: stop them all.
        log.error("worker_failed", code=error.code.value, message=error.message)
        sys.exit(STARTUP_FAILURE)
    app = build_app(runtime)
    Lifecycle(runtime, tracing, options.housekeeping_interval).attach(app)
    return app


class Lifecycle:
    """What a server process runs beside its app: housekeeping from the app's startup; at its
    shutdown, housekeeping stopped, the store closed and the last spans flushed.

    Shutdown must happen inside uvicorn's: after a graceful stop on SIGTERM, uvicorn raises the
    signal again, which ends the process before ``uvicorn.run`` returns to its caller.
    """

    def __init__(self, runtime: Runtime, tracing: Tracing, interval: float) -> None:
        self._runtime = runtime
        self._tracing = tracing
        self._chores = Housekeeping(runtime, interval)
        self._started = False
        self._stopped = False
        self._lock = threading.Lock()

    def attach(self, app: FastAPI) -> None:
        served = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(running: FastAPI) -> AsyncIterator[None]:
            self.start()
            try:
                async with served(running):
                    yield
            finally:
                self.stop()

        app.router.lifespan_context = lifespan

    def start(self) -> None:
        with self._lock:
            if self._started or self._stopped:
                return
            self._started = True
        self._chores.start()

    def stop(self) -> None:
        """Idempotent: the app's shutdown and the caller's ``finally`` may both call it."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            started = self._started
        if started:
            self._chores.stop()
        self._runtime.close()
        self._tracing.shutdown()
        flush_logs()
