"""%time, %%time and %timeit measure code on the board (emulated micro:bit)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from host_kernel import PORTS, Notebook, board_name_fixture, notebook  # noqa: F401

from mpkernel.errors import CellRefused
from mpkernel.host.timing import TimeitResult, human_time, parse_timeit

# Both boards by default, like a test marked for them; MPK_BOARDS does not narrow it.
pytestmark = [pytest.mark.device, pytest.mark.boards("microbit", "qemu")]

_TIME = re.compile(r"^Board time: (?P<board>[\d.]+) (?P<bu>µs|ms|s) \(time.ticks_us on the "
                   r"board\) · wall time: (?P<wall>[\d.]+) (?P<wu>µs|ms|s) \(host: sending, "
                   r"compiling, running, output\)$")
_UNITS = {"µs": 1e-6, "ms": 1e-3, "s": 1.0}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _plain(lines: list[str]) -> list[str]:
    return [_ANSI.sub("", line) for line in lines]


def _seconds(m: re.Match, which: str) -> float:
    return float(m[which]) * _UNITS[m[which[0] + "u"]]


@pytest.fixture(scope="module")
def nb(sim: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Notebook]:
    with notebook(port=PORTS[sim], tmp_path=tmp_path_factory.mktemp("timing")) as running:
        yield running


def test_cell_time_measures_the_board_and_keeps_output_and_result(nb: Notebook) -> None:
    # 300 ms by the board's own clock, busy-waited. The emulated micro:bit's ticks_us is
    # glitchy (measured: 1.19-1.26 s of ticks_us per second of ticks_ms, single steps of
    # +65.6 ms and some backwards), so a reading there may be off by one such step.
    cell = nb.run("%%time\nimport time\nprint('start')\nt = time.ticks_us()\n"
                  "while time.ticks_diff(time.ticks_us(), t) < 300000:\n    pass\n6 * 7")
    assert cell.ok, cell.error
    lines = cell.stdout.splitlines()
    assert lines[0] == "start"
    m = _TIME.match(lines[1])
    assert m, lines
    board, wall = _seconds(m, "board"), _seconds(m, "wall")
    assert 0.3 - 0.066 <= board <= 0.45, board
    assert wall >= board
    assert cell.result == "42"
    # Nothing of the timer is left in the board's namespace.
    assert nb.run("print([n for n in globals() if n.startswith('__mpk_t')])").stdout == "[]\n"


def test_line_time_and_an_error_keeps_the_cells_line_numbers(nb: Notebook) -> None:
    cell = nb.run("%time x = sum(range(100))")
    assert cell.ok and _TIME.match(cell.stdout.strip()), cell.stdout
    assert nb.run("print(x)").stdout == "4950\n"
    cell = nb.run("%%time\ny = 1\nz = 1 / 0")
    assert cell.error["ename"] == "ZeroDivisionError"
    assert _plain(cell.error["traceback"])[1:3] == [
        f"  Cell In[{cell.reply['execution_count']}], line 3", "      z = 1 / 0"]
    assert cell.stdout.startswith("Wall time: ")
    assert cell.stdout.endswith(" (the cell failed, so the board's time is not known)\n")


def test_a_timed_cells_error_names_the_cell_and_its_lines_as_a_plain_cells_does(
    nb: Notebook,
) -> None:
    # A blank first line and a function defined in the cell: the frames are the cell's lines.
    cell = nb.run("\n%%time\ndef f(n):\n    return [1][n]\n\nf(0)\nf(5)")
    count = cell.reply["execution_count"]
    tb = _plain(cell.error["traceback"])
    assert cell.error["ename"] == "IndexError", tb
    assert tb[1:5] == [f"  Cell In[{count}], line 7", "      f(5)",
                       f"  Cell In[{count}], line 4, in f", "      return [1][n]"], tb
    assert not any("<stdin>" in line for line in tb), tb
    assert cell.reply["traceback"] == cell.error["traceback"]
    # %time on the cell's second line, after another %time: the statement's own line.
    cell = nb.run("%time a = 1\n%time b = a / 0")
    count = cell.reply["execution_count"]
    tb = _plain(cell.error["traceback"])
    assert cell.error["ename"] == "ZeroDivisionError", tb
    assert tb[1:3] == [f"  Cell In[{count}], line 2", "      b = a / 0"], tb
    assert not any("<stdin>" in line for line in tb), tb
    assert _TIME.match(cell.stdout.splitlines()[0]), cell.stdout  # the first one was timed


def test_timeit_loops_on_the_board_and_reports_per_loop_time(nb: Notebook) -> None:
    assert nb.run("def slow():\n    import time\n    time.sleep_ms(20)").ok
    cell = nb.run("%timeit -n 10 -r 2 slow()")
    assert cell.ok, cell.error
    m = re.match(r"^(?P<mean>[\d.]+) ms ± [\d.]+ (µs|ms) per loop on the board \(mean ± std\. "
                 r"dev\. of 2 runs, 10 loops each; best [\d.]+ ms; the loop itself costs "
                 r"[\d.]+ µs\)$", cell.stdout.strip())
    assert m, cell.stdout
    # 20 ms a call, without a serial round trip per loop (that would add 20 ms or more); one
    # glitch of the micro:bit's ticks_us (65.6 ms, see above) spreads 6.6 ms over a run.
    assert 20 - 6.6 <= float(m["mean"]) <= 20 + 6.6 + 1
    # Adaptive: a cheap statement gets many loops, and the whole run stays bounded.
    cell = nb.run("%timeit a = 3 * 7")
    summary = cell.stdout.strip()
    loops = int(re.search(r"runs?, (\d+) loops? each", summary)[1])
    assert loops >= 1000, summary
    assert nb.run("print(globals().get('__mpk_ti'))").stdout == "None\n"


def test_timeit_refuses_bad_statements_before_sending_anything(nb: Notebook) -> None:
    cell = nb.run("%timeit x = = 1")
    assert cell.error["evalue"].startswith("%timeit: the statement is not valid Python")
    cell = nb.run("%timeit")
    assert cell.error["evalue"] == "%timeit needs a statement to time."
    cell = nb.run("%time")
    assert cell.error["evalue"] == "%time needs a statement to time."
    assert nb.run("print(6 * 7)").stdout == "42\n"


def test_parse_timeit_and_the_summary() -> None:
    assert parse_timeit("-n 10 -r 3 f(1, 'a b')") == ("f(1, 'a b')", 10, 3)
    assert parse_timeit("d = {'k': 1}") == ("d = {'k': 1}", 0, 0)
    with pytest.raises(CellRefused):
        parse_timeit("-n 0 f()")
    result = TimeitResult(loops=1000, runs_us=[12000, 14000], empty_us=2000)
    assert result.summary() == ("13 µs ± 1.41 µs per loop on the board (mean ± std. dev. of "
                                "2 runs, 1000 loops each; best 12 µs; the loop itself costs "
                                "2 µs)")
    assert human_time(1.5) == "1.5 s" and human_time(0.000123) == "123 µs"
