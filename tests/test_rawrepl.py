"""The raw REPL protocol against a scripted fake device (no board needed).

The fake (tests/fakes/rawrepl_device.py) speaks the device side of raw and raw-paste mode as
pyexec.c does, and checks what the host may not do: overrun the raw-paste window, or send a
plain-raw program in one burst. Every wait of a raw-paste upload has a deadline.
"""

from __future__ import annotations

import threading
import time

import pytest
from fakes.rawrepl_device import KEYBOARD_INTERRUPT, FakeDevice

from mpkernel.board.rawrepl import PasteStalled, RawRepl, ResetDuringExec
from mpkernel.errors import BoardTimeout, Interrupted


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
    # The board then reports its error in the usual frame, and is back at its prompt.
    assert repl.follow(lambda out: None, lambda state: None) == b"SyntaxError: invalid syntax\r\n"
    assert run(repl, b"y") == (b"", b"SyntaxError: invalid syntax\r\n")
    assert device.programs[-1] == b"y"


def test_output_starting_with_0x01_is_not_taken_for_flow_control() -> None:
    device = FakeDevice(paste_window=32, runner=lambda code: (b"\x01\x01data\r\n", b""))
    assert run(RawRepl(device), b"print('\\x01\\x01data')")[0] == b"\x01\x01data\r\n"  # type: ignore[arg-type]


BIG = b"values = [1, 2, 3]\n" * 500  # 9.5 KB: many windows


