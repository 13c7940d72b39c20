"""Host-side magics: %%plot (live plots of board output) and %mip (libraries on the board)."""

from __future__ import annotations

import argparse
from typing import Any

from mpkernel import cells, output_filters
from mpkernel.display import StreamCleaner
from mpkernel.errors import CellRefused
from mpkernel.magics import MagicContext, arg, magic


def _host_namespace(ctx: MagicContext) -> dict[str, Any] | None:
    shell = getattr(ctx.kernel, "shell", None)
    return getattr(shell, "user_ns", None)


class _Publisher:
    """One display that later images replace (display_id), not a new image per update."""

    def __init__(self, ctx: MagicContext) -> None:
        self._ctx = ctx
        self._handle: Any = None

    def __call__(self, bundle: dict[str, Any], first: bool) -> None:
        if self._ctx.kernel is None:  # a test's context without IPython: the text stands in
            self._ctx.write(bundle["text/plain"] + "\n")
            return
        from IPython.display import display

        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)


@magic(
    "plot",
    arg("--window", type=int, default=500, metavar="N",
        help="points per series shown (the newest N; default 500)"),
    arg("--every", type=float, default=0.5, metavar="SECONDS",
        help="redraw at most this often (default 0.5)"),
    cell=True,
)
def plot(ctx: MagicContext, args: argparse.Namespace, body: str) -> None:
    """Run the cell on the board and plot the numbers it prints, live. One figure is updated
    in place: `print(a, b)` gives series y1 and y2, `print('temp=%d hum=%d' % ...)` gives
    series temp and hum. Other lines are shown as text.

    When the cell ends or is interrupted, host cells have the data as `plot_data`, a list of
    rows ({series: value}), e.g. `%%host` then `pandas.DataFrame(plot_data)`. The figure is
    a PNG, so saved and headless-run notebooks keep the final plot.
    """
    from mpkernel.host.plot import LivePlot, parse_line

    if args.window < 2:
        raise CellRefused(f"--window {args.window} leaves nothing to draw a line with.",
                          "Use --window 2 or more (default 500).")
    if not args.every >= 0.05:
        raise CellRefused(f"--every {args.every} would redraw without pause and slow the "
                          "kernel down.", "Use --every 0.05 or more (default 0.5 s).")
    cells.refuse_control_bytes(body)
    live = LivePlot(_Publisher(ctx), window=args.window, every=args.every)
    cleaner = StreamCleaner()
    partial = [""]

    def take(lines: list[str]) -> None:
        text = []
        for line in lines:
            row = parse_line(line)
            if row is None:
                text.append(line + "\n")
            else:
                live.add(row)
        if text:  # one stream message per chunk of output, not one per line
            ctx.write("".join(text))

    def on_output(text: str) -> None:
        lines = (partial[0] + cleaner.feed(text)).split("\n")
        partial[0] = lines.pop()
        take([line.rstrip("\r") for line in lines])

    board = ctx.board
    # Cell output filters (the MQTT bridge's relay) take part in plotted cells too.
    active = output_filters.ActiveFilters(getattr(ctx.kernel, "cell_filters", {}), board)
    filtered, on_idle = active.wrap(on_output, live.tick)
    try:
        board.exec(body, on_output=filtered, on_idle=on_idle)
    finally:
        active.close()
        rest = partial[0] + cleaner.flush()
        if rest.strip():
            take([rest])
        live.finish()
        namespace = _host_namespace(ctx)
        if namespace is not None:
            namespace["plot_data"] = list(live.rows)
        if live.count:
            kept = "" if live.count == len(live.rows) else f" (the newest {len(live.rows)})"
            ctx.write(f"plot_data: {live.summary()}{kept}, for %%host cells.\n")


@magic(
    "mip",
    arg("command", choices=["install"], help="what to do (install)"),
    arg("packages", nargs="+", metavar="PACKAGE[@VERSION]",
        help="micropython-lib package names, e.g. umqtt.simple or umqtt.simple@1.3.4"),
    arg("--index", default=None, metavar="URL",
        help="mip package index (default: $MPKERNEL_MIP_INDEX or micropython-lib's)"),
    arg("--target", default=None, metavar="DIR",
        help="folder on the board (default: the lib folder on sys.path, e.g. /lib)"),
    arg("--source", action="store_true", help="install .py source even where .mpy exists"),
)
def mip(ctx: MagicContext, args: argparse.Namespace) -> None:
    """Install micropython-lib packages on the board, downloaded by this computer. The board
    needs no network: `%mip install umqtt.simple`, `%mip install umqtt.simple@1.3.4`.

    Compiled .mpy files are chosen when the index has them for the board's .mpy format,
    source otherwise. Every file is checked against the index's hash, then written through
    the verified file transfer. On a flat filesystem (the micro:bit) only packages of
    top-level modules fit. The index is micropython-lib's unless `--index URL` or the
    MPKERNEL_MIP_INDEX environment variable names another (a mirror, a local index).
    """
    from mpkernel.host.mip import run_install
    from mpkernel.magics.files import _fs, _upload

    run_install(ctx, args, _fs(ctx), lambda data, path, label: _upload(ctx, data, path, label))
