"""`%%host` cells reach the board through `board`: exec, eval, get, put, interrupts.

One kernel on the emulated micro:bit for the module (the oldest firmware is the hard case:
no raw-paste, a flat filesystem)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from host_kernel import PORTS, Cell, Notebook, board_name_fixture, notebook  # noqa: F401

from mpkernel.host.proxy import NotALiteral, parse_value

# Both boards by default, like a test marked for them; MPK_BOARDS does not narrow it.
pytestmark = [pytest.mark.device, pytest.mark.boards("microbit", "qemu")]


@pytest.fixture(scope="module")
def nb(sim: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Notebook]:
    with notebook(port=PORTS[sim], tmp_path=tmp_path_factory.mktemp("host")) as running:
        yield running


def test_exec_streams_output_and_eval_returns_values(nb: Notebook) -> None:
    cell = nb.run("%%host\n"
                  "board.exec('x = 6 * 7\\nprint(\"on the board\", x)')\n"
                  "v = board.eval('[x, \"a\", b\"\\\\x00z\", 1.5, None, {1: (2, True)}]')\n"
                  "print(type(v).__name__, v)")
    assert cell.ok, (cell.error, cell.stdout)
    assert cell.stdout == ("on the board 42\n"
                           "list [42, 'a', b'\\x00z', 1.5, None, {1: (2, True)}]\n")
    # The value lives on in host Python: a later host cell computes with it.
    cell = nb.run("%%host\nprint(v[0] + 1, board.eval('x') * 2)\n"
                  "out = board.exec('for k in range(3):\\n    print(k * x)', capture=True)\n"
                  "print(repr(out))")
    assert cell.stdout == "43 84\n'0\\n42\\n84\\n'\n"


def test_board_variables_set_in_board_cells_are_seen_by_host_cells(nb: Notebook) -> None:
    assert nb.run("readings = [3, 1, 2]").ok
    cell = nb.run("%%host\nr = board.eval('readings')\nprint(sorted(r), sum(r))")
    assert cell.stdout == "[1, 2, 3] 6\n"


def test_eval_of_a_non_literal_names_the_value_and_the_way_out(nb: Notebook) -> None:
    cell = nb.run("%%host\nboard.eval('print')")
    assert not cell.ok
    assert cell.error["ename"] == "NotALiteral"
    text = cell.error["evalue"]
    assert text.startswith("board.eval('print'): the board's value is <function>, which is "
                           "not a Python literal"), text
    assert "Return str(...) of it" in text
    assert nb.run("print(6 * 7)").stdout == "42\n"  # kernel alive, board reachable


def test_eval_of_a_statement_says_to_use_exec(nb: Notebook) -> None:
    cell = nb.run("%%host\nboard.eval('y = 1')")
    assert cell.error["ename"] == "SyntaxError"
    assert "board.eval takes one expression" in cell.error["evalue"]
    assert "board.exec(...)" in cell.error["evalue"]


def test_board_exception_shows_the_board_traceback(nb: Notebook) -> None:
    cell = nb.run("%%host\nboard.exec('def f():\\n    return 1 / 0\\nf()')")
    assert cell.error["ename"] == "ZeroDivisionError"
    lines = cell.error["traceback"]
    # The board's own words for it (1.9.2: "division by zero", 1.25: "divide by zero").
    said = nb.run("try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    print(e)").stdout
    assert lines[-1] == "ZeroDivisionError: " + said.strip()
    # Host code can catch what the board raised, and the kernel and board carry on.
    cell = nb.run("%%host\ntry:\n    board.eval('int(\"x\")')\nexcept board.Error as e:\n"
                  "    print('caught', type(e).__name__, isinstance(e, ValueError))")
    assert cell.stdout == "caught ValueError False\n"
    assert any(", in f" in line for line in lines), lines


def test_put_and_get_bytes_and_a_local_file(nb: Notebook, tmp_path: Path) -> None:
    local = tmp_path / "conf.py"
    local.write_bytes(b"speed = 12\n")
    cell = nb.run("%%host\n"
                  "board.put(b'hello\\x00\\xff\\n', 'h.bin')\n"
                  f"board.put({str(local)!r}, 'conf.py')\n"
                  "print(board.get('h.bin'))")
    assert cell.ok, (cell.error, cell.stdout)
    lines = cell.stdout.splitlines()
    assert lines[0].startswith("Wrote h.bin (8 bytes)")
    assert lines[1].startswith("Wrote conf.py (11 bytes)")
    assert lines[2] == "b'hello\\x00\\xff\\n'"
    assert nb.run("import conf\nprint(conf.speed * 2)").stdout == "24\n"
    cell = nb.run("%%host\nboard.put('/no/such/file.py', 'x.py')")
    assert cell.error["ename"] == "FileNotFoundError"
    assert cell.error["evalue"].startswith("board.put: /no/such/file.py is not a file on this "
                                           "computer.")


def test_interrupting_a_host_cell_stops_the_board_program(nb: Notebook) -> None:
    loop = "import time\\nn = 0\\nwhile True:\\n    n += 1\\n    print(n)\\n    time.sleep_ms(50)"
    cell = nb.run(f"%%host\nboard.exec('{loop}')\nprint('not reached')",
                  interrupt_when=lambda msgs: sum(m["msg_type"] == "stream" for m in msgs) >= 3,
                  timeout=30)
    assert cell.error["ename"] == "KeyboardInterrupt", cell.messages
    assert cell.error["evalue"] == "the board's program was interrupted; its variables are kept"
    printed = [int(s) for s in cell.stdout.split()]
    assert printed[:3] == [1, 2, 3]  # streamed while it ran
    assert "not reached" not in cell.stdout
    # The board's program stopped: n no longer grows, and the next board cell runs.
    first = nb.run("print(n)").stdout
    second = nb.run("import time\ntime.sleep_ms(300)\nprint(n)").stdout
    assert first == second and int(first) >= 3


def test_parse_value_handles_micropython_reprs() -> None:
    assert parse_value("[inf, -inf, 1.5e+10]") == [float("inf"), float("-inf"), 1.5e10]
    assert parse_value("bytearray(b'ab')") == b"ab"
    with pytest.raises(NotALiteral):
        parse_value("__import__('os').system('echo no')")
    with pytest.raises(NotALiteral):
        parse_value("<Pin 5>")


def _after_error(cell: Cell) -> str:
    """The stdout a cell showed after its error message (what the user reads below it)."""
    kinds = [m["msg_type"] for m in cell.messages]
    assert "error" in kinds, kinds
    return "".join(m["content"]["text"] for m in cell.messages[kinds.index("error") + 1:]
                   if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")


def test_a_board_that_cannot_be_reached_is_said_plainly(tmp_path: Path) -> None:
    with notebook(tmp_path, port="/dev/mpk-no-such-port", connect=False) as alone:
        board_cell = alone.run("print(1)")  # what a board cell says about this port
        cell = alone.run("%%host\nboard.eval('1')")
        assert cell.error["ename"] == "BoardError"
        assert cell.error["traceback"] == board_cell.error["traceback"]
        # The red error says what happened; what to do follows it as plain lines, the same
        # lines in both kinds of cell, and nothing of it is left inside the error.
        hint = _after_error(board_cell)
        assert hint.endswith("Choose one with %connect PORT (or %connect sim for the emulated "
                             "board).\n"), board_cell.messages
        assert _after_error(cell) == hint and cell.stdout == hint
        assert cell.error["traceback"] == ["Port /dev/mpk-no-such-port does not exist."]
        # A board error the host code catches ends nothing, so no hint follows.
        caught = alone.run("%%host\ntry:\n    board.eval('1')\n"
                           "except board.Error:\n    print('caught')")
        assert caught.ok and caught.stdout == "caught\n"
        assert alone.run("%%host\nprint(6 * 7)").stdout == "42\n"
