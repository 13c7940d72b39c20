"""The emulated boards on Windows: QEMU's UART and monitor on loopback TCP ports.

Windows' QEMU has no `-serial pty` and no unix-socket monitor, so there the board is at
`socket://127.0.0.1:PORT` and resets go through a TCP monitor. platform_support decides; the
OS is faked at that boundary (PLATFORM = "win32"), with the two process-tying calls that only
run on a real Windows (creationflags, job objects) replaced by the Linux ones.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from mpkernel import platform_support, sim
from mpkernel.board.board import Board
from mpkernel.board.link import Link
from mpkernel.errors import ResetUnsupported
from mpkernel.sim import _qemu, microbit, modern
from mpkernel.sim.cache import find_firmware

_LINUX_POPEN = {"start_new_session": True, "preexec_fn": platform_support._die_with_parent}


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(platform_support, "PLATFORM", "win32")
    monkeypatch.setattr(platform_support, "child_popen_options", lambda: dict(_LINUX_POPEN))
    monkeypatch.setattr(platform_support, "tie_to_this_process",
                        lambda proc: platform_support.Tie())
    # the modern board's files in a flash file of this test's own (Board("sim:qemu") makes it)
    monkeypatch.setenv("MPKERNEL_QEMU_FLASH", str(tmp_path / "flash.bin"))


def _no_microbit_firmware() -> bool:
    """Whether no micro:bit firmware is found (Debian's, uflash's or the named one)."""
    try:
        microbit.find_firmware()
    except sim.SimulatorMissing:
        return True
    return False


NO_MICROBIT = _no_microbit_firmware()

BOARDS = [
    pytest.param("microbit", marks=pytest.mark.skipif(NO_MICROBIT, reason="no micro:bit firmware")),
    pytest.param("qemu", marks=pytest.mark.skipif(
        find_firmware() is None, reason="the modern board is not built")),
]


def test_the_platform_picks_the_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, kind in (("win32", "tcp"), ("linux", "pty"), ("darwin", "pty")):
        monkeypatch.setattr(platform_support, "PLATFORM", name)
        assert platform_support.qemu_serial_transport() == kind


class Client:
    """The board's UART as a plain TCP client, read to markers with deadlines."""

    def __init__(self, address: str) -> None:
        host, _, port = address.removeprefix("socket://").partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.seen = b""

    def read_until(self, marker: bytes, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"no {marker!r} within {timeout} s; got {self.seen[-300:]!r}"
            self.sock.settimeout(left)
            chunk = self.sock.recv(4096)
            assert chunk, "QEMU closed the serial connection"
            self.seen += chunk
        return self.seen

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("name", BOARDS)
def test_board_starts_on_tcp_runs_a_cell_and_hard_resets_through_the_tcp_monitor(
    windows: None, name: str,
) -> None:
    board = Board("sim" if name == "microbit" else f"sim:{name}")
    try:
        board.connect()
        emulator = board.simulator
        assert emulator is not None
        assert emulator.address.startswith("socket://127.0.0.1:")
        assert board.url == emulator.address
        assert emulator.monitor_port and not Path(emulator.monitor_path).exists()
        assert board.exec("x = 6 * 7\nprint(x)").strip() == "42"
        message = board.hard_reset()
        assert "emulator's reset line" in message and "variables are gone" in message
        assert "NameError" in _error_of(board, "print(x)")
        # the board's own pins have no modem lines behind a socket: said, not attempted
        with pytest.raises(ResetUnsupported, match="without modem lines"):
            board.link.pulse_reset()  # type: ignore[union-attr]
    finally:
        board.close()
    assert emulator._proc is None


def _error_of(board: Board, code: str) -> str:
    try:
        board.exec(code)
    except Exception as err:  # the test wants the error's name
        return f"{type(err).__name__}: {err}"
    return ""


@pytest.mark.parametrize("name", BOARDS)
def test_tcp_board_reboots_on_a_monitor_reset(windows: None, name: str) -> None:
    emulator = sim.simulator_for(name)
    with emulator:
        client = Client(emulator.address)
        try:
            client.sock.sendall(b"\r\x03\x02")  # Ctrl-C, Ctrl-B: a friendly prompt
            client.read_until(b">>> ")
            client.seen = b""
            emulator.hard_reset()
            client.read_until(emulator.banner.encode())
        finally:
            client.close()
        assert "Address already in use" not in emulator._output.decode(errors="replace")


@pytest.mark.skipif(NO_MICROBIT, reason="no micro:bit firmware")
def test_a_port_taken_before_qemu_binds_it_is_retried(
    windows: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    real = _qemu._free_ports
    calls = []

    def racy(count: int) -> list[int]:
        calls.append(count)
        ports = real(count)
        return [taken.getsockname()[1], *ports[1:]] if len(calls) == 1 else ports

    monkeypatch.setattr(_qemu, "_free_ports", racy)
    try:
        with sim.Simulator() as emulator:
            assert len(calls) == 2
            assert str(taken.getsockname()[1]) not in emulator.address
            assert _answer(emulator.address, b"print(6*7)", b"\r\n42\r\n")
    finally:
        taken.close()


def _answer(address: str, code: bytes, expected: bytes) -> bool:
    """Run `code` at the friendly REPL through a Link on the socket:// address; whether the
    board printed `expected` within 10 s."""
    with Link(address) as link:
        link.write(b"\r\x03\x02")
        seen, deadline = b"", time.monotonic() + 10
        while b">>> " not in seen and time.monotonic() < deadline:
            seen += link.read(0.2)
        link.write(code + b"\r")
        while expected not in seen and time.monotonic() < deadline:
            seen += link.read(0.2)
        return expected in seen


@pytest.mark.skipif(NO_MICROBIT, reason="no micro:bit firmware")
def test_a_qemu_that_fails_says_why(windows: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim.Simulator, "_command",
                        lambda self, qemu: [qemu, "-M", "no-such-machine"])
    with pytest.raises(Exception, match="QEMU exited at start: .*unsupported machine type"):
        sim.Simulator().start()


@pytest.mark.skipif(NO_MICROBIT, reason="no micro:bit firmware")
def test_linux_keeps_the_pty_and_the_unix_monitor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform_support, "PLATFORM", "linux")
    with sim.Simulator() as emulator:
        assert emulator.pty_path.startswith("/dev/pts/")
        assert emulator.monitor_port == 0 and Path(emulator.monitor_path).exists()
        assert emulator._reader is None
        assert "7." in emulator.monitor("info version")  # the answer, as on TCP


def test_the_flash_file_is_locked_with_msvcrt_where_there_is_no_fcntl(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    held: dict[int, bool] = {}

    class FakeMsvcrt:  # msvcrt.locking as Windows does it: OSError when another holds it
        LK_NBLCK = 2

        @staticmethod
        def locking(fd: int, mode: int, nbytes: int) -> None:
            assert (mode, nbytes) == (2, 1)
            if held:
                raise PermissionError(13, "Permission denied")
            held[fd] = True

    monkeypatch.setattr(modern, "fcntl", None)
    monkeypatch.setitem(sys.modules, "msvcrt", FakeMsvcrt)
    first = sim.ModernBoard(tmp_path / "flash.bin")
    first._hold_flash()
    with pytest.raises(Exception, match="in use by another emulated board"):
        sim.ModernBoard(tmp_path / "flash.bin")._hold_flash()
    first._stopped()
