"""Stopping what runs on the board: catching a busy board on connect, and the interrupt
ladder used while a cell runs. Both are bounded and end with a sentence for the user.

A program that lets KeyboardInterrupt through stops at the first Ctrl-C. One that catches
everything (`except:` in its loop) spends most of its time in sleeps or I/O inside its `try`,
so even bursts rarely land outside it: the ladder then says so and points to %rescue, which
hard-resets and interrupts at boot.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from mpkernel.board.rawrepl import RAW_BANNER, ExecState, RawRepl
from mpkernel.errors import MpkernelError

if TYPE_CHECKING:
    from mpkernel.board.board import Board

RETRY_EVERY = 0.5  # seconds between Ctrl-C retries
RETRIES = 3  # Ctrl-C retries before deciding the program swallows them
BURST_TICKS = 20  # one Ctrl-C per read tick (~1 s) as the last try on a printing program
SILENT_WAIT = 5.0  # how long a silent board (blocking call) is given in all


class InterruptFailed(MpkernelError):
    """The program on the board kept running despite every interrupt."""


class BoardBusy(MpkernelError):
    """Connecting found a program that does not stop."""


_RESCUE_HINT = (
    "Run %rescue: it hard-resets the board and sends Ctrl-C from the first moment of boot, "
    "before the program's try/except starts; then it offers to rename main.py."
)


class InterruptLadder:
    """The tick callback for a running exec: Ctrl-C, retry, burst, bounded wait, give up."""

    def __init__(self, board: Board, timeout: float | None = None) -> None:
        self.board = board
        self.timeout = timeout
        self.started_at: float | None = None
        self.last_sent = 0.0
        self.sent = 0
        self.bytes_at_start = 0
        self.burst_left = BURST_TICKS
        self.said_silent = False
        self.timed_out = False

    def _send(self) -> None:
        link = self.board.link
        if link is not None:
            link.write(b"\x03")
        self.sent += 1
        self.last_sent = time.monotonic()

    def tick(self, state: ExecState) -> None:
        now = time.monotonic()
        if self.timeout and not self.timed_out and now - state.started > self.timeout:
            self.timed_out = True
            self.board.note(f"The cell ran longer than {self.timeout:.0f} s; interrupting it.\n")
            self.board.interrupt()
        if not self.board.exec_interrupted:
            return
        if self.started_at is None:
            self.started_at = now
            self.bytes_at_start = state.stdout_bytes
            self._send()
            return
        if now - self.last_sent < RETRY_EVERY and self.burst_left == BURST_TICKS:
            return
        if self.sent <= RETRIES:
            self.board.note("No KeyboardInterrupt yet; sending Ctrl-C again.\n")
            self._send()
            return
        printing = state.idle < 1.0 and state.stdout_bytes > self.bytes_at_start
        if printing:
            if self.burst_left == BURST_TICKS:
                self.board.note(
                    "The program keeps printing: it seems to catch KeyboardInterrupt. "
                    "Sending a burst of Ctrl-C...\n"
                )
            if self.burst_left > 0:
                self.burst_left -= 1
                self._send()
                return
            self.board.busy_reason = "swallows Ctrl-C"
            raise InterruptFailed(
                "The program on the board ignores Ctrl-C: it keeps running and printing, so it "
                "catches KeyboardInterrupt (an `except:` in its loop). The cell has ended; the "
                "program is still running on the board.",
                _RESCUE_HINT,
            )
        if not self.said_silent:
            self.said_silent = True
            self.board.note(
                "The board is silent: it may be inside a blocking call (a socket read, input(), "
                f"a long sleep). Waiting up to {SILENT_WAIT:.0f} s in all...\n"
            )
        if now - self.started_at < SILENT_WAIT:
            if now - self.last_sent >= 1.0:
                self._send()
            return
        self.board.busy_reason = "silent after Ctrl-C"
        raise InterruptFailed(
            f"The board did not stop within {SILENT_WAIT:.0f} s of the interrupt and prints "
            "nothing: the program may be stuck in a blocking call that ignores Ctrl-C. The cell "
            "has ended; the board may still be busy.",
            "Run the next cell to try again, or %reset --hard; if the program catches "
            "KeyboardInterrupt, " + _RESCUE_HINT[4:],
        )


_TRACE_FILE = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)')
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f]")


def describe_stopped(seen: bytes) -> str:
    """A sentence about the program that Ctrl-C stopped, from what the board printed."""
    text = seen.decode(errors="replace").replace("\r\n", "\n")
    text = _CONTROL.sub("", text.replace("\x04", "\n"))  # raw mode frames with 0x04
    at = text.rfind("Traceback (most recent call last):")
    if at < 0 or "KeyboardInterrupt" not in text[at:]:
        return ""
    frames = list(_TRACE_FILE.finditer(text[at:]))
    outer = frames[0]["file"] if frames else "<stdin>"
    # The micro:bit names its main.py "__main__" in tracebacks.
    outer = "main.py" if outer == "__main__" else outer
    if outer in ("<stdin>", "<string>"):
        # Code sent through the REPL: a cell from an earlier session (or one whose
        # connection was lost) that was still running.
        what = "a program started from the REPL (an earlier cell or tool)"
    else:
        what = outer + (f" at line {frames[-1]['line']}" if frames else "")
    before = [
        line.strip() for line in text[:at].split("\n")
        if line.strip() and not line.lstrip().startswith((">>>", "raw REPL", ">", "OK"))
    ]
    last = before[-1] if before else ""
    if len(last) > 160:
        last = "..." + last[-157:]
    sentence = f"Stopped {what}, which was running"
    return sentence + (f"; its last output: {last}" if last else ".")


def catch_busy_board(
    repl: RawRepl, timeout: float, note: Callable[[str], None], listen: float = 0.0
) -> str:
    """Stop whatever runs and reach a raw prompt within `timeout` s.

    `listen` s are spent first reading what the board prints by itself (ended early by two
    line ends), so the sentence can quote a busy program's last output.
    Returns a sentence about what was stopped ("" if the board was idle). Raises BoardBusy
    naming the reason (ignores Ctrl-C, silent) otherwise.
    """
    link = repl.link
    seen = bytearray(repl.take_pending())
    listen_end = time.monotonic() + listen
    while time.monotonic() < listen_end and seen.count(b"\n") < 2:
        seen += link.read(min(0.05, max(0.0, listen_end - time.monotonic())))
    if listen and seen.count(b"\n") >= 2:
        # The port was opened mid-line: the first line heard may be a fragment.
        del seen[: seen.find(b"\n") + 1]
    start = time.monotonic()
    deadline = start + timeout
    # Ctrl-C stops a program, or discards a half-typed line (friendly or raw: never \r, which
    # would run it); Ctrl-A then enters raw mode, or re-prints the raw banner if already there.
    link.write(b"\x03\x03\x01")
    last_send = time.monotonic()
    sends = 1
    last_data = start
    while True:
        now = time.monotonic()
        data = link.read(min(0.05, max(0.0, deadline - now)))
        if data:
            seen += data
            last_data = time.monotonic()
        at = seen.rfind(RAW_BANNER)
        if at >= 0:
            # Later bytes (a second banner, a prompt) are noise from our own retries.
            repl.discard_input(quiet_for=0.05, limit=0.5)
            return describe_stopped(bytes(seen[:at]))
        now = time.monotonic()
        if now >= deadline:
            break
        # Output still flowing means a program still running: interrupt again.
        if now - last_send >= 0.4 and (now - last_data < 0.3 or now - start > 1.2):
            link.write(b"\x03\x03\x01")
            last_send = now
            sends += 1
    recent = bytes(seen[-200:]).decode(errors="replace").strip()
    lines = [line.strip() for line in _CONTROL.sub("", recent).splitlines() if line.strip()]
    if time.monotonic() - last_data < 0.5:
        raise BoardBusy(
            f"The board keeps running a program that ignores Ctrl-C (sent {sends} times in "
            f"{timeout:.1f} s); its last output: {' / '.join(lines[-2:])[-120:]}. Nothing is "
            "wrong with the firmware.",
            _RESCUE_HINT,
        )
    raise BoardBusy(
        f"The board did not answer within {timeout:.1f} s"
        + (f" (last bytes: {recent[-80:]!r})." if recent else ": nothing was received."),
        "A program may be inside a blocking call; or this is not a MicroPython REPL, or the "
        "baud rate is wrong. Run %doctor to find out.",
    )
