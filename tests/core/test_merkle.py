"""RFC 6962 Merkle trees: the published test vectors, corrupted proofs refused, and properties."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.core.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    tree_hash,
    verify_consistency,
    verify_inclusion,
)

# The eight leaf inputs and the roots of every prefix tree used by Certificate Transparency's
# reference tests (RFC 6962 / RFC 9162; transparency-dev/merkle testonly/constants.go).
INPUTS = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
LEAVES = [leaf_hash(x) for x in INPUTS]


def _hex(*hashes: str) -> list[bytes]:
    return [bytes.fromhex(h) for h in hashes]


# (leaf index, tree size, audit path) from the same reference tests.
INCLUSION = [
    (
        0,
        8,
        _hex(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        _hex(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, _hex("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        _hex(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]
# (first size, second size, consistency proof).
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        _hex(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        _hex(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        _hex(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        _hex(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]


def test_empty_root_is_the_hash_of_nothing() -> None:
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == ROOTS[0]


@pytest.mark.parametrize("size", range(9))
def test_reference_roots(size: int) -> None:
    assert tree_hash(LEAVES[:size]) == ROOTS[size]
    assert Frontier().extend(LEAVES[:size]).root() == ROOTS[size]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_reference_inclusion_proofs(index: int, size: int, path: list[bytes]) -> None:
    assert inclusion_proof(index, LEAVES[:size]) == path
    assert verify_inclusion(index, size, LEAVES[index], path, ROOTS[size])


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY)
def test_reference_consistency_proofs(first: int, second: int, proof: list[bytes]) -> None:
    assert consistency_proof(first, LEAVES[:second]) == proof
    assert verify_consistency(first, second, ROOTS[first], ROOTS[second], proof)


def _corrupted(path: list[bytes], root: bytes) -> list[list[bytes]]:
    """Every corruption the reference tests try: bits flipped, hashes added or removed."""
    variants = [[*path, b""], [*path, root], [b"", *path], [root, *path]]
    for i in range(len(path)):
        flipped = bytearray(path[i])
        flipped[0] ^= 8
        variants.append([*path[:i], bytes(flipped), *path[i + 1 :]])
    if path:
        variants.append(path[:-1])
    if len(path) > 1:
        variants.append([path[0], b"\xab" * 32, *path[1:]])
    return variants


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_corrupted_inclusion_proofs_fail(index: int, size: int, path: list[bytes]) -> None:
    root, leaf = ROOTS[size], LEAVES[index]
    for wrong in _corrupted(path, root):
        assert not verify_inclusion(index, size, leaf, wrong, root)
    for i, n in ((index - 1, size), (index + 1, size), (index ^ 2, size)):
        if i >= 0:
            assert not verify_inclusion(i, n, leaf, path, root)
    assert not verify_inclusion(index, size * 2, leaf, path, root)
    assert not verify_inclusion(index, size // 2, leaf, path, root)
    assert not verify_inclusion(index, size, leaf_hash(b"WrongLeaf"), path, root)
    assert not verify_inclusion(index, size, leaf, path, EMPTY_ROOT)


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY[1:])
def test_corrupted_consistency_proofs_fail(first: int, second: int, proof: list[bytes]) -> None:
    r1, r2 = ROOTS[first], ROOTS[second]
    for wrong in _corrupted(proof, r1) + _corrupted(proof, r2) + [[], [proof[0], *proof]]:
        assert not verify_consistency(first, second, r1, r2, wrong)
    for a, b in ((first - 1, second), (first + 1, second), (first ^ 2, second)):
        if 0 < a <= b and (a, b) != (first, second):
            assert not verify_consistency(a, b, r1, r2, proof)
    assert not verify_consistency(first, second * 2, r1, r2, proof)
    assert not verify_consistency(first, second // 2, r1, r2, proof)
    assert not verify_consistency(first, second, r2, r1, proof)
    assert not verify_consistency(first, second, leaf_hash(b"x"), r2, proof)


def test_time_travel_and_trivial_cases() -> None:
    assert verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])
    assert not verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [ROOTS[1]])
    assert not verify_consistency(5, 4, ROOTS[5], ROOTS[4], [])
    assert not verify_consistency(3, 3, ROOTS[3], ROOTS[4], [])
    assert not verify_inclusion(0, 0, LEAVES[0], [], EMPTY_ROOT)


leaves_st = st.lists(st.binary(max_size=8), min_size=1, max_size=70).map(
    lambda xs: [leaf_hash(x) for x in xs]
)


@given(leaves_st, st.data())
def test_every_leaf_proves_and_no_other_leaf_does(leaves: list[bytes], data: st.DataObject) -> None:
    root = tree_hash(leaves)
    i = data.draw(st.integers(0, len(leaves) - 1))
    proof = inclusion_proof(i, leaves)
    assert verify_inclusion(i, len(leaves), leaves[i], proof, root)
    assert not verify_inclusion(i, len(leaves), leaf_hash(b"not in the log"), proof, root)


@given(leaves_st, st.data())
def test_every_prefix_is_consistent_and_a_rewrite_is_not(
    leaves: list[bytes], data: st.DataObject
) -> None:
    n = len(leaves)
    m = data.draw(st.integers(1, n))
    proof = consistency_proof(m, leaves)
    old, new = tree_hash(leaves[:m]), tree_hash(leaves)
    assert verify_consistency(m, n, old, new, proof)
    # A log whose history changed (one earlier leaf rewritten) is not an extension of the old one.
    j = data.draw(st.integers(0, m - 1))
    rewritten = [*leaves[:j], leaf_hash(b"rewritten"), *leaves[j + 1 :]]
    if m < n:
        assert not verify_consistency(
            m, n, old, tree_hash(rewritten), consistency_proof(m, rewritten)
        )


@given(leaves_st)
def test_the_frontier_matches_the_tree_hash_at_every_size(leaves: list[bytes]) -> None:
    frontier = Frontier()
    for k, leaf in enumerate(leaves, start=1):
        frontier = frontier.append(leaf)
        assert frontier.size == k
        assert frontier.root() == tree_hash(leaves[:k])


@given(leaves_st, st.integers(0, 40))
def test_extending_is_appending_each_leaf(leaves: list[bytes], cut: int) -> None:
    start = Frontier().extend(leaves[:cut])
    one_by_one = start
    for leaf in leaves[cut:]:
        one_by_one = one_by_one.append(leaf)
    assert start.extend(leaves[cut:]) == one_by_one
    with pytest.raises(ValueError, match="SHA-256"):
        start.extend([b"short"])
