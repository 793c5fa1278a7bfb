"""Parts of a tool's result that are trusted on their own: the items a trusted author wrote.

A tool result is one source with one trust (:class:`tether.core.provenance.Source`). Some
results are lists of items each written by someone the platform names: channel messages with
their sender, files with their owner. When the operator keeps a list of authors whose words the
user trusts (the workspace's members), a link one of them posted is not an outsider's, and the
catalog may say so per tool (:class:`TrustedParts`): each item of the result's list whose author
field holds a name on that list is a trusted part; everything else in the result stays
untrusted, as before.

What decides is only what the platform wrote (the author field of the item as the tool returned
it) and the operator's list, never the item's text: an outsider who can write a message cannot
make it a member's. An item whose author is missing, not a string, or not exactly a listed name
is untrusted; a result of any other shape (text, or no list where the rule says) has no trusted
part. So the rule can only narrow what is untrusted to what the list vouches for.
"""

from __future__ import annotations

from dataclasses import dataclass

from tether.core.errors import ConfigurationError
from tether.core.scope import JSONValue

__all__ = ["TrustedParts"]


@dataclass(frozen=True, slots=True)
class TrustedParts:
    """Which items of one tool's structured result are trusted parts.

    ``items`` is the path of keys from the result to its list of items (empty: the result is
    the list); ``author`` the path of keys from an item to the name of who wrote it; an item is
    trusted when that name is one of ``authors`` (exactly, case included).
    """

    author: tuple[str, ...]
    authors: frozenset[str]
    items: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.author or not all(self.author) or not all(self.items):
            raise ConfigurationError(
                "a trusted part names the author field of an item ('sender', 'meta.owner') "
                "and, optionally, the key path to the list of items"
            )

    def split(self, result: JSONValue) -> tuple[list[JSONValue], JSONValue]:
        """The trusted items of ``result``, and the rest of it (all of it when none is
        trusted). The rest is ``result`` with the trusted items taken out of its list."""
        found = _list_at(result, self.items)
        if found is None:
            return [], result
        trusted: list[JSONValue] = []
        kept: list[JSONValue] = []
        for item in found:
            (trusted if self._trusted(item) else kept).append(item)
        if not trusted:
            return [], result
        return trusted, _replaced(result, self.items, kept)

    def _trusted(self, item: JSONValue) -> bool:
        value: JSONValue = item
        for key in self.author:
            if not isinstance(value, dict):
                return False
            value = value.get(key)
        return isinstance(value, str) and value in self.authors


def _list_at(value: JSONValue, path: tuple[str, ...]) -> list[JSONValue] | None:
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if isinstance(value, list) else None


def _replaced(value: JSONValue, path: tuple[str, ...], items: list[JSONValue]) -> JSONValue:
    """``value`` with the list at ``path`` replaced by ``items`` (copies only along the path)."""
    if not path:
        return items
    if not isinstance(value, dict):  # not reached: _list_at found a list along this path
        return value
    head, rest = path[0], path[1:]
    return {**value, head: _replaced(value[head], rest, items)}
