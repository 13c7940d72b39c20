"""A board error in a cell reads like IPython's: `Cell In[n], line M` and the offending line
of the cell; the kernel's own notes (an interrupt's, a kernel error's hint) follow as plain
output, not in red."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from host_kernel import PORTS, Cell, Notebook, board_name_fixture, notebook  # noqa: F401

from mpkernel import cells, display
from mpkernel.errors import DeviceError

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _plain(lines: list[str]) -> list[str]:
    return [_ANSI.sub("", line) for line in lines]


def _board(text: str) -> list[str]:
    return cells.parse_traceback(text.replace("\n", "\r\n"))[2]


def test_the_cells_frames_name_the_cell_and_show_its_line() -> None:
    code = cells.parse_cell("%ls\nx = 1\ndef f():\n    return 1 / 0\nf()").code
    board = _board('Traceback (most recent call last):\n'
                   '  File "<stdin>", line 5, in <module>\n'
                   '  File "<stdin>", line 4, in f\n'
                   'ZeroDivisionError: divide by zero\n')
    assert _plain(display.cell_traceback(board, code, 7)) == [
        "Traceback (most recent call last):",
        "  Cell In[7], line 5",
        "      f()",
        "  Cell In[7], line 4, in f",
        "      return 1 / 0",
        "ZeroDivisionError: divide by zero",
    ]


def test_board_modules_and_earlier_cells_functions_stay_as_the_board_said() -> None:
    code = "import greetings\ngreetings.hello()\nold()"
    board = _board('Traceback (most recent call last):\n'
                   '  File "<stdin>", line 2, in <module>\n'
                   '  File "greetings.py", line 3, in hello\n'
                   '  File "<stdin>", line 2, in old\n'  # an earlier cell's function
                   '  File "<stdin>", line 40, in <module>\n'  # not a line of this cell
                   'NameError: name \'x\' isn\'t defined\n')
    shown = _plain(display.cell_traceback(board, code, 3))
    assert shown[1:3] == ["  Cell In[3], line 2", "      greetings.hello()"]
    assert shown[3:] == board[2:]


def test_a_compile_error_names_the_cells_line() -> None:
    board = _board('Traceback (most recent call last):\n  File "<stdin>", line 2\n'
                   'SyntaxError: invalid syntax\n')
    shown = _plain(display.cell_traceback(board, "x = 1\nif x\n    pass", 1))
    assert shown == ["Traceback (most recent call last):", "  Cell In[1], line 2", "      if x",
                     "SyntaxError: invalid syntax"]


def test_the_kernels_note_is_not_part_of_the_traceback() -> None:
    lines = _board('Traceback (most recent call last):\n  File "<stdin>", line 3, in <module>\n'
                   'KeyboardInterrupt: \n')
    note = "Interrupted: the program stopped; the board's variables are kept."
    content, notes = display.error_parts(DeviceError("KeyboardInterrupt", "", lines + [note]))
    assert content["traceback"] == lines and notes == [note]
    assert content["ename"] == "KeyboardInterrupt" and content["evalue"] == ""
    content, notes = display.error_parts(DeviceError("ValueError", "bad", ["ValueError: bad"]))
    assert content["traceback"] == ["ValueError: bad"] and notes == []


# -- through the kernel, on both emulated boards -----------------------------------------------

@pytest.fixture(scope="module")
def nb(sim: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Notebook]:
    with notebook(port=PORTS[sim], tmp_path=tmp_path_factory.mktemp("tb")) as running:
        yield running


@pytest.mark.device
@pytest.mark.boards("microbit", "qemu")
def test_a_cells_error_names_its_cell_line_and_source(nb: Notebook) -> None:
    cell = nb.run("%ls\ny = 2\nz = y / 0")  # a leading magic line: the error is on line 3
    count = cell.reply["execution_count"]
    assert cell.error["ename"] == "ZeroDivisionError"
    assert cell.error["evalue"] in ("divide by zero", "division by zero")
    tb = _plain(cell.error["traceback"])
    assert f"  Cell In[{count}], line 3" in tb, tb
    assert tb[tb.index(f"  Cell In[{count}], line 3") + 1] == "      z = y / 0"
    assert not any("<stdin>" in line for line in tb), tb
    assert cell.reply["traceback"] == cell.error["traceback"]

    cell = nb.run("def f(n):\n    return [1][n]\n\nf(0)\nf(5)")  # a multi-line cell
    count = cell.reply["execution_count"]
    tb = _plain(cell.error["traceback"])
    assert cell.error["ename"] == "IndexError", tb
    assert tb[1:5] == [f"  Cell In[{count}], line 5", "      f(5)",
                       f"  Cell In[{count}], line 2, in f", "      return [1][n]"], tb

    cell = nb.run("x = 1\nx / 0")  # a trailing expression, rewritten by the kernel in place
    tb = _plain(cell.error["traceback"])
    assert tb[1:3] == [f"  Cell In[{cell.reply['execution_count']}], line 2", "      x / 0"], tb


@pytest.mark.device
@pytest.mark.boards("microbit", "qemu")
def test_an_interrupts_note_follows_the_traceback_as_plain_output(nb: Notebook) -> None:
    cell = nb.run("print('looping')\nwhile True:\n    pass",
                  interrupt_when=lambda msgs: any(m["msg_type"] == "stream" for m in msgs))
    assert cell.error["ename"] == "KeyboardInterrupt"
    assert not any("variables are kept" in line for line in cell.error["traceback"])
    kinds = [m["msg_type"] for m in cell.messages]
    note = cell.messages[kinds.index("error") + 1]
    assert note["msg_type"] == "stream" and note["content"]["name"] == "stdout"
    assert "the board's variables are kept" in note["content"]["text"]


def _error_then_note(cell: Cell) -> tuple[list[str], str]:
    """The error's traceback and the stdout stream right after the error message."""
    kinds = [m["msg_type"] for m in cell.messages]
    assert "error" in kinds, kinds
    after = cell.messages[kinds.index("error") + 1 :]
    assert after and after[0]["msg_type"] == "stream", (kinds, cell.error["traceback"])
    assert after[0]["content"]["name"] == "stdout"
    return cell.error["traceback"], after[0]["content"]["text"]


