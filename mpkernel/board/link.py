"""Opening and closing a port: local serial devices and pyserial URLs alike.

`Link` wraps `serial.serial_for_url`, so `rfc2217://`, `socket://` and `loop://` need no code
of their own. It is the only module that touches pyserial objects; the protocol above it sees
`write`, `read` and `pulse_reset`.
"""

from __future__ import annotations

import errno
import os
import time

import serial

from mpkernel import platform_support as plat
from mpkernel.errors import LinkLost, PortBusy, PortError, ResetUnsupported

try:
    import termios

    _TERMIOS_ERROR: tuple[type[Exception], ...] = (termios.error,)
except ImportError:  # Windows
    _TERMIOS_ERROR = ()

# How long one blocking read waits at most; the caller's loop regains control this often, so
# interrupts and deadlines are acted on within this time even on a silent line.
READ_TICK = 0.05

# MPKERNEL_TRACE=FILE appends every byte sent to and read from a board, with the time, to
# FILE: what a bug report about a lost board needs, and what a failed browser test prints.
TRACE_VARIABLE = "MPKERNEL_TRACE"


class _Trace:
    """Appends one line per write or read: seconds since the link opened, direction, bytes."""

    def __init__(self, path: str, port: str) -> None:
        self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - a log
        self._start = time.monotonic()
        self.note(f"opened {port}")

    def note(self, text: str) -> None:
        self._file.write(f"{time.monotonic() - self._start:10.3f} -- {text}\n")

    def data(self, direction: str, data: bytes) -> None:
        if data:
            self._file.write(f"{time.monotonic() - self._start:10.3f} {direction} {data!r}\n")

    def close(self) -> None:
        self.note("closed")
        self._file.close()


is_url = plat.is_url


