"""The stream upload's sender (files/stream.py: _FrameSender) and the plain-raw sending rate: which
NAKs count, and how a rate halved after a loss comes back. Scripted: a fake clock and a link
that only records; the emulated micro:bit tests of the whole upload are in test_fs_stream."""

from __future__ import annotations

import pytest
from fakes.rawrepl_device import FakeDevice

from mpkernel.board.rawrepl import SPEED_UP_AFTER, LinePacer, RawRepl
from mpkernel.files import stream as fs_stream


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class RecordingLink:
    baudrate = 0  # LinePacer then writes at once

    def __init__(self) -> None:
        self.frames: list[tuple[int, int]] = []  # (offset, payload length) of each frame

    def write(self, data: bytes) -> None:
        self.frames.append((data[0] | data[1] << 8, data[2] | data[3] << 8))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(fs_stream.time, "monotonic", fake)
    return fake


def sender_for(size: int) -> tuple[fs_stream._FrameSender, RecordingLink]:
    link = RecordingLink()
    sender = fs_stream._FrameSender(LinePacer(link), bytes(size), 256, 4)  # type: ignore[arg-type]
    return sender, link


def test_a_nak_at_a_frame_sent_once_is_acted_on_at_once(clock: Clock) -> None:
    sender, link = sender_for(1024)
    sender.fill_window()
    assert link.frames == [(0, 256), (256, 256), (512, 256), (768, 256)]
    clock.now = 0.05
    assert sender.acked(256)
    # However soon it comes: only one frame ever started at 256, so the board heard it.
    assert sender.nak_is_fresh(256)


def test_a_nak_the_board_sent_before_hearing_the_copy_is_not_acted_on(clock: Clock) -> None:
    sender, link = sender_for(1024)
    sender.fill_window()
    clock.now = 0.05
    sender.acked(256)  # 50 ms: the shortest round trip so far
    clock.now = 0.06
    assert sender.nak_is_fresh(256) and sender.go_back()
    sender.fill_window()
    assert link.frames[4:] == [(256, 128), (384, 128)]  # cut in half, the window halved
    clock.now = 0.07  # 10 ms after the copy went: the board's repeat of its first NAK
    assert not sender.nak_is_fresh(256)
    clock.now = 0.12  # a round trip after the copy: about the copy itself
    assert sender.nak_is_fresh(256)


def test_a_nak_after_the_board_took_a_frame_of_this_round_is_acted_on_at_once(
        clock: Clock) -> None:
    sender, link = sender_for(1024)
    sender.fill_window()
    clock.now = 0.05
    assert sender.nak_is_fresh(0) and sender.go_back()  # the first frame was lost
    sender.window = 2
    sender.fill_window()
    assert link.frames[4:] == [(0, 128), (128, 128)]
    clock.now = 0.06
    sender.acked(128)
    sender.fill_window()
    assert link.frames[6:] == [(256, 128)]  # 256 began a frame before: this is a copy
    clock.now = 0.065
    sender.acked(256)  # by the frame 128-256, sent in this round
    # Only 5 ms after the copy at 256 went, but the board read every older byte before it
    # took 128-256: its NAK at 256 is about the copy.
    assert sender.nak_is_fresh(256)


def test_a_nak_at_another_position_is_never_acted_on(clock: Clock) -> None:
    sender, _ = sender_for(1024)
    sender.fill_window()
    sender.acked(256)
    assert not sender.nak_is_fresh(0) and not sender.nak_is_fresh(512)


def test_a_halved_plain_raw_rate_comes_back_after_programs_with_no_loss() -> None:
    repl = RawRepl(FakeDevice())  # type: ignore[arg-type]
    repl.raw_paste = False
    repl.slow_down()
    repl.slow_down()
    assert repl.pace_factor == 0.25
    rates = []
    for _ in range(2 * SPEED_UP_AFTER + 1):
        repl.send_code(b"x=1", timeout=1.0)
        repl.follow(lambda chunk: None, lambda state: None)
        rates.append(repl.pace_factor)
    assert rates == [0.25] * SPEED_UP_AFTER + [0.5] * SPEED_UP_AFTER + [1.0]
    repl.slow_down()  # a loss again: halved again
    assert repl.pace_factor == 0.5
