"""A server's long-lived heap is kept out of full collections (:mod:`tether.heap`)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from tether.heap import THAW_SECONDS, HeapFreezer


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test session collects as usual


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_what_survived_a_full_collection_is_frozen_and_thawed_later() -> None:
    clock = _Clock()
    heap = HeapFreezer(clock)
    assert not heap.tick()  # no full collection since it began: nothing frozen
    assert gc.get_freeze_count() == 0
    survivors = [[i] for i in range(1000)]  # containers the collector tracks
    gc.collect()
    assert heap.tick()
    frozen = gc.get_freeze_count()
    assert frozen >= len(survivors)
    assert not heap.tick()  # nothing new: no second freeze
    clock.now = THAW_SECONDS
    assert not heap.tick()
    assert gc.get_freeze_count() == 0  # thawed: the next full collection sees everything


def test_a_cycle_frozen_then_dropped_is_reclaimed_after_the_thaw() -> None:
    clock = _Clock()
    heap = HeapFreezer(clock)

    class Node:
        pass

    node = Node()
    node.self = node  # type: ignore[attr-defined]
    alive = weakref.ref(node)
    gc.collect()
    assert heap.tick()
    del node
    gc.collect()
    assert alive() is not None  # frozen: no collection looks at it
    clock.now = THAW_SECONDS
    heap.tick()
    gc.collect()
    assert alive() is None  # thawed: the cycle is garbage and collected
