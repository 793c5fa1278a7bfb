"""tether's Python SDK: a light client (``httpx`` only) for agents, a one-line guard for plain
Python tools, and adapters for agent frameworks (each an optional extra).

    from tether_sdk import TetherClient

    with TetherClient("http://127.0.0.1:8470", svid=svid) as client:
        with client.task(intent={...}, scopes=[...]) as task:
            @task.guard(tool="payments.refund", action="spend", dataset="orders")
            def refund(order_id: str, amount: int) -> dict: ...

Adapters: ``tether_sdk.openai_agents``, ``tether_sdk.langchain``, ``tether_sdk.langgraph``,
``tether_sdk.mcp``. None of them is imported here, so the SDK stays light.
"""

from tether_sdk._gate import ToolCall
from tether_sdk._http import Retry
from tether_sdk.aio import AsyncTaskSession, AsyncTetherClient
from tether_sdk.client import TaskSession, TetherClient
from tether_sdk.errors import (
    ERROR_CODES,
    ApprovalRejected,
    ApprovalRequired,
    ApprovalTimeout,
    ConfigurationError,
    Conflict,
    Denied,
    ErrorCode,
    Forbidden,
    InvalidRequest,
    NotAllowed,
    NotFound,
    TetherError,
    Unauthenticated,
    Unavailable,
)
from tether_sdk.models import (
    Action,
    ApprovalState,
    ApprovalStatus,
    ClosedTask,
    Credential,
    Decision,
    Delegation,
    Effect,
    EffectStatus,
    Health,
    Intent,
    Obligation,
    Observation,
    Reason,
    ReasonCode,
    Refusal,
    Scope,
    Task,
    Verdict,
)
from tether_sdk.records import BreakGlass, Lease, LeaseIntrospection

__version__ = "0.1.0"

__all__ = [
    "ERROR_CODES",
    "Action",
    "ApprovalRejected",
    "ApprovalRequired",
    "ApprovalState",
    "ApprovalStatus",
    "ApprovalTimeout",
    "AsyncTaskSession",
    "AsyncTetherClient",
    "BreakGlass",
    "ClosedTask",
    "ConfigurationError",
    "Conflict",
    "Credential",
    "Decision",
    "Delegation",
    "Denied",
    "Effect",
    "EffectStatus",
    "ErrorCode",
    "Forbidden",
    "Health",
    "Intent",
    "InvalidRequest",
    "Lease",
    "LeaseIntrospection",
    "NotAllowed",
    "NotFound",
    "Obligation",
    "Observation",
    "Reason",
    "ReasonCode",
    "Refusal",
    "Retry",
    "Scope",
    "Task",
    "TaskSession",
    "TetherClient",
    "TetherError",
    "ToolCall",
    "Unauthenticated",
    "Unavailable",
    "Verdict",
    "__version__",
]
