"""The doctor against scripted fake boards (a pyserial URL handler) and the emulated micro:bit."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import serial

from mpkernel.board import doctor
from mpkernel.board.doctor import Timing, Verdict, diagnose
from mpkernel.errors import PortError

sys.path.insert(0, str(Path(__file__).parent))
if "fakes" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("fakes")

FAST = Timing(listen=0.3, answer=0.6, round=0.25, settle=0.25, probe=0.3)


def fake(scenario: str, baud: int | None = None) -> str:
    return f"fakeserial://{scenario}" + (f"?baud={baud}" if baud else "")


@pytest.mark.parametrize(
    ("scenario", "verdict", "words"),
    [
        ("idle", Verdict.OK, "MicroPython is fine"),
        ("raw", Verdict.OK, "MicroPython is fine"),
        ("busy", Verdict.BUSY_STOPPED, "Ctrl-C stopped it"),
        ("quietbusy", Verdict.BUSY_STOPPED, "busy"),
        ("swallow", Verdict.SWALLOWS_CTRL_C, "ignores Ctrl-C"),
        ("rom", Verdict.BOOTLOADER, "ROM bootloader"),
        ("romloop", Verdict.NO_FIRMWARE, "flash looks empty"),
        ("circuitpython", Verdict.OTHER_FIRMWARE, "CircuitPython"),
        ("at", Verdict.OTHER_FIRMWARE, "AT-command"),
        ("arduino", Verdict.OTHER_FIRMWARE, "another firmware"),
    ],
)
def test_scenarios(scenario: str, verdict: Verdict, words: str) -> None:
    diag = diagnose(fake(scenario), timing=FAST)
    assert diag.verdict is verdict, diag.text()
    assert words in diag.summary
    assert diag.ok == (verdict is Verdict.OK)


def test_banner_is_reported() -> None:
    diag = diagnose(fake("idle"), timing=FAST)
    assert "banner: MicroPython v1.22.0" in diag.text()
    assert diag.next_step.startswith("Connect with %connect")


def test_noise_at_wrong_baud_names_the_right_rate() -> None:
    diag = diagnose(fake("busy", 57600), timing=FAST)
    assert diag.verdict is Verdict.WRONG_BAUD, diag.text()
    assert diag.baudrate == 57600
    assert "57600" in diag.summary and "wrong baud rate" in diag.text()


def test_silent_at_wrong_baud_finds_the_rate() -> None:
    diag = diagnose(fake("idle", 9600), timing=FAST)
    assert diag.verdict is Verdict.WRONG_BAUD, diag.text()
    assert diag.baudrate == 9600


def test_silence_is_bounded() -> None:
    # The slowest path: nothing answers, then every common rate is tried.
    start = time.monotonic()
    diag = diagnose(fake("silent"), timing=FAST)
    assert diag.verdict is Verdict.SILENT and "Nothing received" in diag.summary
    budget = FAST.listen + FAST.answer + FAST.settle + len(doctor.COMMON_BAUDS) * FAST.probe
    assert time.monotonic() - start < budget + 1.0


def test_missing_port_lists_the_ports_that_exist() -> None:
    lister = lambda: [SimpleNamespace(device="/dev/ttyACM7", vid=0x2E8A, pid=0x0005,  # noqa: E731
                                      serial_number="E66", description="Board in FS mode",
                                      hwid="", location="1-1:1.0")]
    diag = diagnose("/dev/does-not-exist", lister=lister)
    assert diag.verdict is Verdict.MISSING
    assert "/dev/ttyACM7" in diag.next_step and "RP2040" in diag.next_step
    assert doctor.cli_main("/dev/does-not-exist") == 1


def test_permission_denied_names_the_group(tmp_path: Path) -> None:
    node = tmp_path / "ttyFAKE"
    node.write_bytes(b"")

    def refuse(url: str, baud: int, timeout: float):
        raise serial.SerialException(errno.EACCES, f"could not open port {url}: Permission denied")

    diag = diagnose(str(node), opener=refuse)
    assert diag.verdict is Verdict.PERMISSION
    assert "usermod -aG" in diag.next_step and "log out" in diag.next_step


@pytest.fixture
def pty_path():
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)  # keep only the master, so no fd of ours holds the slave
    yield path
    os.close(master)


def test_port_locked_by_another_kernel_is_busy(pty_path: str) -> None:
    # Another kernel in this very process holds the exclusive lock (who_holds skips our PID,
    # so this exercises the flock path).
    holder = serial.serial_for_url(pty_path, timeout=0.05, exclusive=True)
    try:
        diag = diagnose(pty_path, timing=FAST)
    finally:
        holder.close()
    assert diag.verdict is Verdict.IN_USE, diag.text()
    assert "in use by another program" in diag.summary


def test_port_open_in_another_process_names_its_pid(pty_path: str) -> None:
    code = ("import sys; f = open(sys.argv[1], 'rb', buffering=0); print('ready', flush=True); "
            "sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code, pty_path], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        diag = diagnose(pty_path, timing=FAST)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=5)
    assert diag.verdict is Verdict.IN_USE
    assert f": {os.path.basename(sys.executable)[:15]} (PID {child.pid})." in diag.summary


def test_noise_ratio() -> None:
    assert doctor.noise_ratio(b"MicroPython v1.22\r\n>>> ") == 0
    assert doctor.noise_ratio("héllo wörld".encode()) == 0
    assert doctor.looks_like_noise(bytes(range(0x80, 0xA0)))
    assert not doctor.looks_like_noise(b"\x00MicroPython v1.9.2 on 2017-09-01\r\n")


# --- the emulated micro:bit ------------------------------------------------------------------

@pytest.fixture(scope="module", params=["microbit", "qemu"])
def sim(request: pytest.FixtureRequest):
    """A board of the doctor's own: it opens the pty itself, and the session's shared board
    may be held open by the relay fixtures. A missing emulator fails the test (the README's
    test command installs both boards), it is not a reason to skip."""
    from mpkernel.sim import ModernBoard, simulator_for

    board = ModernBoard(fresh=True) if request.param == "qemu" else simulator_for("microbit")
    with board:
        yield board


def _read_until(port: serial.Serial, marker: bytes, seconds: float) -> bytes:
    got = b""
    deadline = time.monotonic() + seconds
    while marker not in got and time.monotonic() < deadline:
        got += port.read(64)
    assert marker in got, got
    return got


def _start_program(pty: str, code: bytes) -> None:
    """Leave `code` running on the board: raw REPL, send, wait for OK, close the port."""
    with serial.serial_for_url(pty, timeout=0.05, exclusive=True) as port:
        # The pty passes input about 1 s after opening, so allow a few seconds here.
        port.write(b"\x03\x03\x01")
        _read_until(port, b"raw REPL; CTRL-B to exit\r\n>", 5)
        port.write(code + b"\x04")
        _read_until(port, b"OK", 3)


@pytest.mark.device
def test_emulated_board_is_fine(sim) -> None:
    diag = diagnose(sim.pty_path)
    assert diag.verdict is Verdict.OK, diag.text()
    # The doctor names the firmware it found: the board's own version.
    assert sim.banner.split()[1].lstrip("v") in diag.text(), diag.text()


@pytest.mark.device
def test_emulated_board_busy_then_stopped(sim) -> None:
    _start_program(sim.pty_path, b"import time\nn = 0\nwhile True:\n    n += 1\n"
                                 b"    print(n)\n    time.sleep_ms(20)\n")
    diag = diagnose(sim.pty_path)
    assert diag.verdict is Verdict.BUSY_STOPPED, diag.text()
    again = diagnose(sim.pty_path)
    assert again.verdict is Verdict.OK, again.text()


# --- the %doctor magic -----------------------------------------------------------------------


class _HeldBoard:
    """Stands in for the kernel's Board: the doctor must release it around the check."""

    def __init__(self, port: str, url: str) -> None:
        self.port, self.url, self.baudrate = port, url, 115200
        self.events: list[str] = []

    @contextmanager
    def released(self, note=print, wait: float = 30.0):
        self.events.append("released")
        yield self.url
        self.events.append("reattached")


def _run_doctor(line: str, board=None, resolve=None) -> str:
    from mpkernel.magics import MagicContext, registry

    out: list[str] = []
    ctx = MagicContext(get_board=lambda: board, write=out.append, make_progress=None,
                       resolve_port=resolve, peek_board=lambda: board)
    spec = registry()["%doctor"]
    spec.handler(ctx, spec.parse(line))
    return "".join(out)


def test_doctor_magic_releases_the_kernels_board() -> None:
    board = _HeldBoard("sim", fake("idle"))
    text = _run_doctor("", board=board, resolve=lambda: "sim")
    assert board.events == ["released", "reattached"]
    assert "MicroPython is fine" in text


def test_doctor_magic_on_another_port_leaves_the_board_alone() -> None:
    board = _HeldBoard("/dev/ttyACM0", "/dev/ttyACM0")
    text = _run_doctor(fake("rom"), board=board)
    assert board.events == [] and "ROM bootloader" in text


def test_doctor_magic_without_a_port_explains_the_choice() -> None:
    def resolve() -> str:
        raise PortError("2 ports look like boards; which one?", "Choose one with %connect PORT")

    text = _run_doctor("", resolve=resolve)
    assert "which one?" in text and "%connect PORT" in text
