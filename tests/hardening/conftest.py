"""Fixtures for the hardening tests, and the h2spec table (ours next to Envoy's) in pytest's terminal summary."""

from __future__ import annotations

import pytest

from tests.ztunnel.conftest import backends, envoys, procs  # noqa: F401  (the ztunnel tests' fixtures, shared)

H2SPEC_TABLES = pytest.StashKey[list[str]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    for table in config.stash.get(H2SPEC_TABLES, []):
        terminalreporter.write_sep("=", "h2spec: ours next to Envoy's")
        terminalreporter.write_line(table)
