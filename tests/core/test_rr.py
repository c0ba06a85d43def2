"""RoundRobin: O(1) pick in turn; replace() keeps the rotation going."""

from __future__ import annotations

from types import ModuleType

import _core


def test_the_extension_is_compiled() -> None:
    assert _core.RoundRobin.__module__ == "_core.core"
    assert _core.TunnelPump.__module__ == "_core.core"


def test_pick_cycles_in_order(impl: ModuleType) -> None:
    rr = impl.RoundRobin(["a", "b", "c"])
    assert [rr.pick() for _ in range(7)] == ["a", "b", "c", "a", "b", "c", "a"]
    assert len(rr) == 3


def test_empty_picks_none(impl: ModuleType) -> None:
    rr = impl.RoundRobin()
    assert rr.pick() is None
    rr.replace(["x"])
    assert rr.pick() == "x"
    rr.replace([])
    assert rr.pick() is None


def test_replace_keeps_the_cursor(impl: ModuleType) -> None:
    rr = impl.RoundRobin(["a", "b", "c"])
    assert rr.pick() == "a"
    rr.replace(["a", "b", "c", "d"])
    assert rr.pick() == "b"
    rr.replace(["a"])
    assert rr.pick() == "a"


def test_fair_split_of_100_picks(impl: ModuleType) -> None:
    rr = impl.RoundRobin(["e1", "e2"])
    picks = [rr.pick() for _ in range(100)]
    assert picks.count("e1") == picks.count("e2") == 50
