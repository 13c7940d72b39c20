"""pytest fixtures over the emulated board and the relay; the lead's conftest imports them.

    from harness.fixtures import sim, relay, rfc2217_relay  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mpkernel.sim import Simulator, SimulatorMissing

from .relay import Relay


@pytest.fixture(scope="session")
def sim() -> Iterator[Simulator]:
    """One QEMU micro:bit for the whole session (boot is cheap, but its flash is shared)."""
    try:
        simulator = Simulator().start()
    except SimulatorMissing as exc:
        pytest.skip(str(exc))
    try:
        yield simulator
    finally:
        simulator.stop()


def _relay(sim: Simulator, front: str) -> Iterator[Relay]:
    relay = Relay(sim, front=front)
    try:
        # Also absorbs QEMU's ~1 s wait before it talks to a newly opened pty.
        assert relay.sync_board(timeout=8), "the emulated board did not answer at its prompt"
        yield relay
    finally:
        relay.stop()
        # pytest shows captured output only for failing tests: the traffic that led there.
        print(f"--- relay traffic ({front}) ---\n{relay.log_text()}")


@pytest.fixture
def relay(sim: Simulator) -> Iterator[Relay]:
    """The board at an idle friendly prompt behind a pty front (relay.url is a path)."""
    yield from _relay(sim, "pty")


@pytest.fixture
def rfc2217_relay(sim: Simulator) -> Iterator[Relay]:
    """The board behind an RFC 2217 front with DTR/RTS reset (relay.url is rfc2217://...)."""
    yield from _relay(sim, "rfc2217")
