"""The gateway's decision point over HTTP: ``tether serve`` decides (``tether mcp-gateway
--pdp-url``), so the gateway host holds no database credentials and no keys.

    verify   GET  /v1/identity        the agent's SVID, verified by serve (cached per token)
    grant    GET  /v1/grant           the agent's SVID + X-Tether-Grant (cached per grant)
    enforce  POST /v1/authorize       the agent's SVID, its grant, the call, its approval id
    report   POST /v1/effects         the agent's SVID (its newest: effects are written later),
                                      with the call's observation in the same request
    observe  POST /v1/observations    the agent's SVID and grant, the result it was handed (alone
                                      only when it could not go with its effect)
    events   POST /v1/gateway/events  the gateway's own SVID (``--gateway-svid-file``)

One request per call after the answer: the gateway queues a call's effect and the observation of
its result together, and the observation joins the effect's ``POST /v1/effects``. Should serve
refuse that request for good (one of the two refused), each is posted again alone and gets its
own answer; should it get no usable answer, both stay queued and are retried each on its own.

Fail closed: when serve cannot be reached, times out, or answers ``5xx`` or anything that is not
its JSON, every method raises ``Unavailable(pdp_unavailable)``: the agent's request is refused
and nothing is forwarded upstream. An effect or observation that cannot be posted stays queued
(:mod:`tether.mcp.effectqueue`): the task's next call retries it first and is refused while it
still fails. The gateway's own audit records wait in an outbox, in order, retried with every new
record and once more when the gateway stops; one still unsent then is logged
(``gateway_event_not_recorded``), never dropped silently. Each record gets an id here
(``gev_…``) that stays with its outbox entry, so a retry after an answer that never came (serve
may have recorded it) carries the same id: serve records an id once and answers a repeat with
``409 event_replayed``, which the outbox takes as delivered. Likewise an effect whose post got
no answer and whose retry serve answers ``409 effect_already_reported`` was recorded by that
post (an observation is recorded again on a retry; its values are kept once). A ``4xx``
carries serve's own stable code and is raised as that error.

Caching, each bounded in entries: a verified SVID is trusted for at most
:data:`IDENTITY_TTL_SECONDS` (and never past its own ``exp``); a grant's scopes, for listing
only, for at most :data:`GRANT_TTL_SECONDS` (and never past the grant's expiry). Every call is
still decided by serve, which verifies the SVID and the grant again.

The requests, their clients and timeouts: :mod:`tether.mcp.pdp_http`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Generic, TypeVar
from urllib.parse import urlsplit

import anyio
import anyio.lowlevel

from tether.core.audit import AuditKind
from tether.core.errors import (
    ConfigurationError,
    ErrorCode,
    InvalidRequest,
    TetherError,
    Unauthenticated,
    Unavailable,
)
from tether.core.identity import CredentialKind, Workload
from tether.core.ids import DecisionId, IdFactory
from tether.core.risks import Risk
from tether.core.scope import JSONValue, Scope
from tether.core.verdict import (
    Decision,
    Obligation,
    ObligationKind,
    Reason,
    ReasonCode,
    Verdict,
)
from tether.credentials.secrets import SecretStore
from tether.logs import get_logger
from tether.mcp.callers import Caller
from tether.mcp.gateway import GatewayDeps
from tether.mcp.pdp import AuditSink, Effect, GrantView, Observation
from tether.mcp.pdp_http import ServeClient, unavailable
from tether.observability import Metrics
from tether.service.enforce import CallRequest
from tether.service.ports import Clock

log = get_logger("tether.mcp.pdp")

DEFAULT_TIMEOUT_SECONDS: Final = 5.0
IDENTITY_TTL_SECONDS: Final = 60.0
GRANT_TTL_SECONDS: Final = 30.0
#: How long an effect whose post got no answer is remembered as perhaps recorded.
UNANSWERED_TTL: Final = 24 * 3600.0
MAX_CACHED: Final = 4096
MAX_OUTBOX: Final = 10_000
#: serve takes bodies up to 256 KiB and scans at most 64 Ki characters of a result: a larger
#: result is observed as the start of its JSON text.
MAX_OBSERVED_BYTES: Final = 192 * 1024
GRANT_HEADER: Final = "X-Tether-Grant"


def _expiry(token: str) -> float | None:
    """The ``exp`` a JWT states (serve verified it; used only to cap how long it is cached)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp")
    except (IndexError, ValueError, AttributeError):
        return None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


V = TypeVar("V")


