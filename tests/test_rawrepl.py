"""The raw REPL protocol against a scripted fake device (no board needed).

The fake speaks the device side of raw and raw-paste mode as pyexec.c does, and checks what
the host may not do: overrun the raw-paste window, or send a plain-raw program in one burst.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from mpkernel.errors import BoardTimeout
from mpkernel.rawrepl import RAW_BANNER, RawRepl, ResetDuringExec

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
        self.programs: list[bytes] = []
        self.overrun = False
        self.early_end_after: int | None = None
        self.baudrate = 10_000_000  # unpaced unless a test sets a real line rate

    # -- Link interface ---------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self.writes.append(data)
        for byte in data:
            self._byte(byte)

    def read(self, timeout: float = 0.05) -> bytes:
        data, self.out = bytes(self.out), bytearray()
        return data

    def pending(self) -> bytes:
        return self.read()

    # -- device side ------------------------------------------------------------------
    def _byte(self, byte: int) -> None:
        if self.mode == "paste":
            self._paste_byte(byte)
            return
        if self.mode == "paste-ended":
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
                self.out += b"R\x01" + self.paste_window.to_bytes(2, "little")
                self.mode = "paste"
                self.paste_received = 0
                self.paste_credit = self.paste_window
                self.code.clear()
            return
        if byte == 0x01:
            self.code.clear()
            self.out += b"\r\n" + RAW_BANNER
        elif byte == 0x05:
            self.mode = "paste-request"
        elif byte == 0x03:
            self.code.clear()  # Ctrl-C at the raw prompt empties the line, prints nothing
        elif byte == 0x04:
            self.out += b"OK"
            self._run()
        else:
            self.code.append(byte)

    def _paste_byte(self, byte: int) -> None:
        assert self.paste_window is not None
        if byte == 0x04:
            self.out += b"\x04"
            self._run()
            return
        self.paste_received += 1
        if self.paste_received > self.paste_credit:
            self.overrun = True
        self.code.append(byte)
        if self.early_end_after is not None and self.paste_received >= self.early_end_after:
            self.out += b"\x04"  # gave up reading: a syntax error, say
            self.mode = "paste-ended"
            self.programs.append(bytes(self.code))
            return
        if self.paste_received % self.paste_window == 0:
            self.paste_credit += self.paste_window
            self.out += b"\x01"

    def _run(self) -> None:
        self.programs.append(bytes(self.code))
        stdout, stderr = self.runner(bytes(self.code))
        self.out += stdout if stderr is None else stdout + b"\x04" + stderr + b"\x04>"
        self.code.clear()
        self.mode = "raw"


def run(repl: RawRepl, code: bytes) -> tuple[bytes, bytes]:
    chunks: list[bytes] = []
    repl.send_code(code, timeout=1.0)
    stderr = repl.follow(chunks.append, lambda state: None)
    return b"".join(chunks), stderr


def test_plain_raw_mode_when_the_firmware_has_no_raw_paste() -> None:
    device = FakeDevice(paste_window=None)
    repl = RawRepl(device)  # type: ignore[arg-type]
    stdout, stderr = run(repl, b"print(1)")
    assert stdout == b"ran 8\r\n" and stderr == b""
    assert repl.raw_paste is False
    assert device.programs == [b"print(1)"]
    # Asked once per connection: the second program goes straight to plain raw mode.
    run(repl, b"x=1")
    assert sum(w.startswith(b"\x05A\x01") for w in device.writes) == 1


def test_plain_raw_mode_holds_to_the_line_rate_in_small_bursts() -> None:
    device = FakeDevice(paste_window=None)
    device.baudrate = 115200
    repl = RawRepl(device)  # type: ignore[arg-type]
    code = b"# " + b"x" * 1500 + b"\nprint(2)"
    started = time.monotonic()
    run(repl, code)
    took = time.monotonic() - started
    assert device.programs[-1] == code
    # Half of the micro:bit's 63-byte receive ring at most, and no faster than 11,520 B/s.
    assert max(len(w) for w in device.writes) <= 32
    assert took >= (len(code) - 32) / 11520


def test_a_short_program_goes_in_one_write_without_waiting() -> None:
    device = FakeDevice(paste_window=None)
    device.baudrate = 115200
    repl = RawRepl(device)  # type: ignore[arg-type]
    run(repl, b"x")  # learns that there is no raw-paste
    device.writes.clear()
    run(repl, b"print(1)")
    assert device.writes[-1] == b"print(1)\x04"


def test_raw_paste_respects_the_flow_control_window() -> None:
    device = FakeDevice(paste_window=32)
    repl = RawRepl(device)  # type: ignore[arg-type]
    code = b"a = 1\n" * 200
    stdout, _ = run(repl, code)
    assert repl.raw_paste is True
    assert device.programs == [code]
    assert not device.overrun
    assert stdout == f"ran {len(code)}\r\n".encode()


def test_raw_paste_stops_sending_when_the_device_ends_early() -> None:
    def syntax_error(code: bytes) -> tuple[bytes, bytes]:
        return b"", b"SyntaxError: invalid syntax\r\n"

    device = FakeDevice(paste_window=16, runner=syntax_error)
    device.early_end_after = 20
    repl = RawRepl(device)  # type: ignore[arg-type]
    repl.send_code(b"x = (" * 100, timeout=1.0)
    sent = sum(len(w) for w in device.writes)
    assert sent < 100  # it stopped well before the 500-byte program was through
    assert device.writes[-1] == b"\x04"  # and answered the early end


def test_stdout_streams_and_stderr_is_separate() -> None:
    def failing(code: bytes) -> tuple[bytes, bytes]:
        return b"partial\r\n", b"Traceback...\r\nValueError: no\r\n"

    device = FakeDevice(runner=failing)
    stdout, stderr = run(RawRepl(device), b"raise ValueError('no')")  # type: ignore[arg-type]
    assert stdout == b"partial\r\n"
    assert stderr.endswith(b"ValueError: no\r\n")


def test_a_soft_reset_in_the_output_ends_the_exec_with_the_boot_text() -> None:
    def resets(code: bytes) -> tuple[bytes, bytes]:
        return b"before\r\nsoft reboot\r\nraw REPL; CTRL-B to exit\r\n>", None

    device = FakeDevice(runner=resets)
    repl = RawRepl(device)  # type: ignore[arg-type]
    shown: list[bytes] = []
    repl.send_code(b"machine.soft_reset()", timeout=1.0)
    with pytest.raises(ResetDuringExec) as info:
        repl.follow(shown.append, lambda state: None)
    assert b"".join(shown) == b"before\r\n"
    assert info.value.boot_output.startswith(b"soft reboot")
    assert info.value.at_prompt


def test_a_hard_reset_banner_includes_its_first_line() -> None:
    banner = (b"\x00MicroPython v1.9.2 on 2017-09-01; micro:bit with nRF51822\r\n"
              b'Type "help()" for more information.\r\n>>> ')

    device = FakeDevice(runner=lambda code: (b"tick\r\n" + banner, None))
    repl = RawRepl(device)  # type: ignore[arg-type]
    shown: list[bytes] = []
    repl.send_code(b"microbit.reset()", timeout=1.0)
    with pytest.raises(ResetDuringExec) as info:
        repl.follow(shown.append, lambda state: None)
    assert b"".join(shown) == b"tick\r\n"
    assert b"MicroPython v1.9.2" in info.value.boot_output


def test_waiting_for_a_marker_is_bounded_and_says_what_came() -> None:
    device = FakeDevice()
    device.out += b"garbage"
    repl = RawRepl(device)  # type: ignore[arg-type]
    with pytest.raises(BoardTimeout) as info:
        repl.read_until(b"OK", timeout=0.1)
    assert "garbage" in str(info.value)


def test_stale_bytes_before_ok_are_ignored() -> None:
    device = FakeDevice()
    device.out += b"old output from a previous session\r\n"
    stdout, _ = run(RawRepl(device), b"print(1)")  # type: ignore[arg-type]
    assert stdout == b"ran 8\r\n"
