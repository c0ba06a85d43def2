"""The session's test node (node.py): started once for all `node` tests, serialized machine-wide by a lock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.node.node import TestNode


@pytest.fixture(scope="session")
def test_node() -> Iterator[TestNode]:
    node = TestNode()
    try:
        node.start()
        yield node
    finally:
        node.stop()
