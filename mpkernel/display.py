"""What the user sees: progress lines and the formatting shared by magics and the kernel.

IOPub messages themselves are sent by the kernel; this module only builds their content so it
can be unit-tested without a kernel.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from mpkernel import output_filters
from mpkernel.cells import RESULT_MARK

if TYPE_CHECKING:
    from mpkernel.board.board import Board
    from mpkernel.errors import MpkernelError


class Progress(Protocol):
    """A transfer's progress: `update(done)` as bytes move, `close(summary)` once at the end."""

    def update(self, done: int) -> None: ...

    def close(self, summary: str = "") -> None: ...


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


# An ETA is shown only once both hold. The first updates say little about the rate: they
# carry the transfer's fixed start-up cost (the board program starting, the first answer
# awaited), or a first chunk that went into a buffer before the board took it, so a rate
# extrapolated from them was several times off (6.3 s shown for a 0.9 s job). Half a second
# spans several of the protocol's round trips, so one slow or fast step no longer decides
# the rate; a tenth of the job done keeps a still-settling rate from being multiplied by a
# large remainder. A job shorter than half a second ends before an ETA would help anyone.
ETA_MIN_ELAPSED = 0.5
ETA_MIN_FRACTION = 0.1


def progress_text(label: str, done: int, total: int, elapsed: float) -> str:
    """One line: label, bytes done/total, percent, rate and ETA ("ETA --" while too little
    of the job has been seen to estimate it)."""
    pct = 100.0 * done / total if total else 100.0
    rate = done / elapsed if elapsed > 0 else 0.0
    if done >= total:
        eta = " 0.0 s"  # nothing left, whatever the rate
    elif elapsed >= ETA_MIN_ELAPSED and done >= ETA_MIN_FRACTION * total and rate > 0:
        eta = f"{(total - done) / rate:4.1f} s"
    else:
        eta = "--"
    return (
        f"{label}: {human_bytes(done)} / {human_bytes(total)} ({pct:3.0f}%)"
        f"  {human_bytes(rate)}/s  ETA {eta}"
    )


