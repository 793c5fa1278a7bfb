"""Merkle tree hashing and proofs over the audit log, as Certificate Transparency does it.

Follows RFC 6962 §2.1 (tree hash, audit paths, consistency proofs) and RFC 9162 §2.1.3.2 and
§2.1.4.2 (verifying them). With SHA-256:

- a leaf hashes as ``H(0x00 || entry)`` and an inner node as ``H(0x01 || left || right)``, so a
  leaf can never pass for a node (second-preimage resistance);
- the tree of ``n`` entries splits at the largest power of two below ``n``; the empty tree's hash
  is ``H("")``.

An *inclusion proof* shows an entry is at index ``i`` of the tree of size ``n`` whose root a
checkpoint signed; a *consistency proof* shows the tree of size ``m`` is a prefix of the tree of
size ``n``: the log only grew. Both verify with this module alone, offline.

:class:`Frontier` keeps the roots of the perfect subtrees of a tree (at most log2(n) hashes): it
takes one leaf at a time and gives the root without keeping the leaves, so a growing log is
checkpointed without reading it from the start.

Proof generation takes the list of leaf hashes; everything here is pure and standard library.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF = b"\x00"
_NODE = b"\x01"


def leaf_hash(entry: bytes) -> bytes:
    """RFC 6962 §2.1: ``SHA-256(0x00 || entry)``."""
    return hashlib.sha256(_LEAF + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 §2.1: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(_NODE + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def tree_hash(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf *hashes* (RFC 6962 §2.1)."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(tree_hash(leaves[:k]), tree_hash(leaves[k:]))


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[n]) (RFC 6962 §2.1.1): sibling hashes from the leaf up to the root."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf {index} is not in a tree of {len(leaves)} leaves")
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), tree_hash(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), tree_hash(leaves[:k])]


def consistency_proof(first: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(first, D[n]) (RFC 6962 §2.1.2): the first ``first`` leaves are a prefix of these."""
    if not 0 <= first <= len(leaves):
        raise ValueError(f"a tree of {len(leaves)} leaves has no prefix of {first}")
    if first in (0, len(leaves)):
        return []
    return _subproof(first, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [tree_hash(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], whole), tree_hash(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), tree_hash(leaves[:k])]


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    """The root ``proof`` leads to from ``leaf`` at ``index`` (RFC 9162 §2.1.3.2), or ``None``
    when the proof cannot belong to a tree of ``size`` leaves."""
    if not 0 <= index < size or len(leaf) != HASH_SIZE:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0 or len(p) != HASH_SIZE:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """True when ``proof`` shows ``leaf`` (a leaf hash) at ``index`` of the tree of ``size``
    leaves whose hash is ``root``."""
    computed = root_from_inclusion(index, size, leaf, proof)
    return computed is not None and hmac.compare_digest(computed, root)


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """True when ``proof`` shows the tree of ``first`` leaves (hash ``first_root``) is a prefix
    of the tree of ``second`` leaves (hash ``second_root``): RFC 9162 §2.1.4.2."""
    if not 0 <= first <= second or any(len(c) != HASH_SIZE for c in proof):
        return False
    if first == 0:
        return not proof  # the empty tree is a prefix of every tree
    if first == second:
        return not proof and hmac.compare_digest(first_root, second_root)
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # an exact power of two: the first tree is a node of the second
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(fr, first_root) and hmac.compare_digest(sr, second_root)


@dataclass(frozen=True, slots=True)
class Frontier:
    """The roots of the perfect subtrees a tree of ``size`` leaves splits into, largest first:
    one per set bit of ``size``. Enough to append leaves and compute the root."""

    size: int = 0
    hashes: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.hashes) != self.size.bit_count():
            raise ValueError("a frontier holds one hash per set bit of its size")
        if any(len(h) != HASH_SIZE for h in self.hashes):
            raise ValueError("a frontier's hashes are SHA-256 digests")

    def append(self, leaf: bytes) -> Frontier:
        """The frontier after one more leaf (a leaf hash)."""
        return self.extend((leaf,))

    def extend(self, leaves: Iterable[bytes]) -> Frontier:
        """The frontier after each of ``leaves`` in turn: :meth:`append`, with one stack."""
        stack = list(self.hashes)
        size = self.size
        for leaf in leaves:
            if len(leaf) != HASH_SIZE:
                raise ValueError("a frontier's hashes are SHA-256 digests")
            carry, grown = leaf, size
            # Like adding one to a binary counter: equal subtrees merge as the carry moves up.
            while grown & 1:
                carry = node_hash(stack.pop(), carry)
                grown >>= 1
            stack.append(carry)
            size += 1
        return Frontier(size, tuple(stack))

    def root(self) -> bytes:
        """MTH of the whole tree: the subtrees folded from the right (RFC 6962's split rule)."""
        if not self.hashes:
            return EMPTY_ROOT
        root = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            root = node_hash(left, root)
        return root


__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Frontier",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion",
    "tree_hash",
    "verify_consistency",
    "verify_inclusion",
]
