"""The host's end of the relay, the part a test unplugs: a pty behind a symlink, or a
one-client RFC 2217 server whose DTR/RTS drive the board's EN like an ESP32 dev board's bridge.
(What each raises after an unplug is in relay.py's docstring.)
"""

from __future__ import annotations

import os
import socket
import threading
import tty
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from serial.rfc2217 import PortManager

from .wire import write_all


class PtyFront:
    """A pty pair behind a symlink; the kernel opens the link, the relay holds the master."""

    def __init__(self, link: Path) -> None:
        self.master, self._slave = os.openpty()
        # Holding the slave ourselves keeps the master from hitting EIO whenever the kernel has
        # the port closed; raw mode stops the line discipline echoing what the board prints.
        tty.setraw(self._slave)
        os.set_blocking(self.master, False)
        link.unlink(missing_ok=True)
        link.symlink_to(os.ttyname(self._slave))
        self.link, self.url, self.closed = link, str(link), False

    def read_fds(self) -> list[int]:
        return [self.master]

    def read(self, fd: int) -> bytes:
        try:
            return os.read(self.master, 4096)
        except OSError:  # BlockingIOError on a spurious wake-up; EIO would mean a hang-up
            return b""

    def write(self, data: bytes) -> bool:
        return not self.closed and write_all(self.master, data, lambda: self.closed)

    def close(self) -> None:
        self.closed = True
        self.link.unlink(missing_ok=True)
        os.close(self.master)  # the kernel's slave fd is hung up: the cable is out
        os.close(self._slave)


class ModemLines:
    """The 'serial port' PortManager drives: settings are stored, DTR/RTS changes reported."""

    def __init__(self, changed: Callable[[], None]) -> None:
        self.baudrate, self.bytesize, self.parity, self.stopbits = 115200, 8, "N", 1
        self.xonxoff = self.rtscts = self.break_condition = False
        self.cts = self.dsr = self.ri = self.cd = False  # a bare bridge: no inputs asserted
        self.dtr = self.rts = False
        self._changed = changed  # set last: the assignments above are not line changes

    def __setattr__(self, name: str, value: object) -> None:
        super().__setattr__(name, value)
        if name in ("dtr", "rts") and "_changed" in self.__dict__:
            self._changed()

    def drop(self) -> None:
        """Both lines released in one step, as closing a real port does (one change reported:
        released one after the other, the moment between is RTS asserted with DTR released,
        which is the EN-low reset pulse)."""
        super().__setattr__("dtr", False)
        super().__setattr__("rts", False)
        self._changed()

    def reset_input_buffer(self) -> None:
        """A purge drops nothing here: queued output is what the board has not printed yet."""

    def reset_output_buffer(self) -> None:
        """Likewise: bytes queued towards the board are already on the wire."""


class Rfc2217Front:
    """A one-client RFC 2217 server; DTR/RTS drive EN like an ESP32 dev board's bridge."""

    def __init__(self, port: int, on_en: Callable[[bool, bool, bool], None]) -> None:
        self._listener = socket.create_server(("127.0.0.1", port))  # SO_REUSEADDR on POSIX
        self.port = self._listener.getsockname()[1]
        self.url = f"rfc2217://127.0.0.1:{self.port}"
        self._on_en = on_en
        self._conn: socket.socket | None = None
        self._manager: PortManager | None = None
        self._lines = ModemLines(self._lines_changed)
        self._send_lock = threading.Lock()
        self.closed = False

    def read_fds(self) -> list[socket.socket]:
        return [self._listener] + ([self._conn] if self._conn is not None else [])

    def read(self, fd: socket.socket) -> bytes:
        if fd is self._listener:
            conn, _ = self._listener.accept()
            if self._conn is not None:
                conn.close()  # one client at a time, like a serial port opened exclusively
                return b""
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # latency is ours
            conn.settimeout(2.0)
            self._conn = conn
            self._lines = ModemLines(self._lines_changed)
            # PortManager answers telnet/RFC 2217 requests through .write, unescaped.
            self._manager = PortManager(self._lines, SimpleNamespace(write=self._send))
            return b""
        try:
            data = fd.recv(4096)
        except OSError:
            data = b""
        if not data:
            self._drop_client()
            return b""
        assert self._manager is not None
        return b"".join(self._manager.filter(data))

    def _drop_client(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        # Closing a real port drops DTR and RTS together, which leaves EN high.
        self._lines.drop()

    def _lines_changed(self) -> None:
        lines = self._lines
        self._on_en(lines.rts and not lines.dtr, lines.dtr, lines.rts)

    def write(self, data: bytes) -> bool:
        """The data path: telnet-escape the board's bytes for the client."""
        return self._send(data.replace(b"\xff", b"\xff\xff"))

    def _send(self, raw: bytes) -> bool:
        conn = self._conn
        if conn is None:
            return False
        try:
            with self._send_lock:
                conn.sendall(raw)
            return True
        except OSError:
            return False

    def close(self) -> None:
        self.closed = True
        self._listener.close()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


Front = PtyFront | Rfc2217Front
