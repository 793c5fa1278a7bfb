"""The one place that wires tether together: data directory, keys, store, policy, identity and
the use cases. Entry points (``tether serve``, the CLI, tests) build a :class:`Runtime` here.

Data directory layout (created on first start, files 0600):

    tether.db                SQLite store (WAL); absent when ``store_url`` names another database
    keys/grant-signing.pem   ES256 key signing grant tokens
    keys/dev-issuer.pem      ES256 key of the development SVID issuer (embedded default only)
    keys/audit-hmac.key      32-byte key for HMAC'ing sensitive values in audit records

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
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tether.api.app import ApiDeps
from tether.core.errors import ConfigurationError
from tether.core.ids import IdFactory
from tether.identity import (
    CompositeVerifier,
    DevIssuer,
    GrantTokenSigner,
    JwtSvidVerifier,
    OidcVerifier,
    SigningKey,
    ensure_dev_allowed,
    load_jwks_file,
)
from tether.identity.approvers import CompositeApprovers, OidcApprovers, StaticApprovers
from tether.notify import WebhookNotifier
from tether.policy import CedarPolicyEngine
from tether.policy.flows import load_egress, load_workflows
from tether.service.agents import AgentService
from tether.service.approvals import ApprovalNotifier, ApprovalService, NoNotifier
from tether.service.authorize import Authorizer
from tether.service.breakglass import BreakGlassService, BreakGlassSettings
from tether.service.clock import SystemClock
from tether.service.effects import EffectService
from tether.service.flows import Flows, FlowSettings
from tether.service.ports import Clock, WorkloadVerifier
from tether.service.recording import Recorder
from tether.service.settings import ServiceSettings
from tether.service.tasks import TaskService
from tether.store import SqlStore
from tether.store.breakglass import SqlBreakGlassStore

DEFAULT_TRUST_DOMAIN = "tether.local"
DEFAULT_AUDIENCE = "tether"


def packaged_policies() -> Path:
    """The example policies shipped with tether: the embedded default."""
    return Path(__file__).parent / "examples" / "policies"


@dataclass(frozen=True)
class RuntimeConfig:
    data_dir: Path
    policy_dir: Path = field(default_factory=packaged_policies)
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    audience: str = DEFAULT_AUDIENCE
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    settings: ServiceSettings = field(default_factory=ServiceSettings)
    #: Production identity: a SPIFFE trust bundle (JWKS) and/or OIDC issuers.
    trust_bundle: Path | None = None
    oidc_issuer: str | None = None
    oidc_jwks: str | None = None
    #: Where to announce pending approvals (a chat bridge), and the page approvers open.
    approval_webhook: str | None = None
    public_url: str | None = None
    breakglass: BreakGlassSettings = field(default_factory=BreakGlassSettings)
    #: Approvers may sign in with this OIDC issuer (ID tokens for audience tether-approver).
    approver_oidc_issuer: str | None = None
    approver_oidc_jwks: str | None = None
    #: The store's database URL (``postgresql://...`` for several replicas); ``None`` means SQLite
    #: in the data directory. Kept out of ``repr``: it may carry a password.
    store_url: str | None = field(default=None, repr=False)

    @property
    def production(self) -> bool:
        return self.environ.get("TETHER_ENV", "").lower() == "production"


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
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
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


def open_store(data_dir: Path, store_url: str | None = None) -> SqlStore:
    """The store at ``store_url`` (``postgresql://...``: one database for every replica), or
    SQLite in ``data_dir`` when it is ``None``."""
    if store_url is not None:
        return SqlStore(store_url)
    data_dir.mkdir(parents=True, exist_ok=True)
    return SqlStore.sqlite(data_dir / "tether.db")


def approver_registry(data_dir: Path) -> StaticApprovers:
    """The named approvers of this deployment (``tether approvers add NAME``)."""
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
    ensure_dev_allowed(config.environ)
    key = SigningKey.load_or_create(config.data_dir / "keys" / "dev-issuer.pem")
    return DevIssuer(key, trust_domain=config.trust_domain, environ=config.environ)


def build_verifier(config: RuntimeConfig) -> WorkloadVerifier:
    svid: JwtSvidVerifier | None = None
    if config.trust_bundle is not None:
        svid = JwtSvidVerifier(
            load_jwks_file(config.trust_bundle),
            trust_domains={config.trust_domain},
            audience=config.audience,
        )
    elif not config.production:
        svid = dev_issuer(config).dev_verifier(audience=config.audience)
    oidc: list[OidcVerifier] = []
    if config.oidc_issuer:
        if not config.oidc_jwks:
            raise ConfigurationError("an OIDC issuer needs its JWKS (a file path or https URL)")
        oidc.append(
            OidcVerifier(issuer=config.oidc_issuer, audience=config.audience, jwks=config.oidc_jwks)
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

    @property
    def api_deps(self) -> ApiDeps:
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
        )

    def close(self) -> None:
        if isinstance(self.notifier, WebhookNotifier):
            self.notifier.close()
        self.store.close()


def open_runtime(
    config: RuntimeConfig,
    *,
    clock: Clock | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> Runtime:
    clock = clock or SystemClock()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    policy = CedarPolicyEngine.load(config.policy_dir)
    workflows = load_workflows(config.policy_dir)
    egress = load_egress(config.policy_dir)
    verifier = build_verifier(config)
    grant_key = SigningKey.load_or_create(config.data_dir / "keys" / "grant-signing.pem")
    signer = GrantTokenSigner(grant_key)
    store = open_store(config.data_dir, config.store_url)
    ids = IdFactory(random_bytes)
    recorder = Recorder(
        ids,
        audit_mac(_load_or_create_secret(config.data_dir / "keys" / "audit-hmac.key")),
        config.settings.plain_audit_args,
    )
    notifier: ApprovalNotifier = NoNotifier()
    if config.approval_webhook:
        page = f"{config.public_url.rstrip('/')}/ui/approvals" if config.public_url else None
        notifier = WebhookNotifier(config.approval_webhook, approval_page=page)
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
        requests=SqlBreakGlassStore(store),
        clock=clock,
        ids=ids,
        recorder=recorder,
        settings=config.breakglass,
    )
    flows = Flows(store=store, workflows=workflows, egress=egress, settings=FlowSettings())
    return Runtime(
        config=config,
        store=store,
        policy=policy,
        signer=signer,
        verifier=verifier,
        clock=clock,
        tasks=TaskService(
            store=store,
            policy=policy,
            signer=signer,
            clock=clock,
            ids=ids,
            recorder=recorder,
            settings=config.settings,
            flows=flows,
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
        ),
        effects=EffectService(
            store=store, clock=clock, ids=ids, recorder=recorder, settings=config.settings
        ),
        approvals=approvals,
        approvers=CompositeApprovers(
            approver_registry(config.data_dir), approver_oidc(config, clock)
        ),
        notifier=notifier,
        breakglass=breakglass,
        agents=AgentService(store=store, clock=clock, recorder=recorder),
    )
