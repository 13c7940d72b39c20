"""Everything built from ipywidgets: the transfer progress bar and the port picker.

The only module that imports ipywidgets, and only inside functions: importing mpkernel (or
running `mpkernel doctor` in a terminal) never pays for ipywidgets, and frontends without
widget support get the text fallbacks (`display.TextProgress`, `ports.format_ports`).

A widget lives only as long as the kernel: a saved notebook reopened later has no model for
it, and JupyterLab then shows "Error displaying widget: model not found". So every widget
here is shown with a readable text/plain beside it, and once its job is done (the upload
finished, the board connected) its output is replaced by plain text saying what happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mpkernel.display import progress_text
from mpkernel.errors import MpkernelError

if TYPE_CHECKING:
    from mpkernel.board.ports import PortInfo

SIM_LABEL = "sim - the emulated micro:bit (MicroPython 1.9.2)"
QEMU_LABEL = "sim:qemu - the emulated MicroPython 1.25 board"

Show = Callable[[Any], Any]


class Shown:
    """A display's content: text/plain always, plus the widget's view while it is live.

    `str()` is the text, so a context without rich display still prints something useful.
    """

    def __init__(self, text: str, widget: Any = None) -> None:
        self.text = text
        self.widget = widget

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.widget is not None:
            data.update(self.widget._repr_mimebundle_())
        data["text/plain"] = self.text
        return data

    def __str__(self) -> str:
        return self.text


def _show_in_notebook(obj: Any) -> Any:
    """Display with a display_id, so the output can be replaced later; return the handle."""
    from IPython.display import display

    return display(obj, display_id=True)


def _replace(handle: Any, text: str) -> None:
    """Turn a widget's output into plain text (no-op where the output has no handle)."""
    if handle is not None and hasattr(handle, "update"):
        handle.update(Shown(text))


class WidgetProgress:
    """A progress bar plus a line of bytes, rate and ETA; `close(summary)` leaves the summary.

    Implements display.Progress. Redraws at most `hz` times a second: each change is a comm
    message to the frontend, and a chunked upload may report progress thousands of times.
    At the end the output becomes the summary as plain text, which the notebook keeps.
    """

    def __init__(
        self,
        label: str,
        total: int,
        show: Show | None = None,
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
        first = progress_text(label, 0, total, 0.0)
        self.bar = w.IntProgress(value=0, min=0, max=max(total, 1), description=label,
                                 style={"description_width": "initial"})
        self.text = w.Label(value=first)
        self.widget = w.VBox([self.bar, self.text])
        self.handle = (show or _show_in_notebook)(Shown(first, self.widget))

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
        _replace(self.handle, self.text.value)


def port_choices(ports: list[PortInfo], emulated: list[tuple[str, str]] | None = None
                 ) -> list[tuple[str, str]]:
    """(label, value) pairs: every port with what it probably is, then the emulated boards."""
    choices = []
    for p in ports:
        what = p.board_guess or p.description or "unknown"
        choices.append((f"{p.device} - {what}", p.device))
    choices.extend(emulated if emulated is not None else [(SIM_LABEL, "sim")])
    return choices


Connect = Callable[[str, Callable[[str], None]], str]


def port_picker(
    choices: list[tuple[str, str]],
    default: str,
    connect: Connect,
    heading: str = "",
    text: str = "",
    show: Show | None = None,
) -> Any:
    """A dropdown of `choices` with `default` selected, a Connect button and a status line.

    `connect(port, say)` runs on click and returns the final text ("Connected to ...");
    `say(text)` shows progress under the button. The click runs outside any cell, where a
    stream would land in JupyterLab's log console, so everything goes to the status line;
    on success the whole output is replaced by the text (what a saved notebook then shows).
    An MpkernelError from `connect` is shown in the status line and the picker stays.
    `text` is the plain-text version of the picker, for frontends that keep only text.
    """
    import ipywidgets as w

    values = [value for _, value in choices]
    dropdown = w.Dropdown(options=choices, value=default if default in values else values[0],
                          description="Port:", layout=w.Layout(width="max-content"))
    button = w.Button(description="Connect", button_style="primary", icon="plug")
    status = w.HTML(value="")
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line.rstrip("\n"))
        status.value = _html_lines(said)

    def clicked(_: Any) -> None:
        button.disabled = True
        said.clear()
        say(f"Connecting to {dropdown.value} ...")
        try:
            final = connect(dropdown.value, say)
        except MpkernelError as err:
            said.clear()
            say(err.user_text())
        else:
            said.clear()
            say(final)
            _replace(box.handle, final)
        finally:
            button.disabled = False

    button.on_click(clicked)
    parts = [w.HTML(value=_html_lines([heading]))] if heading else []
    box = w.VBox([*parts, w.HBox([dropdown, button]), status])
    # Exposed for tests and for callers that want to preselect or read the choice.
    box.dropdown, box.button, box.status = dropdown, button, status  # type: ignore[attr-defined]
    box.said = said  # type: ignore[attr-defined]
    box.handle = (show or _show_in_notebook)(Shown(text or heading, box))  # type: ignore[attr-defined]
    return box


def _html_lines(lines: list[str]) -> str:
    import html

    return "<br>".join(html.escape(line).replace("\n", "<br>") for line in lines)