class TextProgress:
    """A single updating text line, redrawn with a carriage return at most `hz` times a second.

    Jupyter frontends and terminals both overwrite a stream line on `\\r`, so a long transfer
    shows one line rather than hundreds.
    """

    def __init__(
        self,
        label: str,
        total: int,
        write: Callable[[str], None],
        hz: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self._write = write
        self._clock = clock
        self._start = clock()
        self._min_gap = 1.0 / hz
        self._last_draw = -1e9
        self.done = 0

    def update(self, done: int) -> None:
        self.done = done
        now = self._clock()
        if now - self._last_draw >= self._min_gap or done >= self.total:
            self._last_draw = now
            self._write("\r" + progress_text(self.label, done, self.total, now - self._start))

    def close(self, summary: str = "") -> None:
        self._write("\r" + (summary or progress_text(
            self.label, self.done, self.total, self._clock() - self._start)) + "\n")


class Rich:
    """Text with an HTML rendition: frontends that render HTML show it, others (a terminal,
    a saved notebook read as text) show the text, which is also its `str()`."""

    def __init__(self, text: str, html: str) -> None:
        self.text = text
        self.html = html

    def _repr_mimebundle_(self, include: object = None, exclude: object = None
                          ) -> dict[str, str]:
        return {"text/plain": self.text, "text/html": self.html}

    def __str__(self) -> str:
        return self.text


class StreamCleaner:
    """Turn the board's CRLF text into Jupyter's LF text across chunk boundaries.

    A chunk ending in a bare CR is held back until the next chunk shows whether an LF follows,
    so a line is never shown, overwritten and shown again.
    """

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        text = self._held + text
        self._held = ""
        if text.endswith("\r"):
            text, self._held = text[:-1], "\r"
        return text.replace("\r\n", "\n")

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


class LineBuffer:
    """Complete lines go out at once; a partial line waits up to `hold` s for its end.

    The board's bytes arrive in arbitrary chunks; sent as they come, "hello, world" could
    reach the notebook as "he" + "llo, world", and a notebook file would keep both pieces.
    A prompt printed without a newline still shows within `hold` plus one read tick.
    """

    def __init__(
        self,
        send: Callable[[str], None],
        hold: float = 0.03,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._hold = hold
        self._clock = clock
        self._partial = ""
        self._since = 0.0

    def feed(self, text: str) -> None:
        if not text:
            return
        if not self._partial:
            self._since = self._clock()
        self._partial += text
        cut = max(self._partial.rfind("\n"), self._partial.rfind("\r")) + 1
        if cut:
            self._send(self._partial[:cut])
            self._partial = self._partial[cut:]
            self._since = self._clock()

    def idle(self) -> None:
        """Called while waiting for more output: let a partial line go once it is old."""
        if self._partial and self._clock() - self._since >= self._hold:
            self.flush()

    def flush(self) -> None:
        if self._partial:
            self._send(self._partial)
            self._partial = ""


class CellOutput:
    """A board program's output as a cell shows it: the one place for every way code runs
    as a cell (a board cell, `%time`/`%%time`, `%timeit`), so a change to how output is
    shown reaches all of them.

    The kernel's cell output filters see the text first (output_filters), then the board's
    CRLF becomes LF across chunks (StreamCleaner) and whole lines go out (LineBuffer). With
    `has_result`, everything from cells.RESULT_MARK on is a trailing expression's repr: kept
    as `result`, not shown. `show=False` (a silent execute) shows nothing but still runs the
    filters, which may have to answer the board.

    Wrap `board.exec(code, on_output=out.feed, on_idle=out.idle)` in `with CellOutput(...)
    as out:`; leaving it closes the filters and sends the text still held back, however the
    program ended, so output printed before an error is shown before that error.
    """

    def __init__(
        self,
        write: Callable[[str], None],
        board: Board,
        filters: dict[str, output_filters.FilterFactory],
        *,
        has_result: bool,
        show: bool = True,
    ) -> None:
        self._cleaner = StreamCleaner()
        self._lines = LineBuffer(write)
        self._has_result = has_result
        self._show = show
        self._result: list[str] = []
        self._filters = output_filters.ActiveFilters(filters, board)
        self.feed, self.idle = self._filters.wrap(self._output, self._lines.idle)

    def _output(self, text: str) -> None:
        if self._result:
            self._result.append(text)
            return
        mark = text.find(RESULT_MARK) if self._has_result else -1
        if mark >= 0:
            self._result.append(text[mark + 1 :])
            text = text[:mark]
        if self._show:
            self._lines.feed(self._cleaner.feed(text))

    @property
    def result(self) -> str | None:
        """The text the board printed after RESULT_MARK, or None if it printed no mark."""
        return "".join(self._result) if self._result else None

    def close(self) -> None:
        self._filters.close()
        if self._show:
            self._lines.feed(self._cleaner.flush())
            self._lines.flush()

    def __enter__(self) -> CellOutput:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def error_content(ename: str, evalue: str, traceback: list[str]) -> dict[str, object]:
    """The content of a Jupyter `error` message (and of an error execute_reply)."""
    return {"ename": ename, "evalue": evalue, "traceback": traceback}


def user_error_content(err: Exception) -> dict[str, object]:
    """An MpkernelError (or any other) as an error message a person can read."""
    return error_parts(err)[0]


def error_parts(err: Exception) -> tuple[dict[str, object], list[str]]:
    """(the error message's content, the kernel's own notes to show after it, not in red).

    The error (red, a traceback) says what went wrong; what to do about it is a note, one
    stdout line after it, for board and kernel errors alike. A board's traceback ends at its
    exception line; lines the kernel added after it (such as "Interrupted: the program
    stopped; the board's variables are kept.") are notes. The kernel's own errors
    (MpkernelError) hold what happened and what the board printed; their hint is the note.
    """
    from mpkernel.errors import DeviceError, MpkernelError

    if isinstance(err, DeviceError):
        lines, notes = split_notes(err.ename, err.evalue, err.traceback)
        return error_content(err.ename, err.evalue, lines), notes
    if isinstance(err, MpkernelError):
        return error_content(type(err).__name__, str(err), error_lines(err)), hint_lines(err)
    return error_content(type(err).__name__, str(err), [f"{type(err).__name__}: {err}"]), []


def split_notes(ename: str, evalue: str, lines: list[str]) -> tuple[list[str], list[str]]:
    """Cut a board traceback after its exception line (`ename: evalue`)."""
    said = {f"{ename}: {evalue}".strip(), f"{ename}:", ename}
    if evalue:
        said.add(evalue)  # parse_traceback's ("Error", last line) for an odd last line
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].strip() in said:
            return lines[: index + 1], lines[index + 1 :]
    return lines, []


_STDIN_FRAME = re.compile(
    r'^(?P<indent>\s*)File "<stdin>", line (?P<line>\d+)(?:, in (?P<scope>\S+))?\s*$'
)
CELL_COLOUR = "\x1b[0;32m"
LINE_COLOUR = "\x1b[0;36m"
RESET_COLOUR = "\x1b[0m"


@dataclass(frozen=True)
class CellPlace:
    """Where code run on the board stands in the notebook: cell In[count], its first line
    being the cell's line `line` (1 for a cell's code; for timed code the line below
    `%%time`, or the line of `%time` itself)."""

    count: int
    line: int = 1


def cell_traceback(lines: list[str], code: str, count: int, shift: int = 0) -> list[str]:
    """Show the frames of a cell's own program as IPython does: `Cell In[count], line M`
    and the offending line of the cell; other frames (board modules) stay as they are.

    `code` is the program's code as typed, laid out as the board numbers its lines: for a
    cell, with any magic lines the kernel took out blanked so its line numbers are the cell's
    (cells.parse_cell), and before the trailing-expression rewrite (which keeps every line
    where it was). The board's line B is the cell's line B + `shift` (timed code runs below a
    line that starts the clock, and below the cell's own first lines). A `<stdin>` frame
    inside a function is this cell's only if this cell defines that function there: an
    earlier cell's function is `<stdin>` too, with that cell's line numbers, and stays as
    the board said it.
    """
    from mpkernel import cells

    source = code.replace("\r\n", "\n").split("\n")
    shown: list[str] = []
    for text in lines:
        m = _STDIN_FRAME.match(text)
        number = int(m["line"]) if m else 0
        scope = m["scope"] if m else None
        if (
            m is None
            or not 1 <= number <= len(source)
            or not source[number - 1].strip()
            or (scope not in (None, "<module>") and not cells.defines_scope(code, scope, number))
        ):
            shown.append(text)
            continue
        where = f"{CELL_COLOUR}Cell In[{count}], line {number + shift}{RESET_COLOUR}"
        if scope not in (None, "<module>"):
            where += f", in {scope}"
        shown.append(m["indent"] + where)
        shown.append(f"{m['indent']}    {LINE_COLOUR}{source[number - 1].strip()}{RESET_COLOUR}")
    return shown


def error_lines(err: MpkernelError) -> list[str]:
    """The error part of an MpkernelError: what happened, and the boot output indented."""
    lines = [str(err)]
    boot = getattr(err, "boot_output", "")
    if boot:
        lines.append("What the board printed as it booted:")
        lines.extend("    " + line for line in boot.replace("\r\n", "\n").split("\n"))
    return lines


def hint_lines(err: MpkernelError) -> list[str]:
    """An MpkernelError's hint (what to do) as the lines shown after its error; none without."""
    return err.hint.replace("\r\n", "\n").split("\n") if err.hint else []


def report_lines(err: MpkernelError) -> list[str]:
    """An MpkernelError as lines where there is one place to show it (a status note):
    what happened, the boot output indented, the way out."""
    return error_lines(err) + ([err.hint] if err.hint else [])
