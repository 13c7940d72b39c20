"""Timing code on the board: `%time`/`%%time` (one run, board ticks and host wall time) and
`%timeit` (a loop run entirely on the board, so the serial round trip is not in the figure).

The board's clock is `time.ticks_us`, read before and after the code inside the same program;
the host's wall time adds sending the program, compiling it and carrying its output back.
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mpkernel import cells, output_filters
from mpkernel.display import CellOutput, CellPlace, cell_traceback
from mpkernel.errors import CellRefused, DeviceError, MpkernelError

if TYPE_CHECKING:
    from mpkernel.magics import MagicContext

# One line each, so the cell's line numbers in the board's tracebacks move by exactly one
# (the `%%time` line itself), i.e. they stay those of the notebook cell.
_START = ("__mpk_tm=__import__('time');__mpk_dt=None;"
          "__mpk_t0=__mpk_tm.ticks_us() if hasattr(__mpk_tm,'ticks_us') else None\n")
_STOP = ("\n__mpk_dt=__mpk_tm.ticks_diff(__mpk_tm.ticks_us(),__mpk_t0) "
         "if __mpk_t0 is not None else None")
_FETCH = "print(repr(__mpk_dt));del __mpk_dt,__mpk_t0,__mpk_tm"


def human_time(seconds: float) -> str:
    """0.0000123 -> '12.3 µs', 0.0123 -> '12.3 ms', 1.5 -> '1.50 s' (3 significant digits)."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale or unit == "µs":
            value = seconds / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{seconds:.3g} s"


def run_timed(ctx: MagicContext, code: str, place: CellPlace | None = None) -> str:
    """Run code like a board cell (output streamed, a trailing expression shown as Out[n]),
    timed on the board and on the host; returns the line that reports both.

    `place` is where `code` stands in the notebook: the board's errors then name the cell's
    lines (`Cell In[n], line M` and the line itself) as a board cell's do, not `<stdin>`.
    """
    cells.refuse_control_bytes(code)
    _, has_result = cells.show_trailing_expression(code)
    # The value is kept aside and printed after the clock stops: printing it is output, and
    # the board's time should be the code's alone.
    body = _keep_trailing_value(code) if has_result else code
    stop = _STOP + (f"\nprint({cells.RESULT_MARK!r}+repr(__mpk_r),end='');del __mpk_r"
                    if has_result else "")
    board = ctx.board
    out = CellOutput(ctx.write, board, _filters(ctx), has_result=has_result)
    started = time.monotonic()
    try:
        with out:
            board.exec(_START + body + stop, on_output=out.feed, on_idle=out.idle)
    except MpkernelError as err:
        if isinstance(err, DeviceError) and place is not None:
            # The board's line 1 starts the clock and its line 2 is the code's first line,
            # which is the cell's line place.line.
            err.traceback = cell_traceback(err.traceback, "\n" + code, place.count,
                                           shift=place.line - 2)
        ctx.write(f"Wall time: {human_time(time.monotonic() - started)} (the cell failed, so "
                  "the board's time is not known)\n")
        raise
    wall = time.monotonic() - started
    ticks = ast.literal_eval(board.exec(_FETCH, interruptible=False).strip() or "None")
    if out.result not in (None, "None"):
        _show_result(ctx, out.result)
    if ticks is None:
        return (f"Wall time: {human_time(wall)} (this firmware has no time.ticks_us, so only "
                "the host's clock, which includes the serial transfer)")
    return (f"Board time: {human_time(ticks / 1e6)} (time.ticks_us on the board) · "
            f"wall time: {human_time(wall)} (host: sending, compiling, running, output)")


def _filters(ctx: MagicContext) -> dict[str, output_filters.FilterFactory]:
    # Cell output filters (the MQTT bridge's relay) take part in timed cells too.
    return getattr(ctx.kernel, "cell_filters", {})


def _keep_trailing_value(code: str) -> str:
    """`...\nexpr` -> `...\n__mpk_r=(expr)`, every line where it was."""
    node = ast.parse(code).body[-1]
    lines = code.split("\n")
    first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
    # ast's column offsets count UTF-8 bytes.
    end = lines[last].encode()[: node.end_col_offset].decode()
    lines[last] = end + ")"
    head = lines[first].encode()
    lines[first] = (head[: node.col_offset].decode() + "__mpk_r=("
                    + head[node.col_offset:].decode())
    return "\n".join(lines)


