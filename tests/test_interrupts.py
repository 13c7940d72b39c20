"""The interrupt ladder and the busy-board catch against scripted boards, on a fake clock.

No board and no real waiting: the fake link advances a fake clock by each read's timeout,
so a ladder that would take seconds on a board is checked in milliseconds, and every
decision (retry, burst, silent wait, give up) is asserted by what the user is told.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mpkernel.board import interrupts
from mpkernel.board.interrupts import (
    BURST_TICKS,
    RETRIES,
    SILENT_WAIT,
    BoardBusy,
    InterruptFailed,
    InterruptLadder,
    catch_busy_board,
    describe_stopped,
)
from mpkernel.board.rawrepl import RAW_BANNER, ExecState, RawRepl

MAIN_TRACE = (
    b"Traceback (most recent call last):\r\n"
    b'  File "__main__", line 6, in <module>\r\n'
    b"KeyboardInterrupt: \r\n"
)
BANNER = b'MicroPython v1.9.2 on 2017-09-01; micro:bit\r\nType "help()" for more information.\r\n'


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    fake = Clock()
    monkeypatch.setattr(interrupts.time, "monotonic", fake.monotonic)
    yield fake


class ScriptedBoard:
    """The device end of a serial link: `kind` says how its program treats Ctrl-C.

    idle: at a friendly prompt. lets_through: prints every `period` s, stops at Ctrl-C.
    swallows: prints every `period` s whatever comes. silent: never answers.
    """

    def __init__(self, clock: Clock, kind: str, period: float = 0.3) -> None:
        self.clock = clock
        self.kind = kind
        self.period = period
        self.running = kind in ("lets_through", "swallows")
        self.out = bytearray()
        self.writes: list[bytes] = []
        self.next_print = clock.now
        self.count = 0

    # -- the Link interface the catch and the ladder use ----------------------------------
    def write(self, data: bytes) -> None:
        self.writes.append(data)
        for byte in data:
            if byte == 0x03 and self.running and self.kind == "lets_through":
                self.running = False
                self.out += MAIN_TRACE + BANNER + b">>> "
            elif byte == 0x01 and not self.running and self.kind != "silent":
                self.out += b"\r\n" + RAW_BANNER

    def read(self, timeout: float = 0.05) -> bytes:
        self.clock.now += timeout
        if self.running and self.clock.now >= self.next_print:
            self.count += 1
            self.out += b"pub %d\r\n" % self.count
            self.next_print = self.clock.now + self.period
        data, self.out = bytes(self.out), bytearray()
        return data

    def pending(self) -> bytes:
        data, self.out = bytes(self.out), bytearray()
        return data

    @property
    def ctrl_c_sent(self) -> int:
        return sum(chunk.count(b"\x03") for chunk in self.writes)


# -- describe_stopped ---------------------------------------------------------------------
def test_describe_names_main_py_its_line_and_last_output() -> None:
    seen = b"pub 41\r\npub 42\r\n" + MAIN_TRACE + BANNER + b">>> "
    assert describe_stopped(seen) == (
        "Stopped main.py at line 6, which was running; its last output: pub 42"
    )


def test_describe_a_cell_left_running_in_raw_mode() -> None:
    seen = (b"\x04Traceback (most recent call last):\r\n  File \"<stdin>\", line 3, in "
            b"<module>\r\nKeyboardInterrupt: \r\n\x04>")
    text = describe_stopped(seen)
    assert text.startswith("Stopped a program started from the REPL")
    assert "\x04" not in text and "its last output" not in text


def test_describe_says_nothing_when_nothing_was_running() -> None:
    assert describe_stopped(b"\r\n>>> \r\n>>> ") == ""
    assert describe_stopped(b"Traceback (most recent call last):\r\nValueError: x\r\n") == ""


def test_describe_shortens_a_very_long_last_line() -> None:
    text = describe_stopped(b"x" * 500 + b"\r\n" + MAIN_TRACE)
    assert "..." in text and len(text) < 260


# -- catching a busy board -----------------------------------------------------------------
def catch(board: ScriptedBoard, timeout: float = 3.0, listen: float = 0.0) -> str:
    return catch_busy_board(RawRepl(board), timeout, lambda text: None, listen)  # type: ignore[arg-type]


def test_catch_an_idle_board_says_nothing(clock: Clock) -> None:
    board = ScriptedBoard(clock, "idle")
    assert catch(board) == ""
    # Ctrl-C discards a half-typed line; a \r would run it.
    assert board.writes[0] == b"\x03\x03\x01"


def test_catch_a_printing_main_py_quotes_its_last_output(clock: Clock) -> None:
    board = ScriptedBoard(clock, "lets_through")
    start = clock.now
    text = catch(board, listen=0.3)
    assert text.startswith("Stopped main.py at line 6, which was running; its last output: pub")
    assert clock.now - start < 1.0


def test_catch_a_program_that_swallows_ctrl_c_gives_up_in_time_without_reflash(
    clock: Clock,
) -> None:
    board = ScriptedBoard(clock, "swallows", period=0.1)
    start = clock.now
    with pytest.raises(BoardBusy) as info:
        catch(board, timeout=3.0)
    assert clock.now - start <= 3.2
    text = info.value.user_text()
    assert "ignores Ctrl-C" in text and "pub" in text and "%rescue" in text
    assert "Nothing is wrong with the firmware" in text
    assert "re-flash" not in text
    assert board.ctrl_c_sent >= 4  # it kept trying throughout


def test_catch_a_silent_board_says_it_did_not_answer(clock: Clock) -> None:
    board = ScriptedBoard(clock, "silent")
    with pytest.raises(BoardBusy) as info:
        catch(board, timeout=2.0)
    assert "did not answer within 2.0 s: nothing was received" in str(info.value)
    assert "%doctor" in info.value.hint


# -- the ladder while a cell runs ------------------------------------------------------------
class FakeBoardForLadder:
    """What InterruptLadder uses of Board: link, note, interrupt() and its request state."""

    def __init__(self, link: ScriptedBoard) -> None:
        self.link = link
        self.notes: list[str] = []
        self.busy_reason = ""
        self.requests = 0

    def note(self, text: str) -> None:
        self.notes.append(text)

    def interrupt(self) -> None:
        self.requests += 1

    @property
    def exec_interrupted(self) -> bool:
        return self.requests > 0


def drive(ladder: InterruptLadder, board: ScriptedBoard, clock: Clock, seconds: float) -> None:
    """Run the ladder's ticks as follow() would, with the board printing or not."""
    state = ExecState(started=clock.now, last_data=clock.now)
    end = clock.now + seconds
    while clock.now < end:
        data = board.read(0.05)
        if data:
            state.last_data = clock.now
            state.stdout_bytes += len(data)
        ladder.tick(state)


