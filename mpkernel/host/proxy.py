"""The `board` object of `%%host` cells: the connected board, reached from the computer's Python.

    board.exec("led.on()")            # runs on the board; its output streams into the cell
    t = board.eval("sensor.read()")   # a Python value, parsed from the board's repr as a literal
    data = board.get("log.csv")       # bytes, verified against the board's checksum
    board.put(b"x = 1\\n", "conf.py")  # or a local file's path; verified and atomic

Values come back through `ast.literal_eval` of the board's repr, never through `eval`: text
from a device is data, not code. An interrupt (the notebook's stop button) during any of these
reaches the board's program, and the host cell stops with KeyboardInterrupt.
"""

from __future__ import annotations

import ast
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mpkernel import cells
from mpkernel.display import CellOutput, error_lines, hint_lines
from mpkernel.errors import DeviceError, Interrupted, MpkernelError

if TYPE_CHECKING:
    from mpkernel.board.board import Board
    from mpkernel.files.api import FileSystem

_MARK = cells.RESULT_MARK


class BoardError(Exception):
    """A board operation in a host cell failed; shown as the kernel shows it in board cells
    (what happened, or the board's traceback), not as a host-side stack. What to do about it
    (`notes`, a kernel error's hint) follows the error as plain output, as in board cells
    (`notes_after`).

    An exception raised on the board arrives as a subclass named like it (ZeroDivisionError,
    OSError), so the notebook names the board's error; `except board.Error` catches them all.
    """

    @classmethod
    def for_device(cls, err: DeviceError) -> BoardError:
        name = err.ename.rpartition(".")[2]
        kind = type(name, (cls,), {}) if name.isidentifier() else cls
        return kind(err.traceback or [str(err)], err)

    def __init__(self, lines: list[str], cause: MpkernelError,
                 notes: list[str] | None = None) -> None:
        super().__init__(lines[-1] if isinstance(cause, DeviceError) else str(cause))
        self.lines = lines
        self.cause = cause
        self.notes = notes or []

    def _render_traceback_(self) -> list[str]:  # IPython shows these lines instead of a stack
        return self.lines


class NotALiteral(ValueError):
    """board.eval's value has a repr that is not a Python literal (a Pin, a function)."""


class _Literals(ast.NodeTransformer):
    """MicroPython reprs that are plain data but not literals: inf, nan, bytearray(b'...')."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in ("inf", "nan"):
            return ast.copy_location(ast.Constant(float(node.id)), node)
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if (isinstance(node.func, ast.Name) and node.func.id == "bytearray"
                and len(node.args) == 1 and not node.keywords
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, bytes)):
            return ast.copy_location(ast.Constant(node.args[0].value), node)
        return self.generic_visit(node)


def parse_value(text: str, expr: str = "") -> Any:
    """The value a board's repr stands for, if it is a literal; NotALiteral otherwise."""
    try:
        tree = _Literals().visit(ast.parse(text.strip(), mode="eval"))
        return ast.literal_eval(tree)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        shown = text.strip()
        shown = shown if len(shown) <= 120 else shown[:117] + "..."
        raise NotALiteral(
            f"board.eval({expr!r}): the board's value is {shown}, which is not a Python "
            "literal, so it cannot come back as a value. Numbers, strings, bytes, None, "
            "True/False and lists, tuples, dicts and sets of them can. Return str(...) of "
            "it, or print it with board.exec(...)."
        ) from None


