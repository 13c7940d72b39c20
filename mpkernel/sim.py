"""The emulated board: Debian's MicroPython for the BBC micro:bit under QEMU, on a pty.

`Simulator().start()` boots the real firmware with its UART on a pseudo-terminal that pyserial
opens like a USB serial port, and a QEMU monitor socket for hard resets. The filesystem lives
in emulated flash: it survives `hard_reset()` and is gone when QEMU exits.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mpkernel.errors import MpkernelError

FIRMWARE_HEX = Path("/usr/share/firmware-microbit-micropython/firmware.hex")
INSTALL_HINT = (
    "Install them with: sudo apt-get install qemu-system-arm firmware-microbit-micropython "
    "(Debian/Ubuntu), or connect a real board with %connect PORT."
)
_PTY_LINE = re.compile(rb"char device redirected to (/dev/pts/\d+)")


def _die_with_parent() -> None:
    """In the QEMU child before exec: end it when the process that started it ends.

    A kernel that Jupyter kills (SIGKILL on restart) runs no atexit handler, and QEMU, in a
    session of its own, would run on forever. Linux's parent-death signal covers that case.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before the signal was armed
        os._exit(1)


class SimulatorMissing(MpkernelError):
    """QEMU or the micro:bit firmware is not installed."""


def check_installed(firmware: Path = FIRMWARE_HEX) -> str:
    """Return the qemu-system-arm path, or raise SimulatorMissing naming what to install."""
    qemu = shutil.which("qemu-system-arm")
    missing = []
    if qemu is None:
        missing.append("qemu-system-arm (package qemu-system-arm)")
    if not firmware.exists():
        missing.append(f"the micro:bit firmware {firmware} (package firmware-microbit-micropython)")
    if missing:
        raise SimulatorMissing(
            "The emulated board cannot start: missing " + " and ".join(missing) + ".", INSTALL_HINT
        )
    assert qemu is not None
    return qemu


class Simulator:
    """One QEMU micro:bit. Use as a context manager or call start()/stop()."""

    def __init__(self, firmware: Path = FIRMWARE_HEX) -> None:
        self.firmware = Path(firmware)
        self.pty_path: str = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="mpkernel-sim-"))
        self.monitor_path = str(self._dir / "monitor.sock")

    def start(self, timeout: float = 10.0) -> Simulator:
        qemu = check_installed(self.firmware)
        cmd = [
            qemu, "-M", "microbit",
            "-device", f"loader,file={self.firmware}",
            "-nographic", "-serial", "pty",
            "-monitor", f"unix:{self.monitor_path},server,nowait",
        ]
        # A session of its own: Jupyter interrupts a kernel by signalling its process group,
        # and that SIGINT must stop the cell, not kill the emulated board.
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        atexit.register(self.stop)
        assert self._proc.stdout is not None
        # QEMU names the pty on its first line of output; read it with a deadline, since a
        # QEMU that fails prints an error and exits instead.
        deadline = time.monotonic() + timeout
        seen = b""
        fd = self._proc.stdout.fileno()
        os.set_blocking(fd, False)
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                chunk = b""
            seen += chunk
            found = _PTY_LINE.search(seen)
            if found:
                self.pty_path = found.group(1).decode()
                break
            if self._proc.poll() is not None:
                raise MpkernelError(
                    f"QEMU exited at start: {seen.decode(errors='replace').strip()}", INSTALL_HINT
                )
            time.sleep(0.02)  # waiting on a child process's first line; nothing to read to yet
        else:
            self.stop()
            raise MpkernelError("QEMU did not report its serial pty within {timeout:.0f} s")
        self._wait_for_monitor(deadline)
        return self

    def _wait_for_monitor(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if os.path.exists(self.monitor_path):
                return
            time.sleep(0.02)
        raise MpkernelError("QEMU's monitor socket did not appear")

    def monitor(self, command: str, timeout: float = 3.0) -> str:
        """Send one QEMU monitor command and return its answer text."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.monitor_path)
            banner = b""
            while not banner.endswith(b"(qemu) "):
                banner += sock.recv(4096)
            sock.sendall(command.encode() + b"\n")
            answer = b""
            while not answer.rstrip().endswith(b"(qemu)"):
                part = sock.recv(4096)
                if not part:
                    break
                answer += part
        return answer.decode(errors="replace")

    def hard_reset(self) -> None:
        """Like pressing the reset button: the board reboots, files survive."""
        self.monitor("system_reset")

    def wait(self, timeout: float) -> None:
        """Block until QEMU exits or `timeout` passes."""
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
