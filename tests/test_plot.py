"""%%plot: a live plot of what a board loop prints, updated in place, data kept for host cells."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from host_kernel import PORTS, Notebook, board_name_fixture, notebook  # noqa: F401

from mpkernel.host.plot import LivePlot, parse_line

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def nb(sim: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Notebook]:
    with notebook(port=PORTS[sim], tmp_path=tmp_path_factory.mktemp("plot")) as running:
        yield running


LOOP = """%%plot --every 0.2
import time
i = 0
while True:
    i += 1
    print(i, i * i % 7)
    if i % 5 == 0:
        print('tick', i)
    time.sleep_ms(40)
"""


@pytest.mark.device
@pytest.mark.boards("microbit", "qemu")
def test_interrupted_loop_plots_in_place_and_keeps_data_and_text(nb: Notebook) -> None:
    def enough(messages: list[dict]) -> bool:
        return sum(m["msg_type"] == "update_display_data" for m in messages) >= 3

    cell = nb.run(LOOP, interrupt_when=enough, timeout=40)
    assert cell.error["ename"] == "KeyboardInterrupt", cell.messages
    shown = cell.of_type("display_data")
    updates = cell.of_type("update_display_data")
    # One figure, replaced in place: a single display_data, then updates with its id.
    assert len(shown) == 1
    display_id = shown[0]["content"]["transient"]["display_id"]
    assert len(updates) >= 3
    assert {u["content"]["transient"]["display_id"] for u in updates} == {display_id}
    last = updates[-1]["content"]["data"]
    assert base64.b64decode(last["image/png"]).startswith(PNG)
    # Text lines appear as text; numbers do not.
    text = cell.stdout.splitlines()
    ticks = [line for line in text if line.startswith("tick")]
    assert ticks[:2] == ["tick 5", "tick 10"]
    assert not any(line.split()[0].isdigit() for line in text)
    # The plot's summary line; the interrupt's own note ("Interrupted: ...") follows the error
    # as a line of its own since tracebacks show only the board's frames.
    summaries = [line for line in text if line.startswith("plot_data:")]
    assert len(summaries) == 1, text
    summary = summaries[0]
    rows = int(summary.split()[1])
    assert summary == f"plot_data: {rows} rows, 2 series (y1, y2), for %%host cells."
    assert last["text/plain"] == f"<live plot: {rows} rows, 2 series (y1, y2)>"
    # Host cells get every row the board printed before the interrupt, in order.
    host = nb.run("%%host\nprint(len(plot_data), all(r == {'y1': k + 1.0, 'y2': (k + 1) ** 2 % 7}"
                  " for k, r in enumerate(plot_data)))")
    assert host.stdout == f"{rows} True\n"
    assert rows >= 10
    # Every tick before the last row is there; the last row's own tick may have been cut.
    certain = [f"tick {k}" for k in range(5, rows, 5)]
    assert ticks[: len(certain)] == certain and len(ticks) - len(certain) <= 1


@pytest.mark.device
@pytest.mark.boards("microbit", "qemu")
def test_named_series_from_a_finished_cell(nb: Notebook) -> None:
    cell = nb.run("%%plot --window 3\nfor k in range(6):\n"
                  "    print('temp = %d, hum=%d' % (20 + k, 40 - k))\nprint('done')")
    assert cell.ok, (cell.error, cell.stdout)
    assert len(cell.of_type("display_data")) == 1
    assert cell.stdout == "done\nplot_data: 6 rows, 2 series (temp, hum), for %%host cells.\n"
    host = nb.run("%%host\nprint(plot_data[5])")
    assert host.stdout == "{'temp': 25.0, 'hum': 35.0}\n"


@pytest.mark.device
@pytest.mark.boards("microbit")
def test_bad_options_are_refused_and_nothing_runs(nb: Notebook) -> None:
    cell = nb.run("%%plot --every 0\nprint(1)")
    assert cell.error["evalue"].startswith("--every 0.0 would redraw without pause")
    # Only the hint follows the error: the board ran nothing, so printed nothing.
    assert cell.stdout == "Use --every 0.05 or more (default 0.5 s).\n"
    assert nb.run("print(2)").stdout == "2\n"


def test_parse_line() -> None:
    assert parse_line("1, 2.5,-3") == {"y1": 1.0, "y2": 2.5, "y3": -3.0}
    assert parse_line("1 2") == {"y1": 1.0, "y2": 2.0}
    assert parse_line("t=1 temp = 21.5") == {"t": 1.0, "temp": 21.5}
    assert parse_line("temp: 21") is None
    assert parse_line("hello 1") is None
    assert parse_line("") is None


def test_window_keeps_newest_points_and_throttle_limits_redraws() -> None:
    now = [0.0]
    published: list[tuple[str, bool]] = []
    live = LivePlot(lambda bundle, first: published.append((bundle["text/plain"], first)),
                    window=3, every=1.0, clock=lambda: now[0])
    for k in range(10):
        live.add({"y1": float(k)})
        now[0] += 0.25  # four rows a second, one redraw a second
    live.finish()
    assert [first for _, first in published] == [True, False, False, False]
    assert published[-1][0] == "<live plot: 10 rows, 1 series (y1)>"
    assert [p[1] for p in live._series["y1"]] == [7.0, 8.0, 9.0]
    assert len(live.rows) == 10


@pytest.mark.device
def test_headless_run_keeps_one_final_image(tmp_path: Path) -> None:
    """`mpkernel run` (nbclient) applies the updates to the one output: the saved notebook
    holds a single image of the final data, as nbconvert or a console user would see it."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%%plot --every 0.05\nimport time\nfor k in range(40):\n"
                                  "    print(k, k % 4)\n    time.sleep_ms(10)"),
        nbformat.v4.new_code_cell("%%host\nprint(len(plot_data), plot_data[-1])"),
    ]
    path, out = tmp_path / "plot.ipynb", tmp_path / "plot.out.ipynb"
    nbformat.write(nb, path)
    done = subprocess.run([sys.executable, "-m", "mpkernel", "run", str(path), "--port", "sim",
                           "--output", str(out)], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr[-2000:]
    cells = json.loads(out.read_text())["cells"]
    images = [o for o in cells[0]["outputs"] if o["output_type"] == "display_data"]
    assert len(images) == 1
    assert "".join(images[0]["data"]["text/plain"]) == "<live plot: 40 rows, 2 series (y1, y2)>"
    assert base64.b64decode(images[0]["data"]["image/png"]).startswith(PNG)
    assert "".join(cells[1]["outputs"][0]["text"]) == "40 {'y1': 39.0, 'y2': 3.0}\n"
