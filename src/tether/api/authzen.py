"""OpenID AuthZEN Authorization API 1.0: tether as the policy decision point (PDP) of any PEP.

Gateways and enforcement points that speak AuthZEN ask tether through the standard door instead
of ``/v1/authorize``. Each evaluation is mapped onto one tether call and decided by the same
``Authorizer.authorize`` as ``/v1/authorize``, so it is audited exactly the same way.

Routes (spec sections: Access Evaluation API, Access Evaluations API, Policy Decision Point
Metadata, Transport / HTTPS Binding):

    POST /access/v1/evaluation             one evaluation → {"decision", "context"}
    POST /access/v1/evaluations            a batch → {"evaluations": [...]}, in request order
    GET  /.well-known/authzen-configuration  the PDP metadata document (no authentication)

Authentication. The PEP presents the agent's own SVID (or OIDC token) as
``Authorization: Bearer`` like every tether call; a missing or bad token is ``401``. tether never
believes what a caller says about itself, so the ``subject`` must name that same workload.

Mapping of one evaluation onto a tether call:

    AuthZEN                              tether
    subject.type                         must be "agent"                          (else 400)
    subject.id                           the bearer's workload id (SPIFFE ID, or issuer#sub);
                                         any other identity is 403 subject_mismatch
    subject.properties.grant             the grant token; else the X-Tether-Grant header;
                                         neither is 400 (like a missing grant on /v1/authorize)
    subject.properties.* (others)        ignored: what a caller says about itself decides nothing
    action.name                          the action kind: read, write, delete, send, execute,
                                         spend                                    (else 400)
    action.properties                    accepted, not used
    resource.type                        must be "tool"                           (else 400)
    resource.id                          the tool name
    resource.properties.dataset          the dataset (optional)
    resource.properties.args             the call's arguments (optional) ...
    context.args                         ... or here; both at once is 400 (ambiguous)
    resource.properties.* (others)       400: never silently dropped
    context.approval_id                  the approval a human gave for exactly this call
    context.* (others, e.g. time)        accepted, not used: tether decides at its own clock

The answer (Access Evaluation API Response): ``decision`` is ``true`` only for tether's
``allow``; ``deny`` and ``approval_required`` are ``false``. ``context`` carries tether's verdict:
``decision`` (allow/deny/approval_required), ``decision_id``, ``reasons``, ``policy_ids``,
``risks``, ``obligations``, ``approval_id``, ``policy_revision``, ``decided_at``,
``delegation``. Each reason is a Reason Object (``id``, ``reason_user`` as a Reason Field
``{"en": message}``) that also carries tether's stable ``code`` and ``message``. An allow may
carry obligations (row cap, redaction); a PEP that cannot honour them must not go ahead.

Batches (Access Evaluations API): top-level ``subject``/``action``/``resource``/``context`` are
defaults; a key set on an item replaces the default whole (no deep merge). At most
``MAX_EVALUATIONS`` items (``413`` beyond). ``options.evaluations_semantic`` is ``execute_all``
(default), ``deny_on_first_deny`` (stop after the first ``false``) or ``permit_on_first_permit``
(stop after the first ``true``); items after the stop are not evaluated, so not audited. An
item that cannot be mapped (unknown action, subject mismatch, no grant...) is answered in place
as ``{"decision": false, "context": {"error": {"status", "code", "message"}}}``, which counts as
a deny for the semantics. Without an ``evaluations`` array the request is one evaluation and the
answer has the single shape; an empty array is ``400``. Unknown ``options`` are ``400``.

Errors (HTTPS Binding, Error Responses): a decision, ``true`` or ``false``, is always ``200``.
``400`` malformed or unmappable request, ``401`` no or bad token, ``403`` subject mismatch,
``413`` body over 256 KiB, args over 64 KiB or too many evaluations; the body is tether's
``{"error": {"code", "message"}}``. An ``X-Request-ID`` sent by the PEP is echoed on every
answer of these routes (Request Identification).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Final, assert_never

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from tether.api.errors import HTTP_STATUS, error_response
from tether.api.models import ObligationOut
from tether.core.errors import ErrorCode, InvalidRequest
from tether.core.identity import Workload
from tether.core.scope import ActionKind, JSONValue
from tether.core.verdict import Decision, Verdict
from tether.logs import get_logger
from tether.service.enforce import CallRequest

if TYPE_CHECKING:
    from tether.api.app import ApiDeps

log = get_logger("tether.api.authzen")

EVALUATION_PATH: Final = "/access/v1/evaluation"
EVALUATIONS_PATH: Final = "/access/v1/evaluations"
METADATA_PATH: Final = "/.well-known/authzen-configuration"
#: Items in one ``evaluations`` request; each is a full, audited decision.
MAX_EVALUATIONS: Final = 100
MAX_GRANT_BYTES: Final = 8192
SUBJECT_TYPE: Final = "agent"
RESOURCE_TYPE: Final = "tool"
_RESOURCE_PROPERTIES: Final = frozenset({"dataset", "args"})
_ACTIONS: Final = ", ".join(a.value for a in ActionKind)


class AuthZenCode(StrEnum):
    """Refusals only this edge makes (tether's own codes keep ``tether.api.errors``)."""

    SUBJECT_MISMATCH = "subject_mismatch"


AUTHZEN_STATUS: Final[dict[AuthZenCode, int]] = {AuthZenCode.SUBJECT_MISMATCH: 403}


class Semantic(StrEnum):
    """``options.evaluations_semantic`` (Access Evaluations API, Evaluations semantics)."""

    EXECUTE_ALL = "execute_all"
    DENY_ON_FIRST_DENY = "deny_on_first_deny"
    PERMIT_ON_FIRST_PERMIT = "permit_on_first_permit"


# --- request and response bodies (the spec's Information Model) --------------------------------

Kind = Annotated[StrictStr, Field(min_length=1, max_length=128)]
Ident = Annotated[StrictStr, Field(min_length=1, max_length=2048)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubjectIn(_Strict):
    type: Kind = Field(description='Always "agent".')
    id: Ident = Field(description="The caller's own workload id (the bearer SVID's SPIFFE ID).")
    properties: dict[str, Any] | None = Field(
        default=None, description='{"grant": "<grant token>"}; other properties are ignored.'
    )


class ActionIn(_Strict):
    name: Kind = Field(description="read, write, delete, send, execute or spend.")
    properties: dict[str, Any] | None = Field(default=None, description="Accepted, not used.")


class ResourceIn(_Strict):
    type: Kind = Field(description='Always "tool".')
    id: Ident = Field(description="The tool name, e.g. crm.query.")
    properties: dict[str, Any] | None = Field(
        default=None, description='{"dataset": "<name>", "args": {...}}; nothing else.'
    )


_CONTEXT = "Optional: approval_id, args; other keys (e.g. time) are accepted and not used."


class EvaluationIn(_Strict):
    subject: SubjectIn
    action: ActionIn
    resource: ResourceIn
    context: dict[str, Any] | None = Field(default=None, description=_CONTEXT)


class EvaluationItemIn(_Strict):
    subject: SubjectIn | None = None
    action: ActionIn | None = None
    resource: ResourceIn | None = None
    context: dict[str, Any] | None = Field(default=None, description=_CONTEXT)


class OptionsIn(_Strict):
    evaluations_semantic: Semantic = Semantic.EXECUTE_ALL


class EvaluationsIn(_Strict):
    subject: SubjectIn | None = None
    action: ActionIn | None = None
    resource: ResourceIn | None = None
    context: dict[str, Any] | None = Field(default=None, description=_CONTEXT)
    evaluations: list[EvaluationItemIn] | None = Field(
        default=None, description=f"At most {MAX_EVALUATIONS}; top-level keys are defaults."
    )
    options: OptionsIn | None = None


class ReasonObjectOut(BaseModel):
    id: str = Field(description="The reason's position within this response.")
    code: str = Field(description="tether's stable reason code.")
    message: str
    reason_user: dict[str, str] = Field(description='A Reason Field: {"en": message}.')


class DelegationContextOut(BaseModel):
    depth: int
    chain: list[str]


class DecisionContextOut(BaseModel):
    decision: str = Field(description="tether's verdict: allow, deny or approval_required.")
    decision_id: str
    reasons: list[ReasonObjectOut]
    policy_ids: list[str]
    risks: list[str]
    obligations: list[ObligationOut]
    policy_revision: str
    decided_at: str
    approval_id: str | None
    delegation: DelegationContextOut


class ItemErrorOut(BaseModel):
    status: int
    code: str
    message: str


class ItemErrorContextOut(BaseModel):
    error: ItemErrorOut


class EvaluationOut(BaseModel):
    decision: bool = Field(description="true only for tether's allow.")
    context: DecisionContextOut | ItemErrorContextOut


class EvaluationsOut(BaseModel):
    evaluations: list[EvaluationOut] = Field(description="In request order; may stop early.")


class MetadataOut(BaseModel):
    policy_decision_point: str
    access_evaluation_endpoint: str
    access_evaluations_endpoint: str


# --- mapping ------------------------------------------------------------------------------------


class Refused(Exception):
    """An evaluation tether will not map onto a call: answered as an error, never decided."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": {"code": self.code, "message": self.message}}, status_code=self.status
        )

    def item(self) -> dict[str, JSONValue]:
        """The answer in a batch (Access Evaluations API, Errors): a closed decision."""
        error: dict[str, JSONValue] = {
            "status": self.status,
            "code": self.code,
            "message": self.message,
        }
        return {"decision": False, "context": {"error": error}}


def _invalid(message: str, code: ErrorCode = ErrorCode.INVALID_FIELD) -> Refused:
    return Refused(HTTP_STATUS[code], code.value, message)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One AuthZEN evaluation as tether decides it."""

    grant: str
    request: CallRequest


def _grant(subject: SubjectIn, header_grant: str | None) -> str:
    token: object = (subject.properties or {}).get("grant", header_grant)
    if token is None:
        raise _invalid(
            "no grant: send the grant token as subject.properties.grant or the X-Tether-Grant "
            "header"
        )
    if not isinstance(token, str) or not 0 < len(token) <= MAX_GRANT_BYTES:
        raise _invalid(
            f"subject.properties.grant must be a grant token of 1-{MAX_GRANT_BYTES} chars"
        )
    return token


def _header_grant(value: str | None) -> str | None:
    if value is not None and not 0 < len(value) <= MAX_GRANT_BYTES:
        raise _invalid(f"X-Tether-Grant must be a grant token of 1-{MAX_GRANT_BYTES} chars")
    return value


def _args(resource: dict[str, Any], context: dict[str, Any]) -> object:
    """Where the arguments are; what they hold is checked by the enforcement entry."""
    if "args" in resource and "args" in context:
        raise _invalid("send args in resource.properties.args or in context.args, not both")
    return resource.get("args", context.get("args", {}))


def to_evaluation(
    caller: Workload,
    subject: SubjectIn,
    action: ActionIn,
    resource: ResourceIn,
    context: dict[str, Any] | None,
    header_grant: str | None,
) -> Evaluation:
    """Map one evaluation onto a tether call for ``caller``; raise :class:`Refused` if it cannot
    be mapped. Nothing the request says about the caller is believed."""
    if subject.type != SUBJECT_TYPE:
        raise _invalid(f'subject.type must be "{SUBJECT_TYPE}", with the caller\'s workload id')
    # INVARIANT: a caller asks only about itself; its identity comes from the bearer token.
    if subject.id != caller.id:
        log.warning("authzen_subject_mismatch", agent=caller.id, claimed=subject.id[:256])
        raise Refused(
            AUTHZEN_STATUS[AuthZenCode.SUBJECT_MISMATCH],
            AuthZenCode.SUBJECT_MISMATCH.value,
            "subject.id must be the workload id of the bearer token; a caller can only ask "
            "about itself",
        )
    grant = _grant(subject, header_grant)
    try:
        kind = ActionKind(action.name)
    except ValueError:
        raise _invalid(
            f"action.name {action.name[:64]!r} is not a tether action; use one of {_ACTIONS}"
        ) from None
    if resource.type != RESOURCE_TYPE:
        raise _invalid(f'resource.type must be "{RESOURCE_TYPE}", with the tool name as its id')
    properties = resource.properties or {}
    unknown = sorted(set(properties) - _RESOURCE_PROPERTIES)
    if unknown:
        raise _invalid(
            f"resource.properties.{unknown[0][:64]} is not understood; tether reads only "
            "dataset and args"
        )
    dataset = properties.get("dataset")
    if dataset is not None and not isinstance(dataset, str):
        raise _invalid("resource.properties.dataset is not a valid dataset name")
    ctx = context or {}
    approval_id = ctx.get("approval_id")
    if approval_id is not None and (not isinstance(approval_id, str) or len(approval_id) > 64):
        raise _invalid("context.approval_id must be a tether approval id")
    args = _args(properties, ctx)
    return Evaluation(grant, CallRequest(resource.id, kind, dataset, args, approval_id))


def permits(decision: Decision) -> bool:
    """AuthZEN's boolean: only ``allow`` lets the call go forward."""
    match decision:
        case Decision.ALLOW:
            return True
        case Decision.DENY | Decision.APPROVAL_REQUIRED:
            return False
        case _:
            assert_never(decision)


def answer(verdict: Verdict) -> dict[str, JSONValue]:
    """The Access Evaluation Response for a verdict: the boolean, and the verdict as context."""
    context = verdict.to_json()
    context["reasons"] = [
        {
            "id": str(index),
            "code": reason.code.value,
            "message": reason.message,
            "reason_user": {"en": reason.message},
        }
        for index, reason in enumerate(verdict.reasons)
    ]
    return {"decision": permits(verdict.decision), "context": context}


class RequestIdEcho:
    """Request Identification in a Response: echo the PEP's ``X-Request-ID`` on these routes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        request_id = next(
            (value for name, value in scope.get("headers", []) if name == b"x-request-id"), None
        )
        if request_id is None or not (path.startswith("/access/v1/") or path == METADATA_PATH):
            await self.app(scope, receive, send)
            return

        async def echo(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id)]}
            await send(message)

        await self.app(scope, receive, echo)


# --- routes -------------------------------------------------------------------------------------


def install_authzen_routes(app: FastAPI, deps: ApiDeps, authenticated: Any) -> None:
    """Add the AuthZEN routes; ``authenticated`` is the API's caller dependency (the SVID)."""
    app.add_middleware(RequestIdEcho)

    def decide(evaluation: Evaluation, caller: Workload) -> dict[str, JSONValue]:
        # The one enforcement entry: the same checks and decision as /v1/authorize, audited
        # the same way. Input it refuses is an error, never a decision.
        try:
            verdict = deps.authorizer.enforce(caller, evaluation.grant, evaluation.request)
        except InvalidRequest as refused:
            raise _invalid(_authzen_message(refused.message), refused.code) from None
        return answer(verdict)

    @app.post(EVALUATION_PATH, response_model=EvaluationOut, tags=["authzen"])
    def evaluation(
        body: EvaluationIn,
        caller: Workload = authenticated,
        x_tether_grant: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        """AuthZEN Access Evaluation: may the caller make this one tool call now?"""
        try:
            mapped = to_evaluation(
                caller,
                body.subject,
                body.action,
                body.resource,
                body.context,
                _header_grant(x_tether_grant),
            )
            return JSONResponse(decide(mapped, caller))
        except Refused as refused:
            return refused.response()

    @app.post(EVALUATIONS_PATH, response_model=EvaluationsOut, tags=["authzen"])
    def evaluations(
        body: EvaluationsIn,
        caller: Workload = authenticated,
        x_tether_grant: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        """AuthZEN Access Evaluations: several calls in one request, decided in order."""
        try:
            grant = _header_grant(x_tether_grant)
        except Refused as refused:
            return refused.response()
        if body.evaluations is None:  # backwards compatible with the single evaluation
            single = EvaluationItemIn(
                subject=body.subject,
                action=body.action,
                resource=body.resource,
                context=body.context,
            )
            try:
                return JSONResponse(decide(_resolve(caller, single, body, grant), caller))
            except Refused as refused:
                return refused.response()
        if not body.evaluations:
            return _invalid(
                "evaluations must hold at least one evaluation; omit it to send just one"
            ).response()
        if len(body.evaluations) > MAX_EVALUATIONS:
            return error_response(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"at most {MAX_EVALUATIONS} evaluations per request; split the batch",
            )
        semantic = body.options.evaluations_semantic if body.options else Semantic.EXECUTE_ALL
        results: list[JSONValue] = []
        for item in body.evaluations:
            try:
                result = decide(_resolve(caller, item, body, grant), caller)
            except Refused as refused:
                result = refused.item()
            results.append(result)
            permitted = result["decision"] is True
            if semantic is Semantic.DENY_ON_FIRST_DENY and not permitted:
                break
            if semantic is Semantic.PERMIT_ON_FIRST_PERMIT and permitted:
                break
        return JSONResponse({"evaluations": results})

    @app.get(METADATA_PATH, response_model=MetadataOut, tags=["authzen"])
    def metadata(request: Request) -> JSONResponse:
        """Policy Decision Point Metadata. Only the evaluation endpoints: tether offers no search
        APIs, and a missing endpoint tells the PEP so."""
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "policy_decision_point": base,
                "access_evaluation_endpoint": base + EVALUATION_PATH,
                "access_evaluations_endpoint": base + EVALUATIONS_PATH,
            },
            headers={"Cache-Control": "max-age=300"},
        )


def _resolve(
    caller: Workload,
    item: EvaluationItemIn,
    defaults: EvaluationsIn,
    header_grant: str | None,
) -> Evaluation:
    """An item with the request's top-level defaults filled in (Access Evaluations API,
    Default values): a key set on the item replaces the default whole."""
    subject = item.subject or defaults.subject
    action = item.action or defaults.action
    resource = item.resource or defaults.resource
    context = item.context if item.context is not None else defaults.context
    if subject is None or action is None or resource is None:
        missing = "subject" if subject is None else "action" if action is None else "resource"
        raise _invalid(f"{missing} is required, on the evaluation or as a top-level default")
    return to_evaluation(caller, subject, action, resource, context, header_grant)


def _authzen_message(message: str) -> str:
    """The entry's message in this edge's words: a call's tool is its resource.id."""
    if message.startswith("tool "):
        return "resource.id" + message[len("tool") :]
    if message.startswith("dataset "):
        return "resource.properties.dataset" + message[len("dataset") :]
    return message
