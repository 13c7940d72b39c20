"""Cell output filters: host code that takes part in a board cell while it runs.

A feature that talks with a program on the board through the cell's own output (the MQTT
bridge relays frames the board prints) registers a factory in the kernel's `cell_filters`.
For each board cell, every factory makes a filter that sees the output text first (and
returns what the user should see), is called at every read tick, and is closed when the
cell ends, however it ends (returning text it still held back, which is then shown).
Filters run in the kernel's main thread, between the reads of the cell's output, so they
may write to the board's link.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mpkernel.board.board import Board


class CellFilter(Protocol):
    def feed(self, text: str) -> str: ...

    def idle(self) -> None: ...

    def close(self) -> str: ...


FilterFactory = Callable[["Board"], CellFilter]

# Filters of every kernel in this process, registered by a feature when it is imported (one
# kernel per process): the MQTT bridge's relay must answer a board that already has the
# bridge module after a kernel restart, before any %mqtt command runs again.
DEFAULTS: dict[str, FilterFactory] = {}


class ActiveFilters:
    """The filters of one running cell, chained in registration order."""

    def __init__(self, factories: dict[str, FilterFactory], board: Board) -> None:
        self.filters = [make(board) for make in {**DEFAULTS, **factories}.values()]
        self._output: Callable[[str], None] | None = None

    def wrap(
        self, on_output: Callable[[str], None], on_idle: Callable[[], None]
    ) -> tuple[Callable[[str], None], Callable[[], None]]:
        if not self.filters:
            return on_output, on_idle
        self._output = on_output

        def output(text: str) -> None:
            for f in self.filters:
                text = f.feed(text)
            if text:
                on_output(text)

        def idle() -> None:
            for f in self.filters:
                f.idle()
            on_idle()

        return output, idle

    def close(self) -> None:
        for i, f in enumerate(self.filters):
            text = f.close()
            for later in self.filters[i + 1 :]:
                text = later.feed(text) if text else text
            if text and self._output is not None:
                self._output(text)