class BoardProxy:
    """The kernel's board as seen from host Python; every call connects on first use."""

    Error = BoardError  # `except board.Error:` catches what the board raised

    def __init__(self, kernel: Any) -> None:
        self._kernel = kernel
        self._fresh_cell = True

    def new_cell(self) -> None:
        self._fresh_cell = True

    def __repr__(self) -> str:
        board = self._kernel.board
        if board is None or not board.connected:
            return "<board: not connected yet; the first board.exec/eval/get/put connects>"
        return f"<board: {board.summary()}>"

    # -- the four operations ----------------------------------------------------------------
    def exec(self, code: str, *, capture: bool = False, timeout: float | None = None) -> Any:
        """Run `code` on the board. Its output streams into this cell as it is printed (or,
        with capture=True, comes back as a string instead). A board exception is raised
        here with the board's traceback; an interrupt stops the board's program."""
        out: list[str] = []
        with self._board_call() as board:
            cells.refuse_control_bytes(code)
            self._run(board, code, out.append if capture else None, timeout)
        return "".join(out) if capture else None

    def eval(self, expr: str, *, timeout: float | None = None) -> Any:
        """The value of the expression `expr` on the board, as a Python value: its repr is
        parsed with ast.literal_eval (inf, nan and bytearray are understood too). Output the
        expression prints on the way streams into the cell."""
        try:
            ast.parse(expr.strip(), mode="eval")
        except SyntaxError as err:
            raise SyntaxError(
                f"board.eval takes one expression ({err.msg}); for statements use "
                "board.exec(...), then board.eval(name)."
            ) from None
        code = f"print({_MARK!r}+repr((\n{expr.strip()}\n)))"
        with self._board_call() as board:
            value = self._run(board, code, None, timeout, has_result=True)
        if value is None:
            raise NotALiteral(f"board.eval({expr!r}): the board printed no value.")
        return parse_value(value, expr)

    def get(self, path: str) -> bytes:
        """The bytes of a file on the board, verified against the board's own checksum."""
        with self._board_call():
            return self._fs().get(path)

    def put(self, data: bytes | bytearray | str | os.PathLike, path: str) -> None:
        """Write bytes, or a local file (given by its path), to `path` on the board: verified
        and atomic (the old file stays until the new one is complete)."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            payload = bytes(data)
        elif isinstance(data, (str, os.PathLike)):
            local = Path(data)
            if not local.is_file():
                raise FileNotFoundError(
                    f"board.put: {local} is not a file on this computer. Give bytes to write "
                    "them (e.g. b'...' or text.encode()), or the path of an existing file."
                )
            payload = local.read_bytes()
        else:
            raise TypeError(f"board.put takes bytes or a local file's path, not "
                            f"{type(data).__name__}.")
        with self._board_call():
            result = self._fs().put(payload, path)
        print(result.summary(), flush=True)

    # -- machinery --------------------------------------------------------------------------
    def _fs(self) -> FileSystem:
        from mpkernel.files.api import FileSystem

        # Shared with the file magics, so the filesystem probe runs once per connection.
        state = self._kernel.magic_state
        board = self._kernel.get_board()
        cached = state.get("fs")
        if cached is None or cached.board is not board:
            cached = state["fs"] = FileSystem(board)
        return cached

    @contextmanager
    def _board_call(self) -> Iterator[Board]:
        board: Board | None = None
        try:
            board = self._kernel.get_board()  # connecting can fail: said like the rest
            if self._fresh_cell:
                board.start_cell()  # interrupts of earlier cells do not stop this one
                self._fresh_cell = False
            with _interrupts_to(board):
                yield board
        except DeviceError as err:
            if (err.ename == "KeyboardInterrupt" and board is not None
                    and board.interrupt_requested):
                raise KeyboardInterrupt("the board's program was interrupted; its variables are "
                                        "kept") from None
            raise BoardError.for_device(err) from None
        except Interrupted as err:
            raise KeyboardInterrupt(str(err)) from None  # e.g. what an upload left behind
        except MpkernelError as err:
            # The red error says what happened; the hint follows it (notes_after).
            raise BoardError(error_lines(err), err, hint_lines(err)) from None

    def _run(self, board: Board, code: str, capture: Callable[[str], None] | None,
             timeout: float | None, *, has_result: bool = False) -> str | None:
        """Run `code` with its output shown as a board cell's (or captured); with
        `has_result`, return the text printed after cells.RESULT_MARK (None without it)."""
        # CellOutput, as board cells: cell output filters (the MQTT bridge's relay) take part,
        # the board's CRLF becomes LF, whole lines go out, and a program ending in an error
        # still shows what it printed before it.
        out = CellOutput(capture or _stdout_write, board,
                         getattr(self._kernel, "cell_filters", {}), has_result=has_result)
        with out:
            board.exec(code, on_output=out.feed, timeout=timeout, on_idle=out.idle)
        return out.result


def notes_after(shell: Any) -> str:
    """What follows the host cell that just ran, as after a board cell's error: the hint of
    the BoardError that ended it, one stdout line each ("" if nothing was left uncaught)."""
    result = getattr(shell, "last_execution_result", None)
    err = getattr(result, "error_in_exec", None)
    return "".join(line + "\n" for line in err.notes) if isinstance(err, BoardError) else ""


def _stdout_write(text: str) -> None:
    # The host cell's stdout is ipykernel's stream, tied to this cell.
    sys.stdout.write(text)
    sys.stdout.flush()


@contextmanager
def _interrupts_to(board: Board) -> Iterator[None]:
    """While a board call runs, SIGINT (both kernelspec interrupt modes) asks the board's
    ladder to stop the program instead of raising KeyboardInterrupt mid-write on the link."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def on_sigint(signum: int, frame: Any) -> None:
        board.interrupt()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