class Link:
    """One open port. Raises PortError/PortBusy on open, LinkLost when it vanishes in use."""

    _trace: _Trace | None = None

    def __init__(self, port: str, baudrate: int = 115200) -> None:
        # The name the OS lists it under (COM3 for com3, /dev/cu.X for macOS's /dev/tty.X).
        self.port = port if is_url(port) else plat.normalize_port(port)
        self.baudrate = baudrate
        self._serial = _open(self.port, baudrate)
        self.closed = False
        trace = os.environ.get(TRACE_VARIABLE)
        self._trace = _Trace(trace, self.port) if trace else None

    # -- data ---------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._trace:
            self._trace.data(">", data)
        try:
            self._serial.write(data)
            self._serial.flush()
        except (OSError, serial.SerialException, *_TERMIOS_ERROR) as err:
            # flush() is tcdrain: on a pty whose other end vanished it raises termios.error
            # (EIO), which is not an OSError (seen when the relay unplugged mid-upload).
            raise self._lost(err) from None

    def read(self, timeout: float = READ_TICK) -> bytes:
        """Wait up to `timeout` for data; return what has arrived (b"" if nothing)."""
        try:
            if self._serial.timeout != timeout:
                self._serial.timeout = timeout
            first = self._serial.read(1)
            if not first:
                return b""
            waiting = self._serial.in_waiting
            got = first + (self._serial.read(waiting) if waiting else b"")
        except (OSError, serial.SerialException, TypeError, AttributeError) as err:
            # pyserial raises TypeError/AttributeError from a port closed under it by another
            # thread (the file descriptor became None); both mean the link is gone.
            raise self._lost(err) from None
        if self._trace:
            self._trace.data("<", got)
        return got

    def pending(self) -> bytes:
        """Whatever has already arrived, without waiting."""
        try:
            waiting = self._serial.in_waiting
            got = self._serial.read(waiting) if waiting else b""
        except (OSError, serial.SerialException, TypeError, AttributeError) as err:
            raise self._lost(err) from None
        if self._trace:
            self._trace.data("<", got)
        return got

    def _lost(self, err: Exception) -> LinkLost:
        if self._trace:
            self._trace.note(f"lost: {err}")
        return LinkLost(
            f"The connection to {self.port} was lost ({err}).",
            "The cable may have been pulled or the board re-enumerated after a reset; "
            "the next cell reconnects by itself when the board is back.",
        )

    # -- modem lines ----------------------------------------------------------------------
    def pulse_reset(self) -> None:
        """Hard-reset an ESP32-style board: EN low through RTS with IO0 (DTR) released.

        Holding DTR while releasing RTS would enter the ROM bootloader instead, so DTR stays
        released throughout. Raises ResetUnsupported where the link has no modem lines.
        """
        if self.port.startswith(("socket://", "loop://")):
            raise ResetUnsupported(
                f"{self.port} is a network socket without modem lines, so it cannot reset "
                "the board.",
                "Press the board's reset button, or use an rfc2217:// or local serial port.",
            )
        try:
            self._serial.dtr = False
            self._serial.rts = True
            # The EN pin needs a held low pulse; there is nothing to read meanwhile.
            time.sleep(0.1)
            self._serial.rts = False
        except OSError as err:
            if err.errno == errno.ENOTTY:
                raise ResetUnsupported(
                    f"{self.port} has no modem lines (it is a pseudo-terminal), so DTR/RTS "
                    "cannot reset the board.",
                    "Press the board's reset button, or power-cycle it.",
                ) from None
            raise self._lost(err) from None
        except serial.SerialException as err:
            raise self._lost(err) from None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self._serial.close()
            except (OSError, serial.SerialException):
                pass  # closing a port that vanished: there is nothing left to release
            if self._trace:
                self._trace.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open(port: str, baudrate: int) -> serial.SerialBase:
    local = not is_url(port)
    if local:
        port = plat.normalize_port(port)
    # Only device files can be checked before opening; Windows COM ports show only on open.
    if plat.is_device_file(port) and not os.path.exists(port):
        raise PortError(f"Port {port} does not exist.", _ports_hint(port))
    try:
        ser = serial.serial_for_url(port, do_not_open=True, baudrate=baudrate,
                                    timeout=READ_TICK)
        if local:
            # POSIX: a flock(), so a second kernel gets EWOULDBLOCK instead of sharing the
            # port. Windows opens COM ports exclusively anyway.
            ser.exclusive = True
        ser.open()
    except (serial.SerialException, OSError) as err:
        raise _explain_open_error(port, err) from None
    if local:
        _refuse_if_shared(port, ser)
    return ser


def _explain_open_error(port: str, err: Exception) -> PortError:
    text = str(err)
    kind = plat.classify_open_error(err)
    if kind == "busy":
        return _busy(port)
    if kind == "permission":
        return PortError(f"Permission denied opening {port}.", plat.permission_hint(port))
    if kind == "missing":
        return PortError(f"Port {port} does not exist.", _ports_hint(port))
    if kind == "failing":
        return PortError(f"Could not open {port}: {text}", plat.failing_hint(port))
    if kind == "refused":
        return PortError(
            f"Nothing is listening at {port} ({text}).",
            "Check the host and port of the serial server.",
        )
    return PortError(f"Could not open {port}: {text}", _ports_hint(port))


def _busy(port: str) -> PortBusy:
    holders = plat.find_holders(port)
    holders.found = [(pid, name) for pid, name in holders.found if pid != os.getpid()]
    message, hint = plat.busy_text(port, holders)
    return PortBusy(message, hint)


def _refuse_if_shared(port: str, ser: serial.SerialBase) -> None:
    # Terminal programs (screen, minicom, picocom) do not take the flock, so the lock alone
    # would let two programs steal each other's bytes.
    if any(pid != os.getpid() for pid, _ in plat.find_holders(port).found):
        ser.close()
        raise _busy(port)


def _ports_hint(port: str) -> str:
    try:
        from mpkernel.board.ports import format_ports, list_ports

        listing = format_ports(list_ports())
    except Exception:  # listing ports is a courtesy in an error message; never mask the error
        listing = ""
    hint = (f"{plat.missing_hint(port)}\nChoose one with %connect PORT (or %connect sim for "
            "the emulated board).")
    return f"{listing}\n{hint}" if listing else hint