def _show_result(ctx: MagicContext, value: str) -> None:
    kernel = ctx.kernel
    if kernel is None or getattr(kernel, "shell", None) is None:
        ctx.write(value + "\n")
        return
    # The kernel counted this cell before running it: Out[n] takes that number.
    count = kernel.shell.execution_count - 1
    kernel.send_response(kernel.iopub_socket, "execute_result",
                         {"execution_count": count, "data": {"text/plain": value},
                          "metadata": {}})


# -- %timeit ----------------------------------------------------------------------------------
TARGET_US = 200_000  # grow the loop count until one run takes this long on the board
BUDGET_US = 3_000_000  # and keep all repeats together within about this much board time
MAX_LOOPS = 1_000_000
REPEATS = 5

_TIMEIT = """\
def __mpk_ti(n,r):
 import time as t
 def run(k):
  t0=t.ticks_us()
  for _ in range(k):
   {stmt}
  return t.ticks_diff(t.ticks_us(),t0)
 def empty(k):
  t0=t.ticks_us()
  for _ in range(k):
   pass
  return t.ticks_diff(t.ticks_us(),t0)
 if not n:
  n=1
  while True:
   d=run(n)
   if d>={target} or n>={max_loops}:
    break
   n*=10
  r=r or max(1,min({repeats},{budget}//max(d,1)))
  times=[d]
 else:
  times=[]
 while len(times)<(r or {repeats}):
  times.append(run(n))
 print({mark!r}+repr((n,times,empty(n))))
try:
 __mpk_ti({n},{r})
finally:
 del __mpk_ti
"""

_OPTIONS = re.compile(r"^\s*(?:-n\s*(?P<n>\d+)\s+)?(?:-r\s*(?P<r>\d+)\s+)?(?P<stmt>.*)$", re.S)


@dataclass
class TimeitResult:
    loops: int
    runs_us: list[int]
    empty_us: int

    def per_loop(self) -> list[float]:
        return [t / self.loops / 1e6 for t in self.runs_us]

    def summary(self) -> str:
        per = self.per_loop()
        mean = sum(per) / len(per)
        spread = (sum((p - mean) ** 2 for p in per) / (len(per) - 1)) ** 0.5 if len(per) > 1 \
            else 0.0
        runs = f"{len(per)} run{'s' * (len(per) != 1)}"
        loops = f"{self.loops} loop{'s' * (self.loops != 1)} each"
        overhead = self.empty_us / self.loops / 1e6
        return (f"{human_time(mean)} ± {human_time(spread)} per loop on the board (mean ± std. "
                f"dev. of {runs}, {loops}; best {human_time(min(per))}; the loop itself "
                f"costs {human_time(overhead)})")


def parse_timeit(line: str) -> tuple[str, int, int]:
    """`[-n N] [-r R] STATEMENT` -> (statement, loops or 0, repeats or 0)."""
    m = _OPTIONS.match(line)
    stmt = (m["stmt"] if m else line).strip()
    if not stmt:
        raise CellRefused("%timeit needs a statement to time.",
                          "For example: %timeit sum(range(100))")
    if "\n" in stmt:
        raise CellRefused("%timeit times one line.",
                          "Put several statements on one line with `;`, or define a "
                          "function in a cell and time calling it.")
    try:
        ast.parse(stmt)
    except SyntaxError as err:
        raise CellRefused(f"%timeit: the statement is not valid Python ({err.msg}); nothing "
                          "was sent.", "For example: %timeit sum(range(100))") from None
    loops, repeats = int(m["n"] or 0) if m else 0, int(m["r"] or 0) if m else 0
    if (m and m["n"] and loops < 1) or (m and m["r"] and repeats < 1):
        raise CellRefused("%timeit: -n and -r must be at least 1.", "")
    return stmt, min(loops, MAX_LOOPS * 10), min(repeats, 100)


def timeit(ctx: MagicContext, line: str, write: Callable[[str], None] | None = None
           ) -> TimeitResult:
    stmt, loops, repeats = parse_timeit(line)
    program = _TIMEIT.format(stmt=stmt, target=TARGET_US, max_loops=MAX_LOOPS,
                             repeats=REPEATS, budget=BUDGET_US, n=loops, r=repeats,
                             mark=cells.RESULT_MARK)
    board = ctx.board
    # The loop's figures follow RESULT_MARK, like a trailing expression's value.
    with CellOutput(write or ctx.write, board, _filters(ctx), has_result=True) as out:
        board.exec(program, on_output=out.feed, on_idle=out.idle)
    value: Any = ast.literal_eval((out.result or "").strip())
    return TimeitResult(value[0], list(value[1]), value[2])
