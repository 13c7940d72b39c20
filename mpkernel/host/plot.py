"""Live plots of the numbers a board cell prints (`%%plot`).

Each output line is either data or text. Data is one number per comma (or space) separated
field, `1.5, 22` (series y1, y2), or `name=value` pairs, `temp=21.5 hum=40` (series temp,
hum); anything else is text and is shown as text.

Why matplotlib rendered to PNG and replaced in place (IPython's `display(...,
display_id=...)` then `update_display`), rather than a widget library: a PNG update is one
IOPub message that every frontend applies to the same output (JupyterLab, Notebook, VS Code,
nbclient), so a notebook executed headless keeps the final plot as a static image with no
widget state to save; nothing needs a frontend extension; and a small Agg figure whose lines
are updated in place (not rebuilt) renders in a few tens of milliseconds, cheap at the
default two updates a second. Widget plots (bqplot, plotly's FigureWidget) would be smoother
in JupyterLab but show nothing in nbconvert output or a console.
"""

from __future__ import annotations

import io
import math
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

MAX_ROWS = 100_000  # plot_data keeps the newest rows beyond this (a long-running loop)
MAX_SERIES = 12  # more fields than this in one line: the line is text, not a dozen lines

_SPLIT = re.compile(r"[,;\s]+")
_EQUALS = re.compile(r"\s*=\s*")
_NAME = re.compile(r"^[A-Za-z_][\w.]*$")


def parse_line(line: str) -> dict[str, float] | None:
    """The data in one output line (series name -> value), or None if it is text."""
    fields = [f for f in _SPLIT.split(_EQUALS.sub("=", line.strip())) if f]
    if not fields or len(fields) > MAX_SERIES:
        return None
    row: dict[str, float] = {}
    for position, field in enumerate(fields, start=1):
        name, sep, value = field.partition("=")
        if not sep:
            name, value = f"y{position}", field
        elif not _NAME.match(name):
            return None
        try:
            row[name] = float(value)
        except ValueError:
            return None
    return row


class LivePlot:
    """The plot of one cell: rows in, a throttled PNG out through `publish(bundle, first)`."""

    def __init__(self, publish: Callable[[dict[str, Any], bool], None], window: int = 500,
                 every: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        self.rows: deque[dict[str, float]] = deque(maxlen=MAX_ROWS)
        self.count = 0  # rows ever seen (the x axis: sample number)
        self.window = window
        self.every = every
        self._publish = publish
        self._clock = clock
        self._series: dict[str, deque[tuple[int, float]]] = {}
        self._last_draw = -math.inf
        self._dirty = False
        self._shown = False
        self.updates = 0  # images published, the first included
        self._figure: Any = None
        self._lines: dict[str, Any] = {}

    def add(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        self.count += 1
        for name, value in row.items():
            points = self._series.get(name)
            if points is None:
                points = self._series[name] = deque(maxlen=self.window)
            points.append((self.count, value))
        self._dirty = True
        self.tick()

    def tick(self) -> None:
        """Redraw if there is new data and `every` seconds have passed since the last."""
        if self._dirty and self._clock() - self._last_draw >= self.every:
            self.draw()

    def draw(self) -> None:
        if not self._series:
            return
        self._last_draw = self._clock()
        self._dirty = False
        self._publish(self.bundle(), not self._shown)
        self._shown = True
        self.updates += 1

    def finish(self) -> None:
        """The last image, whatever the throttle says, so it shows every row received."""
        if self._dirty or not self._shown:
            self.draw()

    def summary(self) -> str:
        names = ", ".join(self._series)
        return (f"{self.count} row{'s' * (self.count != 1)}, "
                f"{len(self._series)} series ({names})")

    def bundle(self) -> dict[str, Any]:
        return {"image/png": self.render(),
                "text/plain": f"<live plot: {self.summary()}>"}

    def render(self) -> bytes:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        if self._figure is None:
            # A bare Figure, not pyplot: no global state, and the inline backend does not
            # show a second copy of it when the cell ends.
            self._figure = Figure(figsize=(6.4, 3.2), dpi=80, layout="tight")
            FigureCanvasAgg(self._figure)
            ax = self._figure.add_subplot()
            ax.set_xlabel("sample")
            ax.grid(True, alpha=0.3)
        ax = self._figure.axes[0]
        for name, points in self._series.items():
            line = self._lines.get(name)
            if line is None:
                (line,) = ax.plot([], [], label=name)
                self._lines[name] = line
                ax.legend(loc="upper left", fontsize="small")
            line.set_data([p[0] for p in points], [p[1] for p in points])
        ax.relim()
        ax.autoscale_view()
        out = io.BytesIO()
        self._figure.savefig(out, format="png")
        return out.getvalue()
