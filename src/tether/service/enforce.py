"""What every door hands to the one enforcement entry, :meth:`Authorizer.enforce`.

The v1 API, AuthZEN, the MCP gateway and the egress proxy each parse their own wire format into a
:class:`CallRequest` and nothing more: the input is checked once, by
:func:`tether.core.callcheck.checked_call`, inside the entry, so no door can check it differently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tether.core.scope import ActionKind
from tether.service.flows import Expect


@dataclass(frozen=True, slots=True)
class CallRequest:
    """A tool call as a door received it, before any check."""

    tool: str
    action: ActionKind
    dataset: str | None = None
    #: The arguments as the agent sent them (checked by the entry, not trusted to be JSON).
    args: object = field(default_factory=dict)
    #: A human's approval of exactly this call, for the retry after ``approval_required``.
    approval_id: str | None = None
    #: What a read declares it may take, for its budget reservation.
    expect: Expect | None = None
