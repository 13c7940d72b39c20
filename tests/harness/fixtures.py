"""pytest fixtures over the emulated boards and the relay; the lead's conftest imports them.

    from harness.fixtures import relay_fixture, rfc2217_relay_fixture, sim_fixture  # noqa: F401

The functions are named *_fixture and registered under the short names (sim, relay,
rfc2217_relay), so test parameters do not shadow the imports.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mpkernel.sim import ModernBoard, QemuBoard, Simulator, SimulatorMissing

from .relay import LossyRelay, Relay
from .wire import open_board


def _started(board: QemuBoard) -> Iterator[QemuBoard]:
    try:
        board.start()
    except SimulatorMissing as exc:
        # A missing emulator is a broken set-up, not a reason to pass: the README's test
        # command installs (and builds) both boards.
        pytest.fail(str(exc.user_text()), pytrace=False)
    try:
        yield board
    finally:
        board.stop()


@pytest.fixture(scope="session", name="microbit_sim")
def microbit_sim_fixture() -> Iterator[QemuBoard]:
    """One QEMU micro:bit for the whole session (boot is cheap, but its flash is shared)."""
    yield from _started(Simulator())


@pytest.fixture(scope="session", name="qemu_sim")
def qemu_sim_fixture() -> Iterator[QemuBoard]:
    """One modern board (MicroPython 1.25) for the session, on a fresh, empty flash file."""
    yield from _started(ModernBoard(fresh=True))


def default_boards() -> list[str]:
    """The boards an unmarked device test runs on: both emulated boards unless MPK_BOARDS
    names fewer (MPK_BOARDS=microbit for a quicker local run).

    A test marked `@pytest.mark.boards(...)` runs on exactly the boards it names, whatever
    MPK_BOARDS says (tests/conftest.py deselects the other combinations).
    """
    return [name for name in os.environ.get("MPK_BOARDS", "microbit,qemu").split(",") if name]


@pytest.fixture(scope="session", name="sim", params=["microbit", "qemu"])
def sim_fixture(request: pytest.FixtureRequest) -> QemuBoard:
    """The emulated board a device test runs on; each such test runs once per board.

    A board starts only if some selected test uses it.
    """
    return request.getfixturevalue(f"{request.param}_sim")


@pytest.fixture(scope="session", name="sim_fd")
def sim_fd_fixture(sim: QemuBoard) -> Iterator[int]:
    """The board's pty, held for the session: QEMU talks to a new reader only after ~1 s."""
    fd = open_board(sim.pty_path)
    try:
        yield fd
    finally:
        os.close(fd)


def _relay(sim: QemuBoard, fd: int, front: str, kind: type[Relay] = Relay) -> Iterator[Relay]:
    relay = kind(sim, front=front, board_fd=fd)
    try:
        assert relay.sync_board(timeout=8), "the emulated board did not answer at its prompt"
        yield relay
    finally:
        relay.stop()
        # pytest shows captured output only for failing tests: the traffic that led there.
        print(f"--- relay traffic ({front}) ---\n{relay.log_text()}")


@pytest.fixture(name="relay")
def relay_fixture(sim: QemuBoard, sim_fd: int) -> Iterator[Relay]:
    """The board at an idle friendly prompt behind a pty front (relay.url is a path)."""
    yield from _relay(sim, sim_fd, "pty")


@pytest.fixture(name="rfc2217_relay")
def rfc2217_relay_fixture(sim: QemuBoard, sim_fd: int) -> Iterator[Relay]:
    """The board behind an RFC 2217 front with DTR/RTS reset (relay.url is rfc2217://...)."""
    yield from _relay(sim, sim_fd, "rfc2217")


@pytest.fixture(name="lossy_relay")
def lossy_relay_fixture(sim: QemuBoard, sim_fd: int) -> Iterator[LossyRelay]:
    """The pty relay that can also drop or garble board-bound bytes (LossyRelay)."""
    yield from _relay(sim, sim_fd, "pty", LossyRelay)  # type: ignore[misc]
