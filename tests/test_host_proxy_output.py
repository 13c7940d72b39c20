"""The `board` object of `%%host` cells without a board: its output is a board cell's
(display.CellOutput: cell output filters, CRLF, whole lines, the value kept aside), and a
kernel error's hint is kept for after the error. A fake board plays the board's part."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from mpkernel.cells import RESULT_MARK
from mpkernel.errors import DeviceError, PortError
from mpkernel.host.proxy import BoardError, BoardProxy, notes_after


class FakeBoard:
    """Prints `chunks` (as the link delivers them) for every exec, then raises `error`."""

    def __init__(self, chunks: list[str], error: Exception | None = None) -> None:
        self.chunks = chunks
        self.error = error
        self.interrupt_requested = False

    def start_cell(self) -> None:
        pass

    def interrupt(self) -> None:
        self.interrupt_requested = True

    def exec(self, code: str, *, on_output: Callable[[str], None], timeout: float | None,
             on_idle: Callable[[], None]) -> str:
        for chunk in self.chunks:
            on_output(chunk)
            on_idle()
        if self.error is not None:
            raise self.error
        return ""


class Shout:
    """A cell output filter (as the MQTT relay is one): what it returns is what is shown."""

    def feed(self, text: str) -> str:
        return text.upper()

    def idle(self) -> None:
        pass

    def close(self) -> str:
        return ""


def proxy_on(board: Any, filters: dict | None = None) -> BoardProxy:
    kernel = SimpleNamespace(get_board=lambda: board, cell_filters=filters or {},
                             magic_state={})
    return BoardProxy(kernel)


def test_captured_output_passes_the_cells_filters_and_loses_the_boards_crlf() -> None:
    board = FakeBoard(["hel", "lo\r", "\nwor", "ld\r\n"])
    out = proxy_on(board, {"shout": lambda b: Shout()}).exec("x", capture=True)
    assert out == "HELLO\nWORLD\n"


def test_eval_streams_what_the_expression_prints_and_returns_its_value(
        capsys: pytest.CaptureFixture[str]) -> None:
    board = FakeBoard(["side effect\r", "\n" + RESULT_MARK + "[1, ", "2.5]\r\n"])
    assert proxy_on(board).eval("f()") == [1, 2.5]
    assert capsys.readouterr().out == "side effect\n"


def test_eval_without_a_value_says_so() -> None:
    with pytest.raises(ValueError, match="the board printed no value"):
        proxy_on(FakeBoard(["nothing\r\n"])).eval("f()")


def test_output_before_a_board_error_is_shown_before_the_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    error = DeviceError("ZeroDivisionError", "divide by zero",
                        ["Traceback (most recent call last):", "ZeroDivisionError: divide by zero"])
    with pytest.raises(BoardError) as raised:
        proxy_on(FakeBoard(["half a line"], error)).exec("1/0")
    assert capsys.readouterr().out == "half a line"
    assert type(raised.value).__name__ == "ZeroDivisionError"
    assert notes_after(SimpleNamespace(last_execution_result=SimpleNamespace(
        error_in_exec=raised.value))) == ""


def test_a_kernel_errors_hint_is_kept_for_after_the_error() -> None:
    def unreachable() -> Any:
        raise PortError("Port /dev/x does not exist.", "Ports that exist:\n 1. /dev/ttyACM0")

    kernel = SimpleNamespace(get_board=unreachable, cell_filters={}, magic_state={})
    with pytest.raises(BoardError) as raised:
        BoardProxy(kernel).eval("1")
    assert raised.value._render_traceback_() == ["Port /dev/x does not exist."]
    ended = SimpleNamespace(last_execution_result=SimpleNamespace(error_in_exec=raised.value))
    assert notes_after(ended) == "Ports that exist:\n 1. /dev/ttyACM0\n"
    # Caught by the host code (or no error at all): nothing follows the cell.
    assert notes_after(SimpleNamespace(last_execution_result=SimpleNamespace(
        error_in_exec=None))) == ""
