"""Timing magics: %time, %%time and %timeit, measured on the board."""

from __future__ import annotations

import argparse

from mpkernel.display import CellPlace
from mpkernel.errors import CellRefused
from mpkernel.magics import MagicContext, arg, magic


def _place(ctx: MagicContext, below: bool) -> CellPlace | None:
    """Where the timed code stands in the cell: on the magic's own line (`%time CODE`) or
    from the line below it (`%%time`); None outside a kernel (no cell to name)."""
    magic = getattr(ctx.kernel, "magic_place", None)
    if magic is None:
        return None
    return CellPlace(magic.count, magic.line + 1 if below else magic.line)


@magic("time", arg("statement", nargs="*", help="code to run once, timed"), raw=True)
def time_line(ctx: MagicContext, args: argparse.Namespace) -> None:
    """Time a statement on the board: the board's own clock and the host's wall time. The
    board's is time.ticks_us around the code; the host's adds sending, compiling and the
    output's trip back: `%time sum(range(1000))`."""
    from mpkernel.host.timing import run_timed

    if not args.line.strip():
        raise CellRefused("%time needs a statement to time.",
                          "For example: %time sum(range(1000)), or %%time for a whole cell.")
    ctx.write(run_timed(ctx, args.line.strip(), _place(ctx, below=False)) + "\n")


@magic("time", cell=True)
def time_cell(ctx: MagicContext, args: argparse.Namespace, body: str) -> None:
    """Time the cell on the board: the board's own clock and the host's wall time. The
    board's is time.ticks_us around the cell's code; the host's adds sending, compiling and
    the output's trip back. Output and Out[n] appear as for any cell."""
    from mpkernel.host.timing import run_timed

    ctx.write(run_timed(ctx, body, _place(ctx, below=True)) + "\n")


@magic(
    "timeit",
    arg("-n", type=int, metavar="N", help="loops per run (default: grown until a run takes "
        "0.2 s on the board)"),
    arg("-r", type=int, metavar="R", help="runs (default: up to 5, within about 3 s)"),
    arg("statement", nargs="*", help="one line of code"),
    raw=True,
)
def timeit_magic(ctx: MagicContext, args: argparse.Namespace) -> None:
    """Time one line in a loop that runs on the board, without the serial round trip. For
    example `%timeit sum(range(100))`, `%timeit -n 100 -r 3 f()`.

    Reports the mean and spread per loop, the best run, and what the bare loop costs.
    """
    from mpkernel.host.timing import timeit

    ctx.write(timeit(ctx, args.line).summary() + "\n")
