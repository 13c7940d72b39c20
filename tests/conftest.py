"""Shared fixtures: the emulated boards, the fault-injection relay, a connected Board."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness.fixtures import (  # noqa: F401  (registered by their short names)
    microbit_sim_fixture,
    qemu_sim_fixture,
    relay_fixture,
    rfc2217_relay_fixture,
    sim_fd_fixture,
    sim_fixture,
)
from harness.relay import Relay, comports_with

from mpkernel.board import Board


@pytest.fixture
def board(relay: Relay) -> Iterator[Board]:
    """A Board connected to the emulated micro:bit through the relay (no QEMU open delay)."""
    connected = Board(relay.url, lister=lambda: comports_with([relay]), reattach_wait=5.0)
    connected.connect()
    try:
        yield connected
    finally:
        connected.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "boards(*names, reason): run this device test only on these emulated boards",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) a device test on a board its `boards` marker leaves out: a test that
    cannot apply there (the micro:bit's own modules) is not a pass on that board."""
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("boards")
        callspec = getattr(item, "callspec", None)
        board = callspec.params.get("sim") if callspec is not None else None
        if marker is not None and board is not None and board not in marker.args:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
