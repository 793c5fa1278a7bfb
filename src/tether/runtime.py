"""The one place that wires tether together: data directory, keys, store, policy, identity and
the use cases. Entry points (``tether serve``, the CLI, tests) build a :class:`Runtime` here.

Data directory layout (created 0700 on first start, files 0600; a directory open to other users
is refused, see :mod:`tether.datadir`):

    tether.db                SQLite store (WAL); absent when ``store_url`` names another database
    keys/grant-signing.pem   ES256 key signing grant tokens
    keys/dev-issuer.pem      ES256 key of the development SVID issuer (embedded default only)
    keys/audit-hmac.key      32-byte key for HMAC'ing sensitive values in audit records
    keys/lease-signing.pem   ES256 key signing scoped lease tokens (published as a JWKS)
    keys/ui-session.key      32-byte key deriving the approval page's CSRF tokens from sessions
    keys/audit-checkpoint.pem  Ed25519 key signing audit checkpoints (never in the database)
    keys/provenance-hmac.key   32-byte master key of the fingerprints argument provenance keeps
                             of the values a task saw (never in the database; each task's key
                             is derived from it and a secret wiped when the task ends)

Several replicas (``store_url`` naming one PostgreSQL database) share the data directory: the same
directory on a shared volume, or identical copies of it made before they start. They must: a grant
signed with one replica's key is refused by another (``grant_invalid``), and an approval's call is
bound by an HMAC under the audit key, so with two audit keys an approval raised on one replica never
matches on another. Key files are created without clobbering, so replicas that first start together
on an empty shared directory still end up with one key each.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tether.core.audit import LEGACY_PARTITION, check_partition
from tether.core.errors import ConfigurationError, TetherError
from tether.core.ids import IdFactory
from tether.core.lease import Lease
from tether.credentials.downstream import load_downstreams
from tether.credentials.jwt_lease import ScopedJwtIssuer
from tether.datadir import (
    create_private_file,
    hold_first_free,
    make_private_dir,
    prepare_data_dir,
)
from tether.identity import (
    DEFAULT_MAX_LIFETIME_SECONDS,
    CompositeVerifier,
    DevIssuer,
    GrantTokenSigner,
    JwtSvidVerifier,
    OidcVerifier,
    SigningKey,
    load_jwks_file,
)
from tether.identity.approvers import CompositeApprovers, OidcApprovers, StaticApprovers
from tether.identity.audit_key import CheckpointKey
from tether.identity.dev_issuer import DEFAULT_AUDIENCE as DEFAULT_AUDIENCE
from tether.identity.dev_issuer import DEFAULT_TRUST_DOMAIN as DEFAULT_TRUST_DOMAIN
from tether.identity.dev_issuer import open_dev_issuer
from tether.logs import get_logger
from tether.notify import WebhookNotifier
from tether.notify.witness import witness_for
from tether.observability import Observability
from tether.observability.services import (
    DecisionTelemetry,
    ObservedEffectService,
    ObservedTaskService,
)
from tether.policy import CedarPolicyEngine
from tether.policy.flows import load_egress, load_read_floors, load_workflows
from tether.service.agents import AgentService
from tether.service.anomaly import AnomalySignal
from tether.service.approvals import ApprovalNotifier, ApprovalService, NoNotifier
from tether.service.authorize import Authorizer
from tether.service.breakglass import BreakGlassService, BreakGlassSettings
from tether.service.checkpoints import Checkpointer, CheckpointSchedule, Witness
from tether.service.clock import SystemClock
from tether.service.effects import EffectService
from tether.service.flows import Flows, FlowSettings
from tether.service.grant_reads import GrantReader
from tether.service.leases import LeaseService
from tether.service.ports import Clock, Store, WorkloadVerifier
from tether.service.provenance import ProvenanceService
from tether.service.recording import Recorder
from tether.service.settings import ServiceSettings
from tether.service.tasks import TaskService
from tether.store import SqlStore
from tether.store.breakglass import SqlBreakGlassStore
from tether.store.checkpoints import SqlCheckpointStore
from tether.store.leases import SqlLeaseStore
from tether.store.observations import SqlObservationStore

if TYPE_CHECKING:
    from tether.api.app import ApiDeps
    from tether.cache import CachedStore


def packaged_policies() -> Path:
    """The example policies shipped with tether: the embedded default."""
    return Path(__file__).parent / "examples" / "policies"


@dataclass(frozen=True)
class RuntimeConfig:
    data_dir: Path
    policy_dir: Path = field(default_factory=packaged_policies)
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    audience: str = DEFAULT_AUDIENCE
    #: Kept out of repr: it may hold database and Redis URLs with their passwords.
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)
    settings: ServiceSettings = field(default_factory=ServiceSettings)
    #: Production identity: a SPIFFE trust bundle (JWKS) and/or OIDC issuers.
    trust_bundle: Path | None = None
    #: Longest lifetime (``exp - iat``) a workload's SVID or OIDC token may declare.
    max_token_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS
    oidc_issuer: str | None = None
    oidc_jwks: str | None = None
    #: Where to announce pending approvals (a chat bridge), and the page approvers open.
    approval_webhook: str | None = None
    #: The Standard Webhooks secret (``whsec_…``) signing that webhook; ``None`` reads
    #: ``TETHER_APPROVAL_WEBHOOK_SECRET`` from ``environ``. Required with a webhook. Not in repr.
    approval_webhook_secret: str | None = field(default=None, repr=False)
    public_url: str | None = None
    breakglass: BreakGlassSettings = field(default_factory=BreakGlassSettings)
    #: Approvers may sign in with this OIDC issuer (ID tokens for audience tether-approver).
    approver_oidc_issuer: str | None = None
    approver_oidc_jwks: str | None = None
    #: The store's database URL (``postgresql://...`` for several replicas); ``None`` means SQLite
    #: in the data directory. Kept out of ``repr``: it may carry a password.
    store_url: str | None = field(default=None, repr=False)
    #: Redis for the grant cache's revocation fan-out (``redis://host:6379/0``); ``None`` reads
    #: ``TETHER_REDIS_URL`` from ``environ``, and without either there is no grant cache at all
    #: (see README "Running several replicas"). Kept out of ``repr``: it may carry a password.
    redis_url: str | None = field(default=None, repr=False)
    #: This replica's name and audit partition (``--replica-id``, ``TETHER_REPLICA_ID``,
    #: ``store.replica_id``); ``None``: :func:`replica_partition`'s default.
    replica_id: str | None = None
    #: Append to a partition of this process's own under ``replica_id`` (``<id>``, ``<id>.1``,
    #: ...: see :func:`open_store`), as every worker of ``tether serve --workers N`` does.
    own_partition: bool = False
    #: Serve ``GET /metrics`` (Prometheus text, no credentials needed); ``tether serve
    #: --no-metrics`` turns it off.
    metrics: bool = True
    #: Tighten a data directory open to other users instead of refusing it (``tether serve
    #: --fix-permissions``; see :mod:`tether.datadir`).
    fix_permissions: bool = False
    #: When the audit log is checkpointed (every N records or T seconds), and where else each
    #: checkpoint goes: a file path or an http(s) URL (a witness), or nowhere but the store.
    checkpoints: CheckpointSchedule = field(default_factory=CheckpointSchedule)
    audit_witness: str | None = None
    #: The MCP gateways (SPIFFE IDs) whose own audit records the API accepts
    #: (``POST /v1/gateway/events``, ``tether serve --gateway-ids``).
    gateways: frozenset[str] = frozenset()

    @property
    def production(self) -> bool:
        return self.environ.get("TETHER_ENV", "").strip().lower() == "production"


def _read_secret(path: Path) -> bytes:
    data = path.read_bytes()
    if len(data) < 32:
        raise ConfigurationError(f"{path} is shorter than 32 bytes; delete it to regenerate")
    return data


def _load_or_create_secret(path: Path) -> bytes:
    """The key at ``path``, or a new one written there (0600). Two processes creating it at
    once (replicas first starting on a shared data directory) end up with one key: the loser
    of the race reads the winner's file instead of replacing it."""
    if path.exists():
        return _read_secret(path)
    make_private_dir(path.parent)
    data = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # fails if the key appeared meanwhile: never clobber it
        except FileExistsError:
            return _read_secret(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return data


def audit_mac(key: bytes) -> Callable[[bytes], str]:
    def mac(value: bytes) -> str:
        return hmac.new(key, value, hashlib.sha256).hexdigest()

    return mac


def open_store(
    data_dir: Path,
    store_url: str | None = None,
    *,
    fix_permissions: bool = False,
    replica_id: str | None = None,
    own_partition: bool = False,
) -> SqlStore:
    """The store at ``store_url`` (``postgresql://...``: one database for every replica), or
    SQLite in ``data_dir`` when it is ``None`` (created 0600, see :mod:`tether.datadir`),
    appending to the audit partition :func:`replica_partition` names.

    On PostgreSQL, a process with no ``replica_id`` (or asked for ``own_partition``) appends to
    the first of ``<name>``, ``<name>.1``, ``<name>.2``... that no other process of this data
    directory is appending to (a lock file in ``run/``, held until the store closes): replicas
    started on one host and one data directory, and the workers of ``tether serve --workers
    N``, never take turns on one chain head, and each name is used again after a restart."""
    partition = replica_partition(data_dir, store_url, replica_id)
    if store_url is not None:
        held = None
        if replica_id is None or own_partition:
            partition, held = hold_first_free(
                data_dir / "run", _partition_slots(partition, _MAX_PARTITION_SLOTS)
            )
        store = SqlStore(store_url, partition=partition)
        if held is not None:
            store.on_close(held.close)
        return store
    return SqlStore.sqlite(
        sqlite_file(data_dir, fix_permissions=fix_permissions), partition=partition
    )


#: How many processes of one data directory may append under one replica name at once.
_MAX_PARTITION_SLOTS = 64


def _partition_slots(name: str, count: int) -> Iterator[str]:
    """``name``, then ``name.1``... (shortened to stay a partition name), ``count`` in all."""
    yield name
    for k in range(1, count):
        suffix = f".{k}"
        yield check_partition(name[: 64 - len(suffix)] + suffix)


def replica_partition(data_dir: Path, store_url: str | None, replica_id: str | None) -> str:
    """The audit partition a replica appends to (:mod:`tether.core.audit`): its configured
    ``replica_id``, else ``0`` on SQLite (one process writes the file, and its write lock
    serializes writers anyway), else, on PostgreSQL, ``<host name>-<8 hex of the data
    directory's absolute path>`` (:func:`open_store` may add a slot number to it).

    A partition is *stable per replica*, not new per process start: a restarted replica goes on
    appending to its own chain, so the set of partitions (which every checkpoint signs, and
    verification walks) grows with the replicas an operator runs, not with every restart or
    every one-shot ``tether`` command. Two processes given the same ``replica_id`` share a chain
    and take turns on its head, which is always correct, only slower: name each replica that
    serves concurrently (a StatefulSet pod's name, ``web-1``...). ``ConfigurationError`` for a
    name that cannot be a partition."""
    if replica_id is not None:
        try:
            return check_partition(replica_id)
        except ValueError as error:
            raise ConfigurationError(f"--replica-id: {error}") from None
    if store_url is None:
        return LEGACY_PARTITION
    host = re.sub(r"[^A-Za-z0-9.-]+", "-", socket.gethostname()).strip(".-")[:48] or "host"
    place = hashlib.sha256(str(data_dir.absolute()).encode("utf-8")).hexdigest()[:8]
    return check_partition(f"{host}-{place}")


STORE_FILE = "tether.db"


def sqlite_file(data_dir: Path, *, fix_permissions: bool = False) -> Path:
    """``tether.db`` in the (private) data directory, created 0600 before SQLite opens it: SQLite
    gives its ``-wal`` and ``-shm`` files the database file's mode."""
    prepare_data_dir(data_dir, fix_permissions=fix_permissions)
    return create_private_file(data_dir / STORE_FILE)


REDIS_URL_ENV = "TETHER_REDIS_URL"


def open_cache(config: RuntimeConfig, store: SqlStore, clock: Clock) -> CachedStore | None:
    """The grant cache over ``store`` when a Redis URL is configured (``redis_url``, else
    ``TETHER_REDIS_URL``), or ``None``: without Redis every read goes to the database, which keeps
    a revocation visible to every replica on its next call (README "Running several replicas")."""
    url = (config.redis_url or config.environ.get(REDIS_URL_ENV, "")).strip()
    if not url:
        return None
    from tether.cache import CachedStore  # only when configured: redis-py takes ~0.1 s to import

    try:
        return CachedStore.over_redis(store, url, clock)
    except ValueError:
        # Never the URL in the message: it may carry a password.
        raise ConfigurationError(
            f"the Redis URL ({REDIS_URL_ENV} / --redis-url) is not valid: use "
            "redis://[:PASSWORD@]HOST:PORT/DB, rediss://... or unix://PATH"
        ) from None


WEBHOOK_SECRET_ENV = "TETHER_APPROVAL_WEBHOOK_SECRET"


def approval_webhook_secret(config: RuntimeConfig) -> str:
    """The secret signing the approval webhook: ``approval_webhook_secret``, else the
    environment's; a webhook is never sent unsigned."""
    secret = (config.approval_webhook_secret or config.environ.get(WEBHOOK_SECRET_ENV, "")).strip()
    if not secret:
        raise ConfigurationError(
            f"the approval webhook is signed (Standard Webhooks): set {WEBHOOK_SECRET_ENV} to a "
            'secret shared with its receiver; generate one with: echo "whsec_$(openssl rand '
            '-base64 32)"'
        )
    return secret


def approver_registry(data_dir: Path) -> StaticApprovers:
    """The named approvers of this deployment (``tether approvers add NAME``), in the private
    data directory."""
    prepare_data_dir(data_dir)
    return StaticApprovers(data_dir / "approvers.json")


APPROVER_AUDIENCE = "tether-approver"


def approver_oidc(config: RuntimeConfig, clock: Clock) -> list[OidcApprovers]:
    if not config.approver_oidc_issuer:
        return []
    if not config.approver_oidc_jwks:
        raise ConfigurationError("an approver OIDC issuer needs its JWKS (a file or https URL)")
    verifier = OidcVerifier(
        issuer=config.approver_oidc_issuer,
        audience=APPROVER_AUDIENCE,
        jwks=config.approver_oidc_jwks,
    )
    return [OidcApprovers(verifier, clock.now)]


def dev_issuer(config: RuntimeConfig) -> DevIssuer:
    """The development SVID issuer; refused when ``TETHER_ENV=production``."""
    return open_dev_issuer(
        config.data_dir, trust_domain=config.trust_domain, environ=config.environ
    )


def refuse_example_policies_in_production(config: RuntimeConfig) -> None:
    """Production never runs on the bundled example policies: they permit any agent, for trying
    tether out. A server started without ``--policies`` would otherwise report ready on them."""
    if config.production and config.policy_dir.resolve() == packaged_policies().resolve():
        raise ConfigurationError(
            "TETHER_ENV=production needs your own policy directory: start with --policies DIR "
            "(the bundled example policies permit any agent and are only for trying tether)"
        )


def build_verifier(config: RuntimeConfig) -> WorkloadVerifier:
    svid: JwtSvidVerifier | None = None
    if config.trust_bundle is not None:
        svid = JwtSvidVerifier(
            load_jwks_file(config.trust_bundle),
            trust_domains={config.trust_domain},
            audience=config.audience,
            max_lifetime_seconds=config.max_token_lifetime_seconds,
        )
    elif not config.production:
        svid = dev_issuer(config).dev_verifier(audience=config.audience)
    oidc: list[OidcVerifier] = []
    if config.oidc_issuer:
        if not config.oidc_jwks:
            raise ConfigurationError("an OIDC issuer needs its JWKS (a file path or https URL)")
        oidc.append(
            OidcVerifier(
                issuer=config.oidc_issuer,
                audience=config.audience,
                jwks=config.oidc_jwks,
                max_lifetime_seconds=config.max_token_lifetime_seconds,
            )
        )
    if svid is None and not oidc:
        raise ConfigurationError(
            "production mode needs a workload identity source: --trust-bundle and/or an OIDC "
            "issuer (the development issuer is refused when TETHER_ENV=production)"
        )
    return CompositeVerifier(svid=svid, oidc=oidc)


@dataclass
class Runtime:
    config: RuntimeConfig
    store: SqlStore
    policy: CedarPolicyEngine
    signer: GrantTokenSigner
    verifier: WorkloadVerifier
    clock: Clock
    tasks: TaskService
    authorizer: Authorizer
    effects: EffectService
    approvals: ApprovalService
    approvers: CompositeApprovers
    notifier: ApprovalNotifier
    breakglass: BreakGlassService
    agents: AgentService
    leases: LeaseService
    #: The keys scoped lease tokens are signed with, served at /.well-known/jwks.json.
    lease_keys: tuple[SigningKey, ...]
    #: Where the use cases' metrics and spans go (:mod:`tether.observability`).
    observability: Observability = field(default_factory=Observability)
    #: The grant cache the use cases read through, when a Redis URL is configured.
    cache: CachedStore | None = None
    #: The approval page's key for session-bound CSRF tokens (``keys/ui-session.key``).
    ui_key: bytes = field(default=b"", repr=False)
    #: Signs audit checkpoints; the server's housekeeping ticks it (``tether serve``).
    checkpoints: Checkpointer | None = None
    #: Argument provenance: what each task observed, and the facts of its sink arguments.
    provenance: ProvenanceService | None = None

    @property
    def api_deps(self) -> ApiDeps:
        # Imported here: the MCP gateway and the egress proxy open a runtime but serve no API,
        # and FastAPI is about a seventh of their start-up imports.
        from tether.api.app import ApiDeps

        return ApiDeps(
            verifier=self.verifier,
            tasks=self.tasks,
            authorizer=self.authorizer,
            effects=self.effects,
            store=self.store,
            policy=self.policy,
            clock=self.clock,
            settings=self.config.settings,
            approvals=self.approvals,
            approvers=self.approvers,
            breakglass=self.breakglass,
            agents=self.agents,
            leases=self.leases,
            lease_keys=self.lease_keys,
            ui_key=self.ui_key,
            # Only an OIDC issuer's JWKS may be fetched (over the network) while verifying.
            verify_on_loop=not self.config.oidc_issuer,
            provenance=self.provenance,
            grants=GrantReader(self.signer, self.store, self.clock),
            gateways=self.config.gateways,
        )

    def forget_idle(self) -> None:
        """Forget what this process remembers of tasks that may have ended (here or in another
        process): the task rows the hot read keeps, and the provenance chains no decision has
        used for a while, with their keys. The housekeeping of ``serve`` and of the MCP gateway
        calls it, so an ended task's secret leaves memory within a bounded time."""
        self.store.forget_ended()
        if self.provenance is not None:
            self.provenance.sweep()

    def close(self) -> None:
        if isinstance(self.notifier, WebhookNotifier):
            self.notifier.close()
        if self.cache is not None:
            self.cache.close()  # the fan-out's subscriber thread, then the store it wraps
        self.store.close()


def open_runtime(
    config: RuntimeConfig,
    *,
    clock: Clock | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
    observability: Observability | None = None,
) -> Runtime:
    clock = clock or SystemClock()
    observability = observability or Observability()
    refuse_example_policies_in_production(config)
    prepare_data_dir(config.data_dir, fix_permissions=config.fix_permissions)
    policy = CedarPolicyEngine.load(
        config.policy_dir, on_reload=observability.metrics.policy_reloaded
    )
    observability.metrics.watch_policy(policy)
    workflows = load_workflows(config.policy_dir)
    egress = load_egress(config.policy_dir)
    verifier = build_verifier(config)
    grant_key = SigningKey.load_or_create(config.data_dir / "keys" / "grant-signing.pem")
    signer = GrantTokenSigner(grant_key)
    sql_store = open_store(
        config.data_dir,
        config.store_url,
        replica_id=config.replica_id,
        own_partition=config.own_partition,
    )
    try:
        cache = open_cache(config, sql_store, clock)
    except BaseException:
        sql_store.close()
        raise
    store: Store = sql_store if cache is None else cache
    ids = IdFactory(random_bytes)
    recorder = Recorder(
        ids,
        audit_mac(_load_or_create_secret(config.data_dir / "keys" / "audit-hmac.key")),
        config.settings.plain_audit_args,
    )
    notifier: ApprovalNotifier = NoNotifier()
    if config.approval_webhook:
        page = f"{config.public_url.rstrip('/')}/ui/approvals" if config.public_url else None
        notifier = WebhookNotifier(
            config.approval_webhook,
            secret=approval_webhook_secret(config),
            approval_page=page,
            now=clock.now,
        )
    approvals = ApprovalService(
        store=store,
        clock=clock,
        ids=ids,
        recorder=recorder,
        notifier=notifier,
        ttl_seconds=config.settings.approval_ttl_seconds,
    )
    breakglass = BreakGlassService(
        store=store,
        requests=SqlBreakGlassStore(sql_store),
        clock=clock,
        ids=ids,
        recorder=recorder,
        settings=config.breakglass,
    )
    flows = Flows(
        store=store,
        workflows=workflows,
        egress=egress,
        settings=FlowSettings(read_floors=load_read_floors(config.policy_dir)),
        anomaly=AnomalySignal(history=sql_store, clock=clock),
    )
    observations = SqlObservationStore(sql_store)
    provenance = ProvenanceService(
        store=observations,
        tasks=store,
        decisions=store,
        policy=policy,
        signer=signer,
        clock=clock,
        key=_load_or_create_secret(config.data_dir / "keys" / "provenance-hmac.key"),
        chain=flows.chain,
        queue=observations,
    )
    lease_key = SigningKey.load_or_create(config.data_dir / "keys" / "lease-signing.pem")
    checkpoints = checkpointer(config, sql_store, clock)
    leases = LeaseService(
        store=SqlLeaseStore(sql_store),
        issuers=load_downstreams(
            config.policy_dir,
            signer=ScopedJwtIssuer(lease_key, lease_issuer_name(config)),
            environ=config.environ,
        ),
        clock=clock,
        recorder=recorder,
        random_bytes=random_bytes,
        on_error=_log_lease_error,
    )
    return Runtime(
        config=config,
        store=sql_store,
        policy=policy,
        signer=signer,
        verifier=verifier,
        clock=clock,
        tasks=ObservedTaskService(
            observability,
            store=store,
            policy=policy,
            signer=signer,
            clock=clock,
            ids=ids,
            recorder=recorder,
            settings=config.settings,
            flows=flows,
            leases=leases,
            provenance=provenance,
        ),
        authorizer=Authorizer(
            store=store,
            policy=policy,
            signer=signer,
            clock=clock,
            ids=ids,
            recorder=recorder,
            approvals=approvals,
            breakglass=breakglass,
            flows=flows,
            leases=leases,
            limits=config.settings.call_limits,
            observer=DecisionTelemetry(observability),
            # SQLite's reads are in-process and never wait for a writer (WAL): an event loop
            # may make them. A PostgreSQL or Redis round trip stays off the loop.
            loop_store=sql_store if cache is None and sql_store.backend == "sqlite" else None,
            # PostgreSQL's reads stay on worker threads, which hand each write to the store's
            # writer without waiting: the loop hears of a batch's commit once.
            handed_store=sql_store if cache is None and sql_store.backend == "postgresql" else None,
            provenance=provenance,
            queued_effects=sql_store,
        ),
        effects=ObservedEffectService(
            observability,
            store=store,
            clock=clock,
            ids=ids,
            recorder=recorder,
            settings=config.settings,
            queue=sql_store,
            observations=observations,
        ),
        approvals=approvals,
        approvers=CompositeApprovers(
            approver_registry(config.data_dir), approver_oidc(config, clock)
        ),
        notifier=notifier,
        breakglass=breakglass,
        agents=AgentService(store=store, clock=clock, recorder=recorder, leases=leases),
        leases=leases,
        lease_keys=(lease_key,),
        observability=observability,
        cache=cache,
        ui_key=_load_or_create_secret(config.data_dir / "keys" / "ui-session.key"),
        checkpoints=checkpoints,
        provenance=provenance,
    )


def checkpointer(config: RuntimeConfig, store: SqlStore, clock: Clock) -> Checkpointer:
    """The audit log's checkpointer: the data directory's key, the configured witness."""
    key = CheckpointKey.load_or_create(CheckpointKey.path_in(config.data_dir))
    witnesses: list[Witness] = []
    if config.audit_witness:
        try:
            witnesses.append(witness_for(config.audit_witness))
        except ValueError as error:
            raise ConfigurationError(f"--audit-witness: {error}") from None
    return Checkpointer(
        log=store,
        checkpoints=SqlCheckpointStore(store),
        signer=key.signer(),
        verify=key.public().verifies,
        clock=clock,
        schedule=config.checkpoints,
        witnesses=witnesses,
        on_witness_error=_log_witness_error,
    )


def _log_witness_error(witness: Witness, error: Exception) -> None:
    # The type only: an HTTP error's text may carry the URL with its query string.
    get_logger("tether.audit").warning(
        "audit_witness_failed", witness=witness.name, error_type=type(error).__name__
    )


def lease_issuer_name(config: RuntimeConfig) -> str:
    """The ``iss`` of scoped lease tokens: the public URL when there is one."""
    return (config.public_url or "tether").rstrip("/") or "tether"


def _log_lease_error(event: str, lease: Lease | None, error: TetherError) -> None:
    get_logger("tether.leases").warning(
        event,
        lease_id=None if lease is None else lease.lease_id,
        issuer=None if lease is None else lease.issuer_name,
        error=error.message,
    )