def test_no_interrupt_requested_sends_nothing(clock: Clock) -> None:
    board = ScriptedBoard(clock, "lets_through")
    fake = FakeBoardForLadder(board)
    drive(InterruptLadder(fake), board, clock, 2.0)  # type: ignore[arg-type]
    assert board.ctrl_c_sent == 0 and fake.notes == []


def test_first_tick_after_a_request_sends_one_ctrl_c(clock: Clock) -> None:
    board = ScriptedBoard(clock, "lets_through")
    fake = FakeBoardForLadder(board)
    ladder = InterruptLadder(fake)  # type: ignore[arg-type]
    fake.interrupt()
    ladder.tick(ExecState(started=clock.now, last_data=clock.now))
    assert board.writes == [b"\x03"] and fake.notes == []


def test_a_program_that_keeps_printing_is_named_as_swallowing(clock: Clock) -> None:
    board = ScriptedBoard(clock, "swallows", period=0.1)
    fake = FakeBoardForLadder(board)
    ladder = InterruptLadder(fake)  # type: ignore[arg-type]
    fake.interrupt()
    start = clock.now
    with pytest.raises(InterruptFailed) as info:
        drive(ladder, board, clock, 30.0)
    took = clock.now - start
    notes = "".join(fake.notes)
    assert notes.count("sending Ctrl-C again") == RETRIES
    assert "keeps printing: it seems to catch KeyboardInterrupt" in notes
    assert board.ctrl_c_sent == 1 + RETRIES + BURST_TICKS
    text = info.value.user_text()
    assert "catches KeyboardInterrupt" in text and "%rescue" in text
    assert "re-flash" not in text
    assert fake.busy_reason == "swallows Ctrl-C"
    assert took < 4.0  # bounded: the cell ends


def test_a_silent_board_is_given_a_bounded_wait_and_told_about(clock: Clock) -> None:
    board = ScriptedBoard(clock, "silent")
    fake = FakeBoardForLadder(board)
    ladder = InterruptLadder(fake)  # type: ignore[arg-type]
    fake.interrupt()
    start = clock.now
    with pytest.raises(InterruptFailed) as info:
        drive(ladder, board, clock, 60.0)
    took = clock.now - start
    assert SILENT_WAIT <= took < SILENT_WAIT + 0.5
    assert any("silent: it may be inside a blocking call" in note for note in fake.notes)
    assert "blocking call" in str(info.value) and "%reset --hard" in info.value.hint
    assert fake.busy_reason == "silent after Ctrl-C"


def test_a_cell_timeout_requests_the_interrupt_itself(clock: Clock) -> None:
    board = ScriptedBoard(clock, "lets_through")
    fake = FakeBoardForLadder(board)
    ladder = InterruptLadder(fake, timeout=1.0)  # type: ignore[arg-type]
    drive(ladder, board, clock, 1.2)
    assert fake.requests == 1
    assert any("ran longer than 1 s" in note for note in fake.notes)
    assert board.ctrl_c_sent == 1
