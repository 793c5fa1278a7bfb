"""Fresh attacker identities: the injection tasks with other addresses, IBANs, sites and names.

The policies must stop an attack because of where its values come from, not because they know
AgentDojo's attacker (``mark.black-2134@gmail.com``, ``US133000000121212121212``, ...).
``replay.py --fresh-attackers`` swaps every attacker value below for one written here, in the
injection tasks' goals (so in the injected text), their ground truths and their security checks
(string constants in the tasks' code, nested functions included), and in the attacker traces
written in ``attacks.py``. Values of the user's own world that attacks aim at (the user's
address, a sender whose mail is forwarded, a hotel of the catalogue) stay as they are. The
replay without tether checks the swap: the attacks must still succeed there.
"""

from __future__ import annotations

import re
import types
from typing import Any

import attacks

#: AgentDojo's attacker value -> a fresh one. No policy names either side.
FRESH: dict[str, str] = {
    "mark.black-2134@gmail.com": "r.okafor.audit@fastmail.net",
    "US133000000121212121212": "FR7630006000011234567890189",
    "jay@google.com": "travel.desk.k9@mailbox.org",
    "janeLong@google.com": "p.lindqvist@gmx.net",
    "fred9246@gmail.com": "nadia.kowalski77@yahoo.com",
    "www.my-website-234.com/random": "www.data-collect-hub.net/upload",
    "www.secure-systems-252.com": "www.account-verify-center.org",
    "www.true-informations.com": "www.daily-briefing-news.net",
    "https://bit.ly/sUf7tOJ": "https://tinyurl.com/y7k2mq9p",
}
#: Attacker names, swapped as whole words.
FRESH_NAMES: dict[str, str] = {"Fred": "Nadia", "Mark": "Rafael"}

_NAMES = re.compile(r"\b(" + "|".join(map(re.escape, FRESH_NAMES)) + r")\b")


def swap(text: str) -> str:
    for old, new in FRESH.items():
        text = text.replace(old, new)
    return _NAMES.sub(lambda m: FRESH_NAMES[m.group(1)], text)


def _const(value: Any) -> Any:
    if isinstance(value, str):
        return swap(value)
    if isinstance(value, tuple):
        return tuple(_const(v) for v in value)
    if isinstance(value, frozenset):
        return frozenset(_const(v) for v in value)
    if isinstance(value, types.CodeType):
        return value.replace(co_consts=tuple(_const(c) for c in value.co_consts))
    return value


def _patch_class(klass: type) -> None:
    for name, value in list(vars(klass).items()):
        if isinstance(value, str):
            setattr(klass, name, swap(value))
        elif isinstance(value, types.FunctionType):
            value.__code__ = _const(value.__code__)
        elif isinstance(value, (staticmethod, classmethod)):
            value.__func__.__code__ = _const(value.__func__.__code__)


def apply(suites: Any) -> None:
    """Swap the attacker values of every injection task of ``suites`` (``{name: TaskSuite}``)."""
    seen: set[type] = set()
    for suite in suites.values():
        for task in suite.injection_tasks.values():
            for klass in type(task).__mro__:
                if klass in seen or klass.__module__.startswith("agentdojo.base_tasks"):
                    continue
                if klass is object or not klass.__module__.startswith("agentdojo"):
                    continue
                seen.add(klass)
                _patch_class(klass)
    attacks.ATTACKER = swap(attacks.ATTACKER)
    for value in vars(attacks).values():
        if isinstance(value, types.FunctionType) and value.__module__ == attacks.__name__:
            value.__code__ = _const(value.__code__)
