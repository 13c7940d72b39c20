"""A program garbled on its way to the board (plain raw mode, bytes dropped) is sent again;
a program with a real syntax error is reported as it is."""

from __future__ import annotations

import pytest
from test_rawrepl import FakeDevice

from mpkernel.board import Board
from mpkernel.caps import Capabilities
from mpkernel.errors import DeviceError
from mpkernel.rawrepl import RawRepl


def board_on(device: FakeDevice) -> Board:
    board = Board("fake://")
    board.link = device  # type: ignore[assignment]
    board.repl = RawRepl(device)  # type: ignore[arg-type]
    board.repl.raw_paste = False
    board.caps = Capabilities(version=(1, 9, 2), mem_free=8000)
    return board


def compile_like_a_board(drop_first_bursts: int):  # noqa: ANN201
    """A runner that 'loses' the first programs it gets, as an overflowing UART ring does."""
    state = {"left": drop_first_bursts}

    def runner(code: bytes) -> tuple[bytes, bytes]:
        if state["left"] > 0:
            state["left"] -= 1
            return b"", b'Traceback (most recent call last):\r\n  File "<stdin>", line 1\r\n' \
                        b"SyntaxError: invalid syntax\r\n"
        try:
            compile(code.decode(), "<stdin>", "exec")
        except SyntaxError:
            return b"", b"SyntaxError: invalid syntax\r\n"
        return b"ran\r\n", b""

    return runner


def test_a_garbled_program_is_sent_again_more_slowly() -> None:
    device = FakeDevice(runner=compile_like_a_board(drop_first_bursts=1))
    board = board_on(device)
    assert board.exec("x = 1\nprint(x)") == "ran\r\n"
    assert device.programs.count(b"x = 1\nprint(x)") == 2
    assert board.repl is not None and board.repl.pace_factor < 1


def test_a_real_syntax_error_is_reported_not_retried_forever() -> None:
    device = FakeDevice(runner=compile_like_a_board(drop_first_bursts=0))
    board = board_on(device)
    with pytest.raises(DeviceError) as info:
        board.exec("x = = 1")
    assert info.value.ename == "SyntaxError"
    assert device.programs.count(b"x = = 1") == 1  # the host saw it is wrong: no resend


def test_syntax_the_board_lacks_is_tried_twice_then_reported() -> None:
    # An f-string parses on the host but not on MicroPython 1.9.2.
    def no_fstrings(code: bytes) -> tuple[bytes, bytes]:
        return b"", b"SyntaxError: invalid syntax\r\n"

    device = FakeDevice(runner=no_fstrings)
    board = board_on(device)
    with pytest.raises(DeviceError, match="SyntaxError"):
        board.exec("print(f'{1}')")
    assert len([p for p in device.programs if p.startswith(b"print(f")]) == 2