@pytest.mark.device
@pytest.mark.boards("microbit", "qemu")
def test_the_kernels_own_error_holds_what_happened_and_what_to_do_follows(nb: Notebook) -> None:
    cell = nb.run("%timeit")
    tb, note = _error_then_note(cell)
    assert cell.error["ename"] == "CellRefused"
    assert tb == ["%timeit needs a statement to time."]
    assert note == "For example: %timeit sum(range(100))\n"
    assert cell.reply["traceback"] == tb

    cell = nb.run("%no_such_magic")
    tb, note = _error_then_note(cell)
    assert tb == ["Unknown magic %no_such_magic."]
    assert note.startswith("Known magics: ") and "%help NAME explains one." in note


@pytest.mark.device
@pytest.mark.boards("microbit", "qemu")
def test_a_reset_shows_the_boot_output_in_the_error_and_the_way_on_as_a_note(
    nb: Notebook,
) -> None:
    # Last in this module: the reset clears the board's variables.
    cell = nb.run("try:\n import microbit as m\nexcept ImportError:\n import machine as m\n"
                  "m.reset()")
    tb, note = _error_then_note(cell)
    assert cell.error["ename"] == "BoardReset", tb
    assert tb[0].startswith("The board reset while the cell ran; its variables are gone."), tb
    assert "What the board printed as it booted:" in tb, tb
    assert not any("next cell" in line for line in tb), tb
    assert "The next cell runs normally" in note
    assert nb.run("print(6 * 7)").stdout == "42\n"
