"""MicroPython's raw REPL over a Link: every step reads to a marker with a deadline.

The caller (Board) owns policy: when to interrupt, how long to wait, what a reset means. This
module only knows the bytes: entering raw mode, sending code (raw-paste with flow control
where the firmware has it, paced plain raw mode otherwise), and splitting the answer into
streamed stdout, stderr and the prompt. A tick callback gives the caller control at least
every READ_TICK seconds while a program runs.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from mpkernel.board.link import READ_TICK, Link
from mpkernel.errors import BoardTimeout, Interrupted

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
FRIENDLY_PROMPT = b">>> "
# What a board prints when it (re)boots, in the middle of what should have been a cell's
# output: MicroPython's soft-reset line, its banner's last line, an ESP ROM boot line.
RESET_SIGNATURES = (b"soft reboot\r\n", b'Type "help()" for more information.', b"rst:0x")
# Starts of boot lines: a partial last line that could grow into one is held back from the
# stream for a moment, so a reset's first bytes are not shown as the cell's output.
BOOT_LINE_STARTS = (b"\x00", b"soft reboot", b"MPY: soft reboot", b"PYB: soft reboot",
                    b"MicroPython v", b"rst:0x", b"ets ")
HOLD_PARTIAL = 0.1  # s a held partial line waits for the rest of its line
_BANNER_NEXT = b'Type "help()" for more information.'  # the line after a boot banner
# A hard-reset micro:bit (the emulated one at least) emits a NUL as its UART comes up, and with
# a busy main.py no banner follows for a long time: a NUL at the start of a line is taken as a
# reboot. Board verifies every suspected reset with its session marker before saying so.
_NUL_AT_LINE_START = re.compile(rb"(?:^|\n)\x00")
# Plain raw mode has no flow control: pace writes the way tools known not to overrun small
# boards' UART buffers do (256 bytes, then 10 ms).
#
# Plain raw mode has no flow control, and a board buffers what it receives in a small ring
# (63 bytes on the micro:bit) that overflows whenever its CPU falls behind. So writes never
# outrun the line itself (baud/10 bytes a second, as a real UART delivers them) and go in
# bursts of at most half that ring. On real hardware this costs nothing: the wire is that
# slow anyway. An emulated UART has no such limit, so without it the ring overflows.
PACE_BURST = 32
# Programs sent in plain raw mode with none garbled before a halved sending rate doubles back.
SPEED_UP_AFTER = 4


class LinePacer:
    """Writes to the link no faster than its serial line carries bytes (baud/10 a second), in
    bursts of at most half the micro:bit's 63-byte receive ring.

    Used for plain raw mode's program text (see PACE_BURST) and for binary transfers that
    write frames while reading acknowledgements. Through a real USB-serial bridge this
    changes nothing, as the wire is that slow anyway; an emulated UART (the `sim` port)
    takes bytes as fast as they come, so whole frames arrive at once and overflow the ring
    (measured: uploading a 115-byte file needed 3 frames resent). Lateness of up to SLACK is
    caught up, so sleep overshoot does not slow the transfer.
    """

    SLACK = 0.005  # s

    def __init__(self, link: Link, rate: float | None = None) -> None:
        self.link = link
        # bytes a second: baud/10 unless the caller paces slower (RawRepl.slow_down)
        self.rate = rate if rate is not None else (getattr(link, "baudrate", 0) or 0) / 10
        self.free = 0.0  # when the line will have carried everything written so far

    def write(self, data: bytes) -> None:
        if not self.rate:
            self.link.write(data)
            return
        for offset in range(0, len(data), PACE_BURST):
            piece = data[offset : offset + PACE_BURST]
            now = time.monotonic()
            if self.free > now:
                time.sleep(self.free - now)  # the line is busy; replies wait in the link
                now = self.free
            self.link.write(piece)
            if self.free < now - self.SLACK:
                self.free = now  # the line was idle: nothing to catch up
            self.free += len(piece) / self.rate


class PasteStalled(BoardTimeout):
    """A raw-paste upload got no flow-control credit in time and was abandoned."""


class ResetDuringExec(Exception):
    """The board rebooted while a cell ran; `boot_output` is what it printed since.

    `while_sending`: the reboot came while a raw-paste upload was under way, so the program
    never started (the board had not received all of it).
    """

    def __init__(self, boot_output: bytes, at_prompt: bool, while_sending: bool = False) -> None:
        super().__init__("board reset")
        self.boot_output = boot_output
        self.at_prompt = at_prompt
        self.while_sending = while_sending


@dataclass
class ExecState:
    """What a running exec looks like to the tick callback."""

    started: float
    last_data: float
    stdout_bytes: int = 0
    phase: str = "stdout"  # stdout | stderr | prompt

    @property
    def idle(self) -> float:
        return time.monotonic() - self.last_data


class RawRepl:
    def __init__(self, link: Link) -> None:
        self.link = link
        self._rx = bytearray()  # bytes read past the last marker, kept for the next read
        self.raw_paste: bool | None = None  # None: not probed yet on this connection
        self.pace_factor = 1.0  # fraction of the line rate plain raw mode sends at
        self._sent_since_loss = 0  # programs sent in plain raw mode since slow_down()

    # -- reading ------------------------------------------------------------------------
    def _fill(self, timeout: float) -> bool:
        data = self.link.read(timeout)
        if data:
            self._rx += data
        return bool(data)

    def read_until(
        self, marker: bytes, timeout: float, on_tick: Callable[[], None] | None = None
    ) -> bytes:
        """Return everything up to and including `marker`; BoardTimeout after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            at = self._rx.find(marker)
            if at >= 0:
                end = at + len(marker)
                out = bytes(self._rx[:end])
                del self._rx[:end]
                return out
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = bytes(self._rx)
                raise BoardTimeout(
                    f"The board did not answer within {timeout:.1f} s "
                    f"(waited for {marker!r}, got {seen[-80:]!r}).",
                    "Run %doctor to see what the board is doing.",
                )
            self._fill(min(READ_TICK, remaining))
            if on_tick is not None:
                on_tick()

    def read_byte(self, timeout: float) -> bytes:
        """One byte of a running program's output; BoardTimeout after `timeout`."""
        return self.read_exact(1, timeout)

    def unread(self, data: bytes) -> None:
        """Put bytes back in front of what is still to be read."""
        self._rx[:0] = data

    def clear_input(self) -> None:
        """Forget what was read but not consumed (after an aborted exchange)."""
        self._rx.clear()

    def take_pending(self) -> bytes:
        """Bytes that arrived unasked (between cells): stale output or a reset's boot text."""
        self._rx += self.link.pending()
        out = bytes(self._rx)
        self._rx.clear()
        return out

    def discard_input(self, quiet_for: float = 0.05, limit: float = 1.0) -> bytes:
        """Read until the line has been quiet for `quiet_for` s (at most `limit` s)."""
        deadline = time.monotonic() + limit
        seen = self.take_pending()
        while time.monotonic() < deadline:
            data = self.link.read(quiet_for)
            if not data:
                break
            seen += data
        return seen

    # -- modes --------------------------------------------------------------------------
    def enter_raw(self, timeout: float) -> bytes:
        """From friendly mode or an idle raw prompt, reach a fresh raw prompt.

        Returns what the board printed before the raw banner. Ctrl-A in raw mode re-prints
        the banner, so this works whichever mode the board was in.
        """
        self.link.write(b"\r\x01")
        return self.read_until(RAW_BANNER, timeout)

    def leave_raw(self, timeout: float = 2.0) -> None:
        self.link.write(b"\x02")
        self.read_until(FRIENDLY_PROMPT, timeout)

    # -- sending code -------------------------------------------------------------------
    def send_code(
        self, code: bytes, timeout: float, should_stop: Callable[[], bool] | None = None
    ) -> None:
        """Send one program at a clean raw prompt; on return the board is compiling/running.

        `timeout` bounds every wait for the board (its answer, each flow-control credit).
        `should_stop` is polled while a raw-paste upload is under way (at least every
        READ_TICK s): when it turns true the upload is abandoned and Interrupted raised.
        """
        if self.raw_paste is not False and self._try_raw_paste(code, timeout, should_stop):
            return
        self._send_plain(code, timeout)

    def _try_raw_paste(
        self, code: bytes, timeout: float, should_stop: Callable[[], bool] | None
    ) -> bool:
        # The answer is two bytes read blind: bytes that arrived unasked (a stale session's
        # output) must not be taken for it. At a clean raw prompt nothing else is due.
        self.take_pending()
        self.link.write(b"\x05A\x01")
        answer = self.read_exact(2, timeout)
        if answer == b"R\x01":
            self.raw_paste = True
            self._paste(code, timeout, should_stop)
            return True
        if answer == b"R\x00":
            self.raw_paste = False
            return False
        if answer == b"ra":
            # The firmware does not know raw-paste and took the Ctrl-A as "re-print banner".
            self.read_until(b"w REPL; CTRL-B to exit\r\n>", timeout)
            self.raw_paste = False
            return False
        self._rx[:0] = answer
        self._fill(READ_TICK)
        self.check_reset()
        raise BoardTimeout(
            f"Unexpected answer {answer!r} to the raw-paste request.",
            "The line may be noisy or the board busy; run the cell again or %doctor.",
        )

    def read_exact(self, count: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self._rx) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BoardTimeout(
                    f"The board stopped answering (got {bytes(self._rx)!r}).",
                    "Run %doctor to see what the board is doing.",
                )
            self._fill(min(READ_TICK, remaining))
        out = bytes(self._rx[:count])
        del self._rx[:count]
        return out

    def _paste(
        self, code: bytes, timeout: float, should_stop: Callable[[], bool] | None
    ) -> None:
        # The device answered R\x01: next come the window size W (W bytes are free) and a
        # 0x01. Each 0x01 grants W more bytes (so 2*W are free at first); 0x04 means it stopped
        # reading early (a syntax error, out of memory). Anything else is not flow control:
        # a reboot's text.
        window = struct.unpack("<H", self.read_exact(2, timeout))[0]
        credit = window
        sent = 0
        other = bytearray()  # bytes that were neither 0x01 nor 0x04
        last_credit = time.monotonic()
        while True:
            data = bytes(self._rx)
            self._rx.clear()
            for at, byte in enumerate(data):
                if byte == 0x01:
                    credit += window
                    last_credit = time.monotonic()
                elif byte == 0x04:
                    # Stopped early: the device reads on until Ctrl-C or Ctrl-D, then gives
                    # the usual `\x04 error \x04 >`, which follow() reads.
                    self._rx[:0] = data[at + 1 :]
                    self.link.write(b"\x04")
                    return
                else:
                    other.append(byte)
            del other[:-4096]
            self._raise_if_reset(other)
            if sent == len(code):
                break
            if should_stop is not None and should_stop():
                self._abandon_paste(sent, len(code), timeout, "interrupt")
            if credit:
                piece = code[sent : sent + credit]
                self.link.write(piece)
                sent += len(piece)
                credit -= len(piece)
                self._rx += self.link.pending()
                continue
            if time.monotonic() - last_credit > timeout:
                self._abandon_paste(sent, len(code), timeout, "stall")
            self._fill(READ_TICK)
        self.link.write(b"\x04")
        # The device acknowledges the end of the program with 0x04 (flow-control bytes may
        # precede it); a reboot's text instead means it never had the whole program.
        self.read_until(b"\x04", timeout, on_tick=lambda: self._raise_if_reset(self._rx, b"\x04"))

    def _raise_if_reset(self, seen: bytearray, before: bytes = b"") -> None:
        """Raise ResetDuringExec(while_sending) if `seen` holds a reboot's text (only the part
        before the marker `before` counts: what follows it is the board's answer)."""
        end = seen.find(before) if before else -1
        at = find_reset(seen if end < 0 else seen[:end])
        if at >= 0:
            boot = bytes(seen[at:])
            self._rx.clear()  # nothing before the reboot matters any more
            reset = self.finish_reset(boot)
            reset.while_sending = True
            raise reset

    def _abandon_paste(self, sent: int, total: int, timeout: float, why: str) -> None:
        """Stop a raw-paste upload: Ctrl-C makes the device stop reading (it answers 0x04 and
        raises KeyboardInterrupt before running anything); then read to its raw prompt."""
        self.link.write(b"\x03")
        confirmed = True
        try:
            # ack 0x04, empty stdout 0x04, the KeyboardInterrupt, 0x04, then the prompt.
            for marker in (b"\x04", b"\x04>"):
                self.read_until(
                    marker, timeout, on_tick=lambda m=marker: self._raise_if_reset(self._rx, m)
                )
        except BoardTimeout:
            confirmed = False
        self._rx.clear()
        where = f"after {sent:,} of {total:,} bytes"
        if confirmed:
            state = "the board stopped reading it and none of it ran."
        else:
            state = (f"the board did not confirm within {timeout:.0f} s that it stopped "
                     "reading; none of the cell ran, and the next cell checks the board first.")
        if why == "interrupt":
            raise Interrupted(f"Interrupted while the cell was being sent ({where}): {state}")
        raise PasteStalled(
            f"The board stopped taking the cell {where}: no flow-control credit for "
            f"{timeout:.0f} s, so mpkernel stopped sending; {state}",
            "Run the cell again; if this repeats, run %doctor to see what the board is doing.",
        )

    def slow_down(self) -> None:
        """Halve the plain-raw sending rate (bytes were lost); it doubles back after
        SPEED_UP_AFTER programs with no loss."""
        self.pace_factor = max(self.pace_factor / 2, 1 / 16)
        self._sent_since_loss = 0

    def _send_plain(self, code: bytes, timeout: float) -> None:
        # Losses on an emulated board come from a busy host, in bursts: a rate halved for
        # good made every later program slower (measured under load: uploads fell to 0.2 of
        # the wire with no frame lost, after a few garbled programs had quartered the rate).
        self._sent_since_loss += 1
        if self.pace_factor < 1 and self._sent_since_loss > SPEED_UP_AFTER:
            self.pace_factor, self._sent_since_loss = min(1.0, self.pace_factor * 2), 1
        # Holding to the line rate; there is nothing to read while the program goes out.
        LinePacer(self.link, self.link.baudrate / 10 * self.pace_factor).write(code + b"\x04")
        # Stale bytes before OK belong to nobody; the OK itself is the marker. A reboot
        # instead of OK (the board reset as the program went out) is said at once.
        self.read_until(b"OK", timeout, on_tick=lambda: b"OK" in self._rx or self.check_reset())

    # -- running ------------------------------------------------------------------------
    def follow(
        self,
        on_stdout: Callable[[bytes], None],
        on_tick: Callable[[ExecState], None],
    ) -> bytes:
        """Stream the running program's stdout until its end; return its stderr.

        Raises ResetDuringExec if the board reboots instead of finishing. The tick callback
        runs at least every READ_TICK seconds; it may write (Ctrl-C) or raise to give up.
        """
        now = time.monotonic()
        state = ExecState(started=now, last_data=now)
        tail = bytearray()  # recent stdout (passed on or held), to notice a reset's boot text
        held = bytearray()  # not passed on yet: a partial line that may be boot text
        while True:
            end = self._rx.find(b"\x04")
            chunk = bytes(self._rx if end < 0 else self._rx[:end])
            del self._rx[: len(chunk)]
            if chunk:
                tail += chunk
                held += chunk
                reset_at = find_reset(tail)
                if reset_at >= 0:
                    # Pass on what came before the boot text; the rest is boot output.
                    passed = len(tail) - len(held)
                    if reset_at > passed:
                        on_stdout(bytes(held[: reset_at - passed]))
                    raise self.finish_reset(bytes(tail[reset_at:]))
                state.stdout_bytes += len(chunk)
                keep = _boot_like_partial_line(held)
                if len(held) > keep:
                    on_stdout(bytes(held[: len(held) - keep]))
                    del held[: len(held) - keep]
                _trim_at_line(tail, 512)
            if end >= 0:
                del self._rx[:1]
                break
            if self._fill(READ_TICK):
                state.last_data = time.monotonic()
            elif held and state.idle >= HOLD_PARTIAL:
                on_stdout(bytes(held))  # the line did not grow into boot text: it is output
                held.clear()
            on_tick(state)
        if held:
            on_stdout(bytes(held))
        state.phase = "stderr"
        stderr = self.read_until(b"\x04", 10.0)[:-1]
        state.phase = "prompt"
        self.read_until(b">", 5.0)
        return stderr

    def check_reset(self) -> None:
        """Raise ResetDuringExec if what has been read so far contains a reboot."""
        at = find_reset(self._rx)
        if at >= 0:
            boot = bytes(self._rx[at:])
            self._rx.clear()
            raise self.finish_reset(boot)

    def finish_reset(
        self, boot: bytes, wait: float = 1.2, quiet: float = 0.5
    ) -> ResetDuringExec:
        """Collect the boot text until a prompt shows, or the board has been quiet for
        `quiet` s, or `wait` s passed: a busy main.py may never give a prompt, and the
        caller's catch stops it (sooner is better: a program's start is unprotected)."""
        deadline = time.monotonic() + wait
        text = bytearray(boot) + self._rx
        self._rx.clear()
        last_data = time.monotonic()
        while time.monotonic() < deadline:
            if text.endswith(FRIENDLY_PROMPT) or text.endswith(RAW_BANNER):
                return ResetDuringExec(bytes(text), at_prompt=True)
            data = self.link.read(READ_TICK)
            if data:
                text += data
                last_data = time.monotonic()
            elif time.monotonic() - last_data >= quiet:
                break
        return ResetDuringExec(bytes(text), at_prompt=False)