def test_a_paste_the_board_stops_taking_ends_within_the_deadline() -> None:
    device = FakeDevice(paste_window=128)
    device.stall_after = 1000
    repl = RawRepl(device)  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(PasteStalled) as info:
        repl.send_code(BIG, timeout=0.5)
    assert time.monotonic() - started < 1.5
    # It sent what it had credit for, no more, and says so; Ctrl-C made the board stop
    # reading, so no program ran, and the next one does.
    sent = 2 * 128 + (1000 // 128) * 128
    assert f"after {sent:,} of {len(BIG):,} bytes" in str(info.value)
    assert "the board stopped reading it and none of it ran" in str(info.value)
    assert device.programs == [] and not device.overrun
    device.stall_after = None
    assert run(repl, b"x = 1") == (b"ran 5\r\n", b"")


def test_a_board_that_goes_silent_mid_paste_cannot_hold_the_sender() -> None:
    device = FakeDevice(paste_window=128)
    device.silent_after = 300
    repl = RawRepl(device)  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(PasteStalled) as info:
        repl.send_code(BIG, timeout=0.5)
    # One deadline for the credit, one for the board's answer to Ctrl-C: both bounded.
    assert time.monotonic() - started < 2.0
    assert "did not confirm within" in str(info.value)


def test_a_reset_during_a_paste_is_raised_with_the_boot_text() -> None:
    device = FakeDevice(paste_window=128)
    device.reset_after = 2000
    repl = RawRepl(device)  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(ResetDuringExec) as info:
        repl.send_code(BIG, timeout=2.0)
    assert time.monotonic() - started < 1.0  # the banner ends the wait, not a deadline
    assert info.value.while_sending is True
    assert info.value.at_prompt is True
    assert b"MicroPython v1.25.0" in info.value.boot_output
    assert device.programs == []


def test_an_interrupt_frees_a_stalled_sender_and_the_board_stays_usable() -> None:
    device = FakeDevice(paste_window=128)
    device.stall_after = 1000
    repl = RawRepl(device)  # type: ignore[arg-type]
    asked = threading.Event()
    threading.Timer(0.2, asked.set).start()
    started = time.monotonic()
    with pytest.raises(Interrupted) as info:
        repl.send_code(BIG, timeout=30.0, should_stop=asked.is_set)
    assert time.monotonic() - started < 0.5  # freed at once, not after the 30 s deadline
    assert "Interrupted while the cell was being sent" in str(info.value)
    assert "the board stopped reading it and none of it ran" in str(info.value)
    assert device.writes[-1] == b"\x03"  # Ctrl-C: the device's way to abandon a paste
    assert device.programs == []
    device.stall_after = None
    assert run(repl, b"x = 1") == (b"ran 5\r\n", b"")


def test_ctrl_c_during_a_paste_is_answered_as_pyexec_does() -> None:
    # The shape the host relies on when it abandons a paste (see _abandon_paste).
    device = FakeDevice(paste_window=128)
    device.write(b"\x05A\x01")
    device.read()
    device.write(b"x = 1\n\x03")
    assert device.read() == b"\x04\x04" + KEYBOARD_INTERRUPT + b"\x04>"


def test_stdout_streams_and_stderr_is_separate() -> None:
    def failing(code: bytes) -> tuple[bytes, bytes]:
        return b"partial\r\n", b"Traceback...\r\nValueError: no\r\n"

    device = FakeDevice(runner=failing)
    stdout, stderr = run(RawRepl(device), b"raise ValueError('no')")  # type: ignore[arg-type]
    assert stdout == b"partial\r\n"
    assert stderr.endswith(b"ValueError: no\r\n")


def follow_until_reset(device: FakeDevice, code: bytes) -> tuple[bytes, ResetDuringExec]:
    """Send `code`, follow it until the reset it causes; (what was shown, the reset)."""
    repl = RawRepl(device)  # type: ignore[arg-type]
    shown: list[bytes] = []
    repl.send_code(code, timeout=1.0)
    with pytest.raises(ResetDuringExec) as info:
        repl.follow(shown.append, lambda state: None)
    return b"".join(shown), info.value


def test_a_soft_reset_in_the_output_ends_the_exec_with_the_boot_text() -> None:
    def resets(code: bytes) -> tuple[bytes, bytes]:
        return b"before\r\nsoft reboot\r\nraw REPL; CTRL-B to exit\r\n>", None

    shown, reset = follow_until_reset(FakeDevice(runner=resets), b"machine.soft_reset()")
    assert shown == b"before\r\n"
    assert reset.boot_output.startswith(b"soft reboot")
    assert reset.at_prompt


def test_a_hard_reset_banner_includes_its_first_line() -> None:
    banner = (b"\x00MicroPython v1.9.2 on 2017-09-01; micro:bit with nRF51822\r\n"
              b'Type "help()" for more information.\r\n>>> ')

    shown, reset = follow_until_reset(FakeDevice(runner=lambda code: (b"tick\r\n" + banner,
                                                                      None)),
                                      b"microbit.reset()")
    assert shown == b"tick\r\n"
    assert b"MicroPython v1.9.2" in reset.boot_output


class _SplitDevice(FakeDevice):
    """Delivers its output in two reads, the first ending just after `cut` (a throttled line
    hands over whatever arrived so far)."""

    cut = b"Type "

    def read(self, timeout: float = 0.05) -> bytes:
        with self.lock:
            at = self.out.find(self.cut)
            if at >= 0 and self.cut:
                end = at + len(self.cut)
                data, self.out = bytes(self.out[:end]), self.out[end:]
                self.cut = b""
                return data
        return super().read(timeout)


@pytest.mark.parametrize("cut", [b"Type ", b"Cortex-M3\r\n", b"Cortex-M3\r"])
def test_a_banner_that_arrives_in_pieces_is_not_shown_as_output(cut: bytes) -> None:
    banner = (b"MicroPython v1.25.0 on 2026-11-27; mps2-an385 with Cortex-M3\r\n"
              b'Type "help()" for more information.\r\n>>> ')
    device = _SplitDevice(runner=lambda code: (b"tick 1\r\ntick 2\r\n" + banner, None))
    device.cut = cut
    shown, reset = follow_until_reset(device, b"machine.reset()")
    assert shown == b"tick 1\r\ntick 2\r\n"
    assert reset.boot_output.startswith(b"MicroPython v1.25.0")


def test_output_that_only_looks_like_a_banner_is_shown_once_the_line_goes_quiet() -> None:
    said = b"MicroPython v1.25.0 is what I run\r\nType on\r\n"
    device = FakeDevice(runner=lambda code: (said, b""))
    stdout, _ = run(RawRepl(device), b"print('...')")  # type: ignore[arg-type]
    assert stdout == said


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
