"""Reading a caller's grant as it stands now, to show what it covers (a tool listing).

A listing is not a decision: calls are decided by :meth:`Authorizer.enforce`, which checks the
grant again. This read answers one question for the doors that filter what an agent is shown
(the MCP gateway's ``tools/list``, ``GET /v1/grant`` for a gateway deciding remotely): is this
grant token valid, bound to this agent, and usable now? Anything else shows nothing.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from tether.core.task import Grant, grant_is_usable
from tether.service.ports import Clock, GrantSigner, Store


@dataclass(frozen=True, slots=True)
class GrantReader:
    signer: GrantSigner
    store: Store
    clock: Clock

    def usable_grant(self, agent: str, token: str | None) -> Grant | None:
        """The grant ``token`` names if it verifies, is bound to ``agent`` and usable now; else
        ``None``. Fail closed: any error (a bad token, the store down) shows nothing."""
        if token is None:
            return None
        now = self.clock.now()
        try:
            claims = self.signer.verify(token, now)
            if not hmac.compare_digest(claims.agent, agent):
                return None
            grant = self.store.get_grant(claims.grant_id)
            if grant is None or not hmac.compare_digest(grant.agent, agent):
                return None
            task = self.store.get_task(grant.task_id)
        except Exception:  # fail closed, whatever went wrong
            return None
        if task is None or not grant_is_usable(grant, task, now):
            return None
        return grant
