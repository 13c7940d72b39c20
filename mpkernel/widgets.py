"""Everything built from ipywidgets: the transfer progress bar and the port picker.

The only module that imports ipywidgets, and only inside functions: importing mpkernel (or
running `mpkernel doctor` in a terminal) never pays for ipywidgets, and frontends without
widget support get the text fallbacks (`display.TextProgress`, `ports.format_ports`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mpkernel.display import progress_text
from mpkernel.errors import MpkernelError

if TYPE_CHECKING:
    from mpkernel.ports import PortInfo

SIM_LABEL = "sim - emulated micro:bit"


def _show_in_notebook(widget: Any) -> None:
    from IPython.display import display

    display(widget)


class WidgetProgress:
    """A progress bar plus a line of bytes, rate and ETA; `close(summary)` leaves the summary.

    Implements display.Progress. Redraws at most `hz` times a second: each change is a comm
    message to the frontend, and a chunked upload may report progress thousands of times.
    """

    def __init__(
        self,
        label: str,
        total: int,
        show: Callable[[Any], None] | None = None,
        hz: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import ipywidgets as w

        self.label = label
        self.total = total
        self.done = 0
        self._clock = clock
        self._start = clock()
        self._min_gap = 1.0 / hz
        self._last_draw = -1e9
        self.bar = w.IntProgress(value=0, min=0, max=max(total, 1), description=label,
                                 style={"description_width": "initial"})
        self.text = w.Label(value=progress_text(label, 0, total, 0.0))
        self.widget = w.VBox([self.bar, self.text])
        (show or _show_in_notebook)(self.widget)

    def update(self, done: int) -> None:
        self.done = done
        now = self._clock()
        if now - self._last_draw < self._min_gap and done < self.total:
            return
        self._last_draw = now
        self.bar.value = min(done, self.bar.max)
        self.text.value = progress_text(self.label, done, self.total, now - self._start)

    def close(self, summary: str = "") -> None:
        elapsed = self._clock() - self._start
        self.bar.value = min(self.done, self.bar.max)
        self.bar.bar_style = "success" if self.done >= self.total else "warning"
        self.text.value = summary or progress_text(self.label, self.done, self.total, elapsed)


def port_choices(ports: list[PortInfo]) -> list[tuple[str, str]]:
    """(label, value) pairs: every port with what it probably is, then the emulated board."""
    choices = []
    for p in ports:
        what = p.board_guess or p.description or "unknown"
        choices.append((f"{p.device} - {what}", p.device))
    choices.append((SIM_LABEL, "sim"))
    return choices


def port_picker(ports: list[PortInfo], on_connect: Callable[[str], None]) -> Any:
    """A dropdown of ports (likely boards first, `sim` last) and a Connect button.

    `on_connect(port)` runs on click; an MpkernelError from it is shown under the button, as
    a click handler's exception would otherwise vanish into the kernel log.
    """
    import ipywidgets as w

    choices = port_choices(ports)
    default = next((p.device for p in ports if p.is_likely_board), choices[0][1])
    dropdown = w.Dropdown(options=choices, value=default, description="Port:",
                          layout=w.Layout(width="max-content"))
    button = w.Button(description="Connect", button_style="primary", icon="plug")
    status = w.Label(value="")

    def clicked(_: Any) -> None:
        button.disabled = True
        status.value = f"Connecting to {dropdown.value} ..."
        try:
            on_connect(dropdown.value)
        except MpkernelError as err:
            status.value = err.user_text().replace("\n", " ")
        else:
            status.value = f"Connected to {dropdown.value}."
        finally:
            button.disabled = False

    button.on_click(clicked)
    box = w.VBox([w.HBox([dropdown, button]), status])
    # Exposed for tests and for callers that want to preselect or read the choice.
    box.dropdown, box.button, box.status = dropdown, button, status  # type: ignore[attr-defined]
    return box
