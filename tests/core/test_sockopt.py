"""original_dst: netfilter's SO_ORIGINAL_DST read from a socket's fd, in both implementations."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.ztunnel.netns import NetNS

VIP, VIP_PORT = "10.96.7.7", 8080
LISTENER = ("127.0.0.1", 15001)


@pytest.fixture(scope="module")
def netns() -> Iterator[NetNS]:
    """A namespace where VIP:VIP_PORT is DNATed to the listener, as the ztunnel's capture rules do."""
    ns = NetNS(f"zt-core-{os.getpid()}")
    ns.ex("ip", "addr", "add", f"{VIP}/32", "dev", "lo")
    ns.dnat(VIP, VIP_PORT, f"{LISTENER[0]}:{LISTENER[1]}")
    yield ns
    ns.delete()


def _accepted(ns: NetNS, dst: tuple[str, int], impl: ModuleType) -> tuple[bytes, int] | None:
    def run() -> tuple[bytes, int] | None:
        with socket.create_server(LISTENER) as server, socket.create_connection(dst, timeout=5):
            conn, _ = server.accept()
            with conn:
                return impl.original_dst(conn.fileno())  # type: ignore[no-any-return]

    return ns.run_in(run)


@pytest.mark.ztunnel
def test_redirected_socket_gives_the_address_it_was_sent_to(netns: NetNS, impl: ModuleType) -> None:
    assert _accepted(netns, (VIP, VIP_PORT), impl) == (socket.inet_aton(VIP), VIP_PORT)


@pytest.mark.ztunnel
def test_socket_dialled_directly_gives_the_address_dialled(netns: NetNS, impl: ModuleType) -> None:
    # conntrack tracks it too, so its "original" destination is simply where it was sent
    assert _accepted(netns, LISTENER, impl) == (socket.inet_aton(LISTENER[0]), LISTENER[1])


def test_fd_that_is_not_a_socket_gives_none(impl: ModuleType) -> None:
    r, w = os.pipe()
    try:
        assert impl.original_dst(r) is None
    finally:
        os.close(r)
        os.close(w)


def test_closed_fd_gives_none(impl: ModuleType) -> None:
    s = socket.socket()
    fd = s.fileno()
    s.close()
    assert impl.original_dst(fd) is None
