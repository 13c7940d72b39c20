"""What the user sees: CRLF handling across chunks, progress lines, error content."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mpkernel import display, output_filters
from mpkernel.errors import BoardReset, DeviceError, MpkernelError


def test_crlf_split_across_chunks_becomes_one_newline() -> None:
    cleaner = display.StreamCleaner()
    out = cleaner.feed("line 1\r") + cleaner.feed("\nline 2\r\n") + cleaner.flush()
    assert out == "line 1\nline 2\n"


def test_a_bare_carriage_return_survives_for_progress_redraws() -> None:
    cleaner = display.StreamCleaner()
    assert cleaner.feed("50%\r") + cleaner.feed("60%") == "50%\r60%"


def test_text_progress_is_one_line_redrawn_and_a_summary() -> None:
    written: list[str] = []
    now = [0.0]
    bar = display.TextProgress("Uploading main.py", 10_000, written.append, hz=5,
                               clock=lambda: now[0])
    for done in range(0, 10_001, 100):  # 101 updates within 1 s of simulated time
        now[0] = done / 10_000
        bar.update(done)
    bar.close("Uploaded main.py: 10000 bytes in 1.0 s, verified")
    redraws = [w for w in written if not w.endswith("\n")]
    assert len(redraws) <= 8  # throttled, not one line per update
    assert all(w.startswith("\r") for w in written)
    assert "ETA" in redraws[1] and "/s" in redraws[1]
    assert written[-1] == "\rUploaded main.py: 10000 bytes in 1.0 s, verified\n"


def test_progress_text_figures() -> None:
    text = display.progress_text("Up", 5120, 10240, 2.0)
    assert "5.0 KB / 10.0 KB" in text and "50%" in text and "2.5 KB/s" in text
    assert "ETA  2.0 s" in text


def _job_of_0_9_s(update: Callable[[int], None], now: list[float]) -> None:
    """10,000 bytes in 0.9 s: a slow start (80 bytes in the first 0.05 s, the rate that once
    gave an ETA of 6.3 s), then a steady rate to the end."""
    now[0] = 0.05
    update(80)
    for step in range(1, 19):
        now[0] = 0.05 + step * 0.0472
        update(80 + step * (10_000 - 80) // 18)


def _eta(text: str) -> str:
    return text.rsplit("ETA ", 1)[1].strip()


def test_text_progress_shows_no_eta_until_it_means_something() -> None:
    now = [0.0]
    drawn: list[tuple[float, str]] = []  # each line drawn, with the time it was drawn
    bar = display.TextProgress("Uploading", 10_000, lambda text: drawn.append((now[0], text)),
                               hz=100, clock=lambda: now[0])
    _job_of_0_9_s(bar.update, now)
    early = [_eta(text) for at, text in drawn if at < display.ETA_MIN_ELAPSED]
    late = [(at, _eta(text)) for at, text in drawn if at >= display.ETA_MIN_ELAPSED]
    assert early and set(early) == {"--"}, drawn  # not 6.3 s for a job that takes 0.9 s
    assert late and all(eta.endswith(" s") for _, eta in late), drawn
    for at, eta in late:  # from then on, within 0.2 s of the time really left
        assert abs(float(eta[:-2]) - (0.9 - at)) <= 0.2, (at, eta)
    assert _eta(drawn[-1][1]) == "0.0 s"


def test_progress_text_needs_half_a_second_and_a_tenth_of_the_job() -> None:
    assert _eta(display.progress_text("Up", 500, 10_000, 2.0)) == "--"  # 5% after 2 s
    assert _eta(display.progress_text("Up", 5_000, 10_000, 0.4)) == "--"  # 50% after 0.4 s
    assert _eta(display.progress_text("Up", 1_000, 10_000, 0.5)) == "4.5 s"
    assert _eta(display.progress_text("Up", 10_000, 10_000, 0.1)) == "0.0 s"  # all done
    assert _eta(display.progress_text("Up", 0, 0, 0.0)) == "0.0 s"  # an empty file


def test_widget_progress_shows_no_eta_until_it_means_something() -> None:
    from mpkernel.widgets import WidgetProgress

    now = [0.0]
    bar = WidgetProgress("Uploading", 10_000, show=lambda obj: None, hz=100,
                         clock=lambda: now[0])
    assert _eta(bar.text.value) == "--"
    seen: list[tuple[float, str]] = []

    def update(done: int) -> None:
        bar.update(done)
        seen.append((now[0], _eta(bar.text.value)))

    _job_of_0_9_s(update, now)
    assert {eta for at, eta in seen if at < display.ETA_MIN_ELAPSED} == {"--"}, seen
    assert all(eta != "--" for at, eta in seen if at >= display.ETA_MIN_ELAPSED), seen


def test_device_error_keeps_board_traceback() -> None:
    err = DeviceError("ValueError", "bad", ["Traceback", "  line 1", "ValueError: bad"])
    content = display.user_error_content(err)
    assert content["ename"] == "ValueError" and content["traceback"][-1] == "ValueError: bad"


def test_kernel_errors_hold_message_and_boot_output_and_the_hint_is_a_note() -> None:
    err = BoardReset("The board reset while the cell ran; its variables are gone.",
                     "The next cell runs normally.", boot_output="soft reboot\r\n>>> ")
    content, notes = display.error_parts(err)
    tb = content["traceback"]
    assert content["ename"] == "BoardReset"
    assert content["evalue"] == "The board reset while the cell ran; its variables are gone."
    assert tb[0].startswith("The board reset")
    assert tb[1:] == ["What the board printed as it booted:", "    soft reboot", "    >>> "]
    # What to do is not part of the red error: it follows as a line of its own.
    assert notes == ["The next cell runs normally."]
    assert not any("next cell" in line for line in tb)
    assert display.user_error_content(err) == content
    # Where there is one place for all of it (a status note, a host cell), all of it.
    assert display.report_lines(err) == tb + ["The next cell runs normally."]


def test_a_hint_of_several_lines_is_several_notes_and_no_hint_no_note() -> None:
    err = MpkernelError("Port /dev/ttyX does not exist.", "Ports that exist:\n  /dev/ttyACM0")
    content, notes = display.error_parts(err)
    assert content["traceback"] == ["Port /dev/ttyX does not exist."]
    assert notes == ["Ports that exist:", "  /dev/ttyACM0"]
    content, notes = display.error_parts(MpkernelError("Port busy."))
    assert content["traceback"] == ["Port busy."] and notes == []
    content, notes = display.error_parts(KeyError("k"))
    assert content["traceback"] == ["KeyError: 'k'"] and notes == []


def test_line_buffer_sends_whole_lines_at_once() -> None:
    sent: list[str] = []
    lines = display.LineBuffer(sent.append, clock=lambda: 0.0)
    lines.feed("he")
    lines.feed("llo, world\nsecond li")
    assert sent == ["hello, world\n"]
    lines.flush()
    assert sent == ["hello, world\n", "second li"]


def test_line_buffer_lets_a_partial_line_go_after_a_short_hold() -> None:
    sent: list[str] = []
    now = [0.0]
    lines = display.LineBuffer(sent.append, hold=0.03, clock=lambda: now[0])
    lines.feed("Enter a number: ")
    now[0] = 0.01
    lines.idle()
    assert sent == []  # still waiting for the rest of the line
    now[0] = 0.04
    lines.idle()
    assert sent == ["Enter a number: "]


def test_line_buffer_treats_carriage_return_as_a_line_end() -> None:
    sent: list[str] = []
    lines = display.LineBuffer(sent.append, clock=lambda: 0.0)
    lines.feed("10%\r20%\r")
    assert sent == ["10%\r20%\r"]


class _Upper:
    """A cell output filter that shouts, and holds back a trailing '~' until it closes."""

    def __init__(self) -> None:
        self.held = ""
        self.idles = 0

    def feed(self, text: str) -> str:
        text = self.held + text
        self.held = "~" if text.endswith("~") else ""
        return (text[:-1] if self.held else text).upper()

    def idle(self) -> None:
        self.idles += 1

    def close(self) -> str:
        return self.held


@pytest.fixture
def no_default_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the filters a test names: %mqtt, loaded by an earlier test in this process,
    registers the bridge's relay for every board cell (output_filters.DEFAULTS)."""
    monkeypatch.setattr(output_filters, "DEFAULTS", {})