class _Bounded(Generic[V]):
    """A mapping that keeps at most :data:`MAX_CACHED` entries, each until a deadline."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[V, float]] = OrderedDict()

    def get(self, key: str, now: float) -> V | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if found[1] <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return found[0]

    def discard(self, key: str) -> None:
        self._entries.pop(key, None)

    def put(self, key: str, value: V, until: float) -> None:
        self._entries[key] = (value, until)
        self._entries.move_to_end(key)
        while len(self._entries) > MAX_CACHED:
            self._entries.popitem(last=False)


@dataclass(eq=False)
class _Joined:
    """An effect waiting one turn of the event loop for the observation of the same call, and
    what their one request came to (``error``: not sent, until it is)."""

    observation: dict[str, JSONValue] | None = None
    sent: anyio.Event = field(default_factory=anyio.Event)
    error: TetherError | None = field(
        default_factory=lambda: unavailable("the effect of this call was not sent")
    )


@dataclass(frozen=True, slots=True)
class RemoteGrant:
    """A grant's scopes as serve answered ``GET /v1/grant``."""

    scopes: tuple[Scope, ...]

    def scope_for(self, tool: str) -> Scope | None:
        for scope in self.scopes:
            if scope.tool == tool:
                return scope
        return None


def _verdict(data: Any) -> Verdict:
    """``VerdictOut`` as a verdict; ``Unavailable`` for anything else (fail closed)."""
    try:
        delegation = data.get("delegation") or {}
        return Verdict(
            decision=Decision(data["decision"]),
            decision_id=DecisionId(str(data["decision_id"])),
            reasons=tuple(
                Reason(ReasonCode(r["code"]), str(r["message"])) for r in data["reasons"]
            ),
            policy_ids=tuple(str(p) for p in data["policy_ids"]),
            obligations=tuple(
                Obligation(ObligationKind(o["kind"]), str(o["value"]), o.get("policy_id"))
                for o in data["obligations"]
            ),
            risks=tuple(Risk(r) for r in data["risks"]),
            policy_revision=str(data["policy_revision"]),
            decided_at=datetime.fromisoformat(data["decided_at"]),
            approval_id=data.get("approval_id"),
            delegators=tuple(str(d) for d in delegation.get("chain") or ()),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise unavailable("tether serve answered a verdict this gateway cannot read") from None


class RemoteDecisionPoint:
    """:class:`~tether.mcp.pdp.DecisionPoint` over HTTP to ``tether serve`` at ``url``."""

    def __init__(
        self,
        url: str,
        clock: Clock,
        gateway_svid: Callable[[], str],
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        metrics: Metrics | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigurationError(
                f"--pdp-url must be an http(s) URL of tether serve, not {url!r}"
            )
        if parts.username or parts.password:
            raise ConfigurationError("--pdp-url must not carry credentials")
        self._url = url.rstrip("/")
        #: How serve is named in messages and logs.
        self.where = f"{parts.scheme}://{parts.netloc}"
        self._clock = clock
        self._metrics = metrics
        self._serve = ServeClient(url, self.where, timeout)
        #: Serve's JSON answer to one request; its error raised as its own code (``4xx``), or
        #: ``pdp_unavailable`` for no answer, ``5xx``, or an answer that is not its JSON.
        self.call = self._serve.request
        self._identities: _Bounded[Workload] = _Bounded()
        self._grants: _Bounded[RemoteGrant] = _Bounded()
        #: The newest verified SVID of each agent, for effects written after its call.
        self._newest: _Bounded[str] = _Bounded()
        #: Effects waiting for the observation of their call (by decision id), see report.
        self._unsent: dict[DecisionId, _Joined] = {}
        #: Effects whose last post got no answer (serve may have recorded them).
        self._unanswered: _Bounded[bool] = _Bounded()
        self._events = RemoteEvents(self, gateway_svid, IdFactory(random_bytes))

    # -- the port ------------------------------------------------------------------------------

    @property
    def events(self) -> AuditSink:
        return self._events

    async def verify(self, token: str) -> Workload:
        now = self._clock.now().timestamp()
        key = _digest(token)
        known = self._identities.get(key, now)
        if known is not None:
            return known
        data = await self.call("GET", "/v1/identity", token, 200)
        try:
            workload = Workload(
                str(data["agent"]),
                CredentialKind(data["kind"]),
                str(data["trust_domain"]),
                str(data["name"]),
            )
        except (KeyError, ValueError):
            raise unavailable(
                "tether serve answered an identity this gateway cannot read"
            ) from None
        exp = _expiry(token)
        if exp is not None:
            self._identities.put(key, workload, min(exp, now + IDENTITY_TTL_SECONDS))
            newest = self._newest.get(workload.id, now)
            if newest is None or (_expiry(newest) or 0.0) <= exp:
                self._newest.put(workload.id, token, exp)
        return workload

    async def grant(self, caller: Caller) -> GrantView | None:
        token = caller.grant_token
        if token is None or caller.bearer is None:
            return None
        now = self._clock.now().timestamp()
        key = f"{caller.workload.id} {_digest(token)}"
        known = self._grants.get(key, now)
        if known is not None:
            return known
        try:
            data = await self.call(
                "GET", "/v1/grant", caller.bearer, 200, headers={GRANT_HEADER: token}
            )
        except Unavailable:
            raise
        except TetherError as error:  # not usable by this caller: it sees nothing
            log.info("grant_unreadable", code=error.code.value)
            return None
        try:
            grant = RemoteGrant(tuple(Scope.from_json(s) for s in data["scopes"]))
            expires = datetime.fromisoformat(data["expires_at"]).timestamp()
            if data["agent"] != caller.workload.id:
                return None
        except (KeyError, TypeError, ValueError, TetherError):
            raise unavailable("tether serve answered a grant this gateway cannot read") from None
        self._grants.put(key, grant, min(expires, now + GRANT_TTL_SECONDS))
        return grant

    async def enforce(self, caller: Caller, request: CallRequest) -> Verdict:
        if caller.bearer is None or caller.grant_token is None:
            raise Unauthenticated("no SVID to forward", code=ErrorCode.MISSING_TOKEN)
        body: dict[str, Any] = {
            "grant": caller.grant_token,
            "tool": request.tool,
            "action": request.action.value,
            "dataset": request.dataset,
            "args": request.args,
            "approval_id": request.approval_id,
            # The gateway hands no just-in-time credential to its agents (as in process).
            "credential": False,
        }
        if request.expect is not None:
            body["expect"] = {"records": request.expect.records, "bytes": request.expect.bytes}
        verdict = _verdict(await self.call("POST", "/v1/authorize", caller.bearer, 200, body))
        if self._metrics is not None:
            self._metrics.decision(verdict, request.tool)
        return verdict

    def _bearer_of(self, caller: Caller) -> str:
        newest = self._newest.get(caller.workload.id, self._clock.now().timestamp())
        token = newest or caller.bearer
        if token is None:
            raise Unauthenticated("no SVID to forward", code=ErrorCode.MISSING_TOKEN)
        return token

    async def report(self, caller: Caller, effect: Effect) -> None:
        body: dict[str, JSONValue] = {
            "decision_id": effect.decision_id,
            "status": effect.status.value,
            "records": effect.records,
            "bytes": effect.bytes,
            "recipients": list(effect.recipients),
        }
        decision_id = effect.decision_id
        joined = _Joined()
        self._unsent.setdefault(decision_id, joined)
        try:
            # The gateway queues a call's observation right after its effect (Gateway.report):
            # one turn of the event loop lets it join, so both go in one request.
            await anyio.lowlevel.checkpoint()
            if self._unsent.get(decision_id) is joined:
                del self._unsent[decision_id]
            if joined.observation is None:
                await self._post_effect(caller, decision_id, body)
                return
            try:
                both = {**body, "observation": joined.observation}
                await self._post_effect(caller, decision_id, both)
                joined.error = None
            except Unavailable as error:
                joined.error = error  # both stay queued, each retried on its own
                raise
            except TetherError as error:
                # One of the two was refused for good: each alone gets its own answer.
                joined.error = error
                joined.sent.set()
                await self._post_effect(caller, decision_id, body)
        finally:
            if self._unsent.get(decision_id) is joined:
                del self._unsent[decision_id]
            joined.sent.set()  # the observation, if it joined, waits for this

    async def _post_effect(
        self, caller: Caller, decision_id: DecisionId, body: Mapping[str, JSONValue]
    ) -> None:
        """POST ``body`` to ``/v1/effects``. An effect whose earlier post got no answer may have
        been recorded then: serve's ``409 effect_already_reported`` to its retry is that record.
        """
        try:
            await self.call("POST", "/v1/effects", self._bearer_of(caller), 201, body)
        except Unavailable:
            self._unanswered.put(decision_id, True, self._clock.now().timestamp() + UNANSWERED_TTL)
            raise
        except TetherError as error:
            now = self._clock.now().timestamp()
            if not (
                error.code is ErrorCode.EFFECT_ALREADY_REPORTED
                and self._unanswered.get(decision_id, now)
            ):
                raise
            log.info("effect_already_recorded", decision_id=decision_id)
        self._unanswered.discard(decision_id)

    async def observe(self, caller: Caller, observation: Observation) -> None:
        if caller.grant_token is None:
            return
        result: JSONValue = observation.result
        text = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
        if len(text.encode()) > MAX_OBSERVED_BYTES:
            result = text.encode()[:MAX_OBSERVED_BYTES].decode(errors="ignore")
        seen: dict[str, JSONValue] = {
            "grant": caller.grant_token,
            "tool": observation.tool,
            "dataset": observation.dataset,
            "result": result,
        }
        joined = self._unsent.get(observation.decision_id)
        if joined is not None and joined.observation is None:
            # Sent with the effect of the same call, in its request (report above).
            joined.observation = seen
            await joined.sent.wait()
            error = joined.error
            if error is None:
                return
            if isinstance(error, Unavailable):
                raise Unavailable(error.message, code=error.code)
        body = {**seen, "decision_id": observation.decision_id}
        await self.call("POST", "/v1/observations", self._bearer_of(caller), 201, body)

    async def aclose(self) -> None:
        await self._events.flush(final=True)
        await self._serve.aclose()


class RemoteEvents:
    """The gateway's own audit records, posted with the gateway's SVID, in order, through an
    outbox that keeps what serve could not take yet."""

    def __init__(self, pdp: RemoteDecisionPoint, svid: Callable[[], str], ids: IdFactory) -> None:
        self._pdp = pdp
        self._svid = svid
        self._ids = ids
        self._outbox: deque[dict[str, JSONValue]] = deque()
        self._lock = anyio.Lock()

    @property
    def pending(self) -> int:
        return len(self._outbox)

    async def append_async(
        self, kind: AuditKind, body: dict[str, JSONValue], agent: str | None = None
    ) -> None:
        if len(self._outbox) >= MAX_OUTBOX:  # fail closed rather than lose a record
            raise unavailable(
                f"{len(self._outbox)} gateway audit records are waiting for tether serve"
            )
        observed = self._pdp._clock.now().isoformat()
        # The id is chosen once, here, and kept with the entry: every retry sends the same one.
        self._outbox.append(
            {
                "event_id": self._ids.gateway_event(),
                "kind": kind.value,
                "agent": agent,
                "body": {**body, "observed_at": observed},
            }
        )
        await self.flush()

    async def flush(self, *, final: bool = False) -> None:
        async with self._lock:
            while self._outbox:
                event = self._outbox[0]
                try:
                    await self._pdp.call("POST", "/v1/gateway/events", self._svid(), 201, event)
                except TetherError as error:
                    if error.code is ErrorCode.EVENT_REPLAYED:
                        # A post whose answer was lost was recorded: this retry is that record.
                        log.info(
                            "gateway_event_already_recorded",
                            kind=event["kind"],
                            event_id=event["event_id"],
                        )
                    elif isinstance(error, InvalidRequest):  # never taken: say so, go on
                        log.error(
                            "gateway_event_not_recorded", kind=event["kind"], code=error.code.value
                        )
                    else:  # kept: serve down, or this gateway not listed yet
                        self._defer(error, final)
                        return
                self._outbox.popleft()

    def _defer(self, error: TetherError, final: bool) -> None:
        log.warning(
            "gateway_event_deferred",
            kind=self._outbox[0]["kind"],
            code=error.code.value,
            pending=len(self._outbox),
        )
        if final:
            for left in self._outbox:
                log.error("gateway_event_not_recorded", kind=left["kind"], code=error.code.value)


def svid_file(path: Path) -> Callable[[], str]:
    """The gateway's own SVID, read from ``path`` at each use (a SPIFFE helper rotates it)."""

    def read() -> str:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise Unauthenticated(
                f"the gateway's SVID file {path} cannot be read ({error.strerror})",
                code=ErrorCode.MISSING_TOKEN,
            ) from None
        if not token:
            raise Unauthenticated(
                f"the gateway's SVID file {path} is empty", code=ErrorCode.MISSING_TOKEN
            )
        return token

    return read


def remote_deps(
    url: str,
    data_dir: Path,
    environ: Mapping[str, str],
    clock: Clock,
    gateway_svid: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    metrics: bool = True,
) -> GatewayDeps:
    """A gateway deciding through ``tether serve`` at ``url``. ``data_dir`` is the gateway's
    own: its upstreams' encrypted secrets (``tether secrets set -d``, whose key is the only key
    there) and its pins; no store, no signing or audit key is opened or created."""
    secrets = SecretStore(data_dir, environ)
    counted = Metrics() if metrics else None
    pdp = RemoteDecisionPoint(url, clock, svid_file(gateway_svid), timeout=timeout, metrics=counted)
    return GatewayDeps(pdp=pdp, clock=clock, secrets=secrets.get, metrics=counted)
