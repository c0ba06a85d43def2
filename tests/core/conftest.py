"""Every `_core` test runs against both implementations: the Cython extension and its pure-Python twin."""

from __future__ import annotations

from types import ModuleType

import pytest

import _core
import _core._reference as reference


@pytest.fixture(params=["cython", "python"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    return _core if request.param == "cython" else reference
