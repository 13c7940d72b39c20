"""Shared fixtures: the emulated boards, the fault-injection relay, a connected Board."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from harness.fixtures import (  # noqa: F401  (registered by their short names)
    default_boards,
    lossy_relay_fixture,
    microbit_sim_fixture,
    qemu_sim_fixture,
    relay_fixture,
    rfc2217_relay_fixture,
    sim_fd_fixture,
    sim_fixture,
)
from harness.relay import LossyRelay, Relay, comports_with

from mpkernel import platform_support
from mpkernel.board.board import Board
from mpkernel.host.mqtt.broker import Broker


@pytest.fixture
def on(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """`on("win32")`, `on("darwin")`, `on("linux")`: the OS as mpkernel sees it, faked at its
    one boundary (platform_support.PLATFORM), for the tests of each platform's path."""
    def set_platform(name: str) -> None:
        monkeypatch.setattr(platform_support, "PLATFORM", name)

    return set_platform


@pytest.fixture
def board(relay: Relay) -> Iterator[Board]:
    """A Board connected to the emulated board (each of them) through the relay (no QEMU open
    delay)."""
    connected = Board(relay.url, lister=lambda: comports_with([relay]), reattach_wait=5.0)
    connected.connect()
    try:
        yield connected
    finally:
        connected.close()


@pytest.fixture
def lossy_board(lossy_relay: LossyRelay) -> Iterator[Board]:
    """A Board connected through the relay that can drop or garble board-bound bytes."""
    connected = Board(lossy_relay.url, lister=lambda: comports_with([lossy_relay]),
                      reattach_wait=8.0)
    connected.connect()
    try:
        yield connected
    finally:
        connected.close()


@pytest.fixture(scope="module")
def local_broker() -> Iterator[Broker]:
    """A mosquitto of the test's own on loopback, for the MQTT tests of one module."""
    from mpkernel.host.mqtt.broker import start_broker

    b = start_broker(port=0, bind="127.0.0.1")
    try:
        yield b
    finally:
        b.stop()
    assert not b.running


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "boards(*names, reason): run this device test only on these emulated boards",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep a device test only on the boards it runs on: those its `boards` marker names, else
    those MPK_BOARDS names. The others are deselected, not skipped: a test that does not apply
    to a board (or is not yet expected to pass there) is not a pass on that board."""
    defaults = default_boards()
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        board = callspec.params.get("sim") if callspec is not None else None
        marker = item.get_closest_marker("boards")
        wanted = marker.args if marker is not None else defaults
        (keep if board is None or board in wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