@pytest.mark.usefixtures("no_default_filters")
def test_cell_output_streams_lines_keeps_the_result_and_runs_filters() -> None:
    sent: list[str] = []
    made: list[_Upper] = []

    def make(board: object) -> _Upper:
        made.append(_Upper())
        return made[-1]

    with display.CellOutput(sent.append, object(), {"shout": make}, has_result=True) as out:
        out.feed("hel")
        out.feed("lo\r")
        out.feed("\nwait~")
        out.idle()
        assert sent == ["HELLO\n"]  # CRLF split across chunks is one newline, whole lines
    # What the filter held back, and the partial line, are shown when the program ends.
    assert sent == ["HELLO\n", "WAIT~"] and made[0].idles == 1 and out.result is None
    with display.CellOutput(sent.append, object(), {"shout": make}, has_result=True) as out:
        out.feed("x = 6 * 7\r\n\x1e4")
        out.feed("2")
    assert sent[2:] == ["X = 6 * 7\n"] and out.result == "42"


@pytest.mark.usefixtures("no_default_filters")
def test_cell_output_without_a_result_shows_the_mark_and_silent_shows_nothing() -> None:
    sent: list[str] = []
    with display.CellOutput(sent.append, object(), {}, has_result=False) as out:
        out.feed("a\x1eb\r\n")
    assert sent == ["a\x1eb\n"] and out.result is None
    with display.CellOutput(sent.append, object(), {}, has_result=True, show=False) as out:
        out.feed("printed\r\n\x1e'value'")
    assert sent == ["a\x1eb\n"] and out.result == "'value'"


@pytest.mark.usefixtures("no_default_filters")
def test_cell_output_shows_what_came_before_an_error() -> None:
    sent: list[str] = []
    try:
        with display.CellOutput(sent.append, object(), {}, has_result=True) as out:
            out.feed("partial line")
            raise RuntimeError("the board failed")
    except RuntimeError:
        pass
    assert sent == ["partial line"]