def _boot_like_partial_line(buf: bytearray) -> int:
    """Length of the tail to hold back because it could be the start of boot text, else 0:
    the trailing partial line if it could begin a boot line, or a whole banner line
    ("MicroPython v...") with what follows it while that could still be its 'Type "help()"'
    line (a throttled line delivers the banner in pieces: seen on the modern board, whose
    banner line and 'Type ' came in one read and were shown before the reset was noticed)."""
    start = buf.rfind(b"\n") + 1
    partial = buf[start:]
    if start > 0 and len(partial) <= len(_BANNER_NEXT) and _BANNER_NEXT.startswith(partial):
        line = buf.rfind(b"\n", 0, start - 1) + 1
        if buf[line:start].lstrip(b"\x00").startswith(b"MicroPython v"):
            return len(buf) - line
    if not partial or len(partial) > 200:
        return 0
    for begin in BOOT_LINE_STARTS:
        if begin.startswith(partial) or partial.startswith(begin):
            return len(partial)
    return 0


def _trim_at_line(buf: bytearray, limit: int) -> None:
    """Keep about the last `limit` bytes, cut just before a newline so line starts stay true."""
    if len(buf) <= limit:
        return
    cut = buf.find(b"\n", len(buf) - limit)
    del buf[: cut if cut >= 0 else len(buf) - limit]


def find_reset(tail: bytearray) -> int:
    found = [tail.find(sig) for sig in RESET_SIGNATURES]
    found = [at for at in found if at >= 0]
    nul = _NUL_AT_LINE_START.search(tail)
    nul_at = -1 if nul is None else nul.end() - 1
    if not found:
        return nul_at
    at = min(found)
    # Start the boot text at the beginning of its line, or of the banner line before it.
    line_start = tail.rfind(b"\n", 0, at) + 1
    if line_start > 0:
        prev_start = tail.rfind(b"\n", 0, line_start - 1) + 1
        if tail[prev_start:line_start].lstrip(b"\x00").startswith(b"MicroPython v"):
            line_start = prev_start
    return line_start if nul_at < 0 else min(line_start, nul_at)
