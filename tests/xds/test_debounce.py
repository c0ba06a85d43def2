"""Pushes are debounced: a burst of updates is one push, and a steady stream still pushes in time."""

from __future__ import annotations

import asyncio

from tests.harness.meshes import shop_mesh
from xds.controlplane import ControlPlane
from xds.mesh.objects import mesh_from_objects


def test_a_burst_of_updates_is_one_push() -> None:
    async def scenario() -> float:
        cp = ControlPlane(debounce=0.05)
        await cp.start("127.0.0.1:0")
        try:
            mesh = mesh_from_objects(shop_mesh())
            before = cp.push_counter._value.get()
            for _ in range(20):
                cp.update(mesh)
            await asyncio.sleep(0.3)
            return cp.push_counter._value.get() - before
        finally:
            await cp.stop()

    assert asyncio.run(scenario()) == 1


def test_a_steady_stream_of_updates_is_pushed_within_max_delay() -> None:
    async def scenario() -> float:
        cp = ControlPlane(debounce=0.2, max_delay=0.3)
        await cp.start("127.0.0.1:0")
        try:
            mesh = mesh_from_objects(shop_mesh())
            before = cp.push_counter._value.get()
            for _ in range(20):  # an update every 50 ms for 1 s: never 200 ms of quiet
                cp.update(mesh)
                await asyncio.sleep(0.05)
            return cp.push_counter._value.get() - before
        finally:
            await cp.stop()

    assert asyncio.run(scenario()) >= 2
