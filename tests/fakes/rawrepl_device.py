"""A scripted MicroPython raw REPL behind a Link-shaped object (no board, no QEMU).

The device side follows shared/runtime/pyexec.c of MicroPython 1.25: plain raw mode (`OK`,
stdout, 0x04, stderr, 0x04, `>`) and raw-paste mode (`R\\x01`, the window size, a first 0x01,
one 0x01 per window read, 0x04 to acknowledge the end or to say it stopped reading early and
then waits for Ctrl-C/Ctrl-D; Ctrl-C during a paste answers 0x04 and raises
KeyboardInterrupt before anything runs). Faults are scripted by byte counts: stop granting
credit, go silent, or reboot in the middle of a paste.

`python_runner` runs programs on the host in one namespace per boot, which is enough for
Board's own internal steps (nonce, session marker) and for cells with side effects.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Callable

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
BOOT_BANNER = (b"\x00MicroPython v1.25.0 on 2025-04-15; mps2-an385 with Cortex-M3\r\n"
               b'Type "help()" for more information.\r\n>>> ')
KEYBOARD_INTERRUPT = b"Traceback (most recent call last):\r\nKeyboardInterrupt: \r\n"

# A runner returns (stdout, stderr); stderr None means the board never finished (a reset).
Runner = Callable[[bytes], tuple[bytes, bytes | None]]


def echo_runner(code: bytes) -> tuple[bytes, bytes]:
    return b"ran " + str(len(code)).encode() + b"\r\n", b""


class FakeDevice:
    """A link whose far end is a MicroPython raw REPL (optionally with raw-paste)."""

    def __init__(self, paste_window: int | None = None, runner: Runner = echo_runner) -> None:
        self.paste_window = paste_window  # None: firmware without raw-paste (answers "ra")
        self.runner = runner
        self.out = bytearray()
        self.closed = False
        self.writes: list[bytes] = []
        self.code = bytearray()
        self.mode = "raw"
        self.paste_received = 0
        self.paste_credit = 0
        self.programs: list[bytes] = []  # every program the device compiled
        self.overrun = False
        self.early_end_after: int | None = None  # stop reading (a syntax error) after N bytes
        self.stall_after: int | None = None  # grant no more credit after N pasted bytes
        self.silent_after: int | None = None  # after N pasted bytes, never answer again
        self.reset_after: int | None = None  # after N pasted bytes, reboot (boot banner)
        self.resets = 0
        self.baudrate = 10_000_000  # unpaced unless a test sets a real line rate
        self.lock = threading.Lock()  # tests may write from a timer thread

    # -- Link interface ---------------------------------------------------------------
    def write(self, data: bytes) -> None:
        with self.lock:
            self.writes.append(bytes(data))
            resets = self.resets
            for byte in data:
                if self.resets != resets:
                    break  # the rest of this write arrived while the board was booting: lost
                self._byte(byte)

    def read(self, timeout: float = 0.05) -> bytes:
        with self.lock:
            data, self.out = bytes(self.out), bytearray()
        if not data:
            # A real port blocks in select() until data or the timeout; a short nap keeps a
            # waiting host from spinning without slowing the tests down.
            time.sleep(min(timeout, 0.005))
        return data

    def pending(self) -> bytes:
        with self.lock:
            data, self.out = bytes(self.out), bytearray()
        return data

    def close(self) -> None:
        self.closed = True

    # -- device side ------------------------------------------------------------------
    def _byte(self, byte: int) -> None:
        if self.mode == "dead":
            return
        if self.mode == "friendly":
            self._friendly_byte(byte)
            return
        if self.mode == "paste":
            self._paste_byte(byte)
            return
        if self.mode == "paste-ended":
            # pyexec's reader close(): read on until Ctrl-C or Ctrl-D, then report the error.
            if byte in (0x03, 0x04):
                _, stderr = self.runner(bytes(self.code))
                self.out += b"\x04" + (stderr or b"") + b"\x04>"
                self.code.clear()
                self.mode = "raw"
            return
        if self.mode == "paste-request":
            self.mode = "paste-request-A" if byte == ord("A") else "raw"
            return
        if self.mode == "paste-request-A":
            self.mode = "raw"
            if byte != 0x01:
                return
            if self.paste_window is None:
                # Old firmware ignores 0x05 and 'A' and takes 0x01 as "re-print the banner".
                self.out += RAW_BANNER
            else:
                self.out += b"R\x01" + self.paste_window.to_bytes(2, "little") + b"\x01"
                self.mode = "paste"
                self.paste_received = 0
                self.paste_credit = 2 * self.paste_window
                self.code.clear()
            return
        if byte == 0x01:
            self.code.clear()
            self.out += b"\r\n" + RAW_BANNER
        elif byte == 0x02:
            self.mode = "friendly"
            self.out += b"\r\n" + BOOT_BANNER[1:]
        elif byte == 0x05:
            self.mode = "paste-request"
        elif byte == 0x03:
            self.code.clear()  # Ctrl-C at the raw prompt empties the line, prints nothing
        elif byte == 0x04:
            self.out += b"OK"
            self._run()
        else:
            self.code.append(byte)

    def _friendly_byte(self, byte: int) -> None:
        if byte == 0x01:
            self.mode = "raw"
            self.code.clear()
            self.out += b"\r\n" + RAW_BANNER
        elif byte == 0x03:
            self.out += b"\r\n>>> "
        elif 0x20 <= byte < 0x7F or byte == 0x0D:
            self.out.append(byte)  # the friendly REPL echoes what is typed

    def _paste_byte(self, byte: int) -> None:
        assert self.paste_window is not None
        if byte == 0x04:
            self.out += b"\x04"
            self._run()
            return
        if byte == 0x03:
            self.out += b"\x04\x04" + KEYBOARD_INTERRUPT + b"\x04>"
            self.code.clear()
            self.mode = "raw"
            return
        self.paste_received += 1
        if self.paste_received > self.paste_credit:
            self.overrun = True
        self.code.append(byte)
        count = self.paste_received
        if self.reset_after is not None and count >= self.reset_after:
            self.reboot()
            return
        if self.silent_after is not None and count >= self.silent_after:
            self.mode = "dead"
            return
        if self.early_end_after is not None and count >= self.early_end_after:
            self.out += b"\x04"  # gave up reading: a syntax error, say
            self.mode = "paste-ended"
            self.programs.append(bytes(self.code))
            return
        stalled = self.stall_after is not None and count >= self.stall_after
        if count % self.paste_window == 0 and not stalled:
            self.paste_credit += self.paste_window
            self.out += b"\x01"

    def reboot(self) -> None:
        """A hard reset: RAM and the half-received program are gone; the banner follows."""
        self.resets += 1
        self.code.clear()
        self.mode = "friendly"
        self.reset_after = None
        reboot = getattr(self.runner, "reboot", None)
        if reboot is not None:
            reboot()
        self.out += BOOT_BANNER

    def _run(self) -> None:
        self.programs.append(bytes(self.code))
        stdout, stderr = self.runner(bytes(self.code))
        self.out += stdout if stderr is None else stdout + b"\x04" + stderr + b"\x04>"
        self.code.clear()
        self.mode = "raw"


class PythonRunner:
    """Runs each program with the host's Python in one namespace per boot, MicroPython-style:
    a compile error has one `File "<stdin>", line N` frame, a run-time error `, in <module>`."""

    def __init__(self) -> None:
        self.namespace: dict = {}

    def reboot(self) -> None:
        self.namespace = {}

    def __call__(self, code: bytes) -> tuple[bytes, bytes]:
        try:
            compiled = compile(code.decode(errors="replace"), "<stdin>", "exec")
        except SyntaxError as err:
            return b"", (b'Traceback (most recent call last):\r\n  File "<stdin>", line %d\r\n'
                         b"%s: invalid syntax\r\n" % (err.lineno or 1, type(err).__name__.encode()))
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compiled, self.namespace)
        except Exception as err:  # the board reports every exception the same way
            text = (f'Traceback (most recent call last):\r\n  File "<stdin>", line '
                    f"{_line_of(err)}, in <module>\r\n{type(err).__name__}: {err}\r\n")
            return _crlf(out.getvalue()), text.encode()
        return _crlf(out.getvalue()), b""


def _line_of(err: Exception) -> int:
    tb = err.__traceback__
    line = 1
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<stdin>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()
