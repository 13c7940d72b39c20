"""One QEMU process with the board's UART on a pty and a monitor socket: what every emulated
board shares. A subclass says which command line to run (`_command`) and what is missing.

Where platform_support says so (Windows: no `-serial pty`, no unix-socket monitor) the UART
and the monitor are loopback TCP ports instead, and the board's address is
`socket://127.0.0.1:PORT`, which pyserial (and so Link) opens like a port."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from mpkernel import platform_support
from mpkernel.errors import MpkernelError

# Linux names the pty /dev/pts/N, macOS /dev/ttysNNN.
_PTY_LINE = re.compile(rb"char device redirected to (/dev/(?:pts/\d+|ttys\d+))")

_LOOPBACK = "127.0.0.1"
#: QEMU starts that failed because another program took a chosen port first, before giving up
_BIND_ATTEMPTS = 4
#: how QEMU says a port was taken ("Failed to find an available port: Address already in use"
#: in 7.2; the errno's text may differ on Windows)
_BIND_FAILED = ("Address already in use", "Failed to find an available port",
                "Failed to bind socket")
_KEEP_OUTPUT = 16384  # the tail of QEMU's own output kept for error messages


def _free_ports(count: int) -> list[int]:
    """Loopback ports free a moment ago (another program may take one before QEMU binds it:
    start() then tries again with new ones)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((_LOOPBACK, 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


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


def send_monitor(address: str, command: str, timeout: float = 3.0) -> str:
    """Send one command to a QEMU monitor at `address` (`unix:PATH` or `tcp:HOST:PORT`) and
    return its answer text. OSError when nothing answers there."""
    kind, _, where = address.partition(":")
    if kind == "tcp":
        host, _, port = where.rpartition(":")
        sock = socket.create_connection((host, int(port)), timeout)
    elif kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(where)
        except OSError:
            sock.close()
            raise
    else:
        raise ValueError(f"not a monitor address: {address!r} (unix:PATH or tcp:HOST:PORT)")
    with sock:
        sock.settimeout(timeout)
        banner = b""
        while not banner.endswith(b"(qemu) "):
            part = sock.recv(4096)
            if not part:
                raise ConnectionResetError("QEMU's monitor closed the connection")
            banner += part
        sock.sendall(command.encode() + b"\n")
        answer = b""
        while not answer.rstrip().endswith(b"(qemu)"):
            part = sock.recv(4096)
            if not part:
                break
            answer += part
    return answer.decode(errors="replace")


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
        #: where the board's UART is: a pty (/dev/pts/N), or on TCP `socket://127.0.0.1:PORT`
        self.pty_path: str = ""
        #: the monitor's loopback TCP port when on TCP (0: the unix socket at monitor_path)
        self.monitor_port = 0
        self._output = b""
        self._reader: threading.Thread | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="mpkernel-sim-"))
        self.monitor_path = str(self._dir / "monitor.sock")

    def _command(self, qemu: str) -> list[str]:
        """QEMU's arguments up to the serial and monitor options (which this class adds)."""
        raise NotImplementedError

    def _find_qemu(self) -> str:
        return find_qemu(self.hint)

    @property
    def address(self) -> str:
        """What Board/Link open: the pty's path, or the socket:// URL on TCP."""
        return self.pty_path

    def start(self, timeout: float = 10.0) -> QemuBoard:
        self._dir.mkdir(parents=True, exist_ok=True)  # stop() removed it
        if platform_support.qemu_serial_transport() == "tcp":
            return self._start_tcp(timeout)
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

    def _start_tcp(self, timeout: float) -> QemuBoard:
        """QEMU with its UART and monitor on loopback TCP ports; its output is drained by a
        thread (a pipe cannot be read with a deadline on Windows before Python 3.12)."""
        deadline = time.monotonic() + timeout
        base = self._command(self._find_qemu())  # once: it may take locks (the flash file)
        for attempt in range(_BIND_ATTEMPTS):
            serial_port, monitor_port = _free_ports(2)
            cmd = base + [
                "-nographic",
                # Without a client QEMU drops what the board prints, as a pty nobody reads.
                "-serial", f"tcp:{_LOOPBACK}:{serial_port},server=on,wait=off,nodelay=on",
                "-monitor", f"tcp:{_LOOPBACK}:{monitor_port},server=on,wait=off",
            ]
            self._spawn(cmd)
            self.monitor_port = monitor_port
            if self._wait_for_tcp(serial_port, deadline):
                self.pty_path = f"socket://{_LOOPBACK}:{serial_port}"
                return self
            seen = self._output.decode(errors="replace").strip()
            if self._proc is not None and self._proc.poll() is None:
                self.stop()
                raise MpkernelError(
                    f"QEMU did not open its serial port {serial_port} within {timeout:.0f} s")
            self._end_process()
            if any(text in seen for text in _BIND_FAILED) and attempt + 1 < _BIND_ATTEMPTS:
                continue  # another program took a port between choosing it and QEMU's bind
            self.stop()
            raise MpkernelError(f"QEMU exited at start: {seen}", self.hint)
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _spawn(self, cmd: list[str]) -> None:
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            **platform_support.child_popen_options(),
        )
        self._tie = platform_support.tie_to_this_process(self._proc)
        atexit.register(self.stop)
        assert self._proc.stdout is not None
        self._output = b""
        self._reader = threading.Thread(
            target=self._drain, args=(self._proc.stdout.fileno(),), daemon=True,
            name="qemu-output",
        )
        self._reader.start()

    def _drain(self, fd: int) -> None:
        """Keep the tail of QEMU's output (its errors) and never let the pipe fill up."""
        while True:
            try:
                chunk = os.read(fd, 4096)  # blocking: ends with QEMU (end of file)
            except OSError:
                return
            if not chunk:
                return
            self._output = (self._output + chunk)[-_KEEP_OUTPUT:]

    def _wait_for_tcp(self, serial_port: int, deadline: float) -> bool:
        """True once the monitor answers and lists the serial port; False if QEMU exited
        (its output then says why) or the deadline passed."""
        assert self._proc is not None
        # The monitor answers from QEMU's main loop, which runs after every chardev is bound.
        listed = f"tcp:{_LOOPBACK}:{serial_port},server"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                if self._reader is not None:
                    self._reader.join(2)  # the rest of its output, up to the end of file
                return False
            try:
                if listed in self.monitor("info chardev", timeout=1.0):
                    return True
            except OSError:
                pass  # not listening yet
            time.sleep(0.05)  # QEMU is still starting; nothing to wait on but its port
        return False

    def _wait_for_monitor(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if os.path.exists(self.monitor_path):
                return
            time.sleep(0.02)
        raise MpkernelError("QEMU's monitor socket did not appear")

    @property
    def monitor_address(self) -> str:
        """The monitor as `send_monitor` and `mpkernel sim --reset` take it:
        `unix:PATH` or `tcp:127.0.0.1:PORT`."""
        if self.monitor_port:
            return f"tcp:{_LOOPBACK}:{self.monitor_port}"
        return f"unix:{self.monitor_path}"

    def monitor(self, command: str, timeout: float = 3.0) -> str:
        """Send one QEMU monitor command and return its answer text."""
        return send_monitor(self.monitor_address, command, timeout)

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
        if self.running:
            self._before_stop()
        self._end_process()
        shutil.rmtree(self._dir, ignore_errors=True)
        self._stopped()

    def _end_process(self) -> None:
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
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.join(2)  # QEMU ended: its output pipe is at its end
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()

    def _before_stop(self) -> None:
        """While QEMU still runs, before a deliberate stop: a subclass saves what it must."""

    def _stopped(self) -> None:
        """After QEMU ended: a subclass releases what it holds."""

    def __enter__(self) -> QemuBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
