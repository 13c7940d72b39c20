"""One QEMU process with the board's UART on a pty and a monitor socket: what every emulated
board shares. A subclass says which command line to run (`_command`) and what is missing."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from mpkernel import platform_support
from mpkernel.errors import MpkernelError

# Linux names the pty /dev/pts/N, macOS /dev/ttysNNN.
_PTY_LINE = re.compile(rb"char device redirected to (/dev/(?:pts/\d+|ttys\d+))")


class SimulatorMissing(MpkernelError):
    """QEMU or an emulated board's firmware is not installed (or not built)."""


def find_qemu(hint: str) -> str:
    """The qemu-system-arm path, or SimulatorMissing with `hint` as the way out."""
    qemu = platform_support.find_qemu_binary()
    if qemu is None:
        raise SimulatorMissing(
            "The emulated board cannot start: missing qemu-system-arm (package "
            "qemu-system-arm).", platform_support.qemu_install_hint(hint),
        )
    return qemu


class QemuBoard:
    """A QEMU-emulated board. Use as a context manager or call start()/stop()."""

    #: short name in the registry (`mpkernel sim NAME`, `%connect sim:NAME`)
    name = ""
    #: how messages name it ("Connected to /dev/pts/3 (LABEL)")
    label = "the emulated board"
    #: said on connecting, where this board differs from a real one in a way a user notices
    notice = ""
    #: how its boot banner starts ("MicroPython v1.9.2"): proof in tests that it rebooted
    banner = "MicroPython"
    hint = ""

    def __init__(self) -> None:
        self.pty_path: str = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="mpkernel-sim-"))
        self.monitor_path = str(self._dir / "monitor.sock")

    def _command(self, qemu: str) -> list[str]:
        """QEMU's arguments up to the serial and monitor options (which this class adds)."""
        raise NotImplementedError

    def _find_qemu(self) -> str:
        return find_qemu(self.hint)

    def start(self, timeout: float = 10.0) -> QemuBoard:
        self._dir.mkdir(parents=True, exist_ok=True)  # stop() removed it
        cmd = self._command(self._find_qemu()) + [
            "-nographic", "-serial", "pty",
            "-monitor", f"unix:{self.monitor_path},server,nowait",
        ]
        # A session of its own: Jupyter interrupts a kernel by signalling its process group,
        # and that SIGINT must stop the cell, not kill the emulated board.
        # It must also end with this process however that ends: platform_support ties it.
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            **platform_support.child_popen_options(),
        )
        self._tie = platform_support.tie_to_this_process(self._proc)
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
                self.stop()
                raise MpkernelError(
                    f"QEMU exited at start: {seen.decode(errors='replace').strip()}", self.hint
                )
            time.sleep(0.02)  # waiting on a child process's first line; nothing to read to yet
        else:
            self.stop()
            raise MpkernelError(f"QEMU did not report its serial pty within {timeout:.0f} s")
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
    def pid(self) -> int | None:
        """QEMU's process id while it runs (for measuring it)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if getattr(self, "_tie", None) is not None:
            self._tie.release()  # a deliberate stop: the watchdog/job must not act on it
            self._tie = None
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
        self._stopped()

    def _stopped(self) -> None:
        """After QEMU ended: a subclass releases what it holds."""

    def __enter__(self) -> QemuBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
