"""Shared fixtures: the emulated micro:bit, the fault-injection relay, a connected Board."""

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
