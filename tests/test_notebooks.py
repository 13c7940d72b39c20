"""The notebooks in notebooks/ run headless against the emulated board, as a user's would."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.device

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb")
                   if not p.name.endswith(".executed.ipynb"))  # `mpkernel run` output


# Both emulated boards: the micro:bit (MicroPython 1.9.2) and the modern one (1.25), each
# on the port a user would type. The modern board uses the per-user flash file, as a user's
# `mpkernel run --port sim:qemu` does.
PORTS = ["sim", "sim:qemu"]


def run_notebook(path: Path, out: Path, *extra: str, port: str = "sim"
                 ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mpkernel", "run", str(path), "--port", port,
         "--output", str(out), *extra],
        capture_output=True, text=True, timeout=600,
    )


def outputs_text(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            parts.append(output["text"])
        elif output["output_type"] in ("execute_result", "display_data"):
            parts.append(output["data"].get("text/plain", ""))
        elif output["output_type"] == "error":
            parts.append("\n".join(output["traceback"]))
    return "".join(parts)


@dataclass
class Run:
    result: subprocess.CompletedProcess[str]
    cells: list  # the executed notebook's code cells

    def text(self, source_start: str) -> str:
        """The outputs of the one code cell whose source starts with `source_start`."""
        found = [c for c in self.cells if c.source.startswith(source_start)]
        assert len(found) == 1, (source_start, [c.source[:30] for c in found])
        return outputs_text(found[0])


_RUNS: dict[tuple[str, str], Run] = {}


def executed(path: Path, port: str) -> Run:
    """`mpkernel run` of a notebook on a board, once per test session: the general test and
    the lesson's own checks read the same run (each run of a lesson costs tens of seconds)."""
    key = (path.name, port)
    if key not in _RUNS:
        out = Path(tempfile.mkdtemp(prefix="mpk-nb-")) / path.name
        result = run_notebook(path, out, port=port)
        cells = ([c for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"]
                 if out.exists() else [])
        _RUNS[key] = Run(result, cells)
    return _RUNS[key]


@pytest.mark.parametrize("port", PORTS)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_on_the_emulated_board(path: Path, port: str) -> None:
    run = executed(path, port)
    assert run.result.returncode == 0, run.result.stdout[-3000:] + run.result.stderr[-3000:]
    hardware = [c for c in run.cells if "needs-hardware" in c.metadata.get("tags", [])]
    ran = [c for c in run.cells if c not in hardware]
    assert all(c.get("execution_count") for c in ran), "every code cell ran"
    assert "Connected to" in outputs_text(ran[0])
    # A cell that needs real hardware is skipped, visibly: in the notebook and on the screen.
    for cell in hardware:
        assert cell.get("execution_count") is None
        assert outputs_text(cell).startswith("[mpkernel run] Skipped: this cell needs real "
                                             "hardware (tagged needs-hardware)")
    assert run.result.stdout.count("[mpkernel run] Skipped:") == len(hardware)


@pytest.mark.parametrize("port", PORTS)
def test_getting_started_shows_what_a_learner_expects(port: str) -> None:
    run = executed(ROOT / "notebooks" / "01-getting-started.ipynb", port)
    assert run.result.returncode == 0, run.result.stderr[-3000:]
    texts = [outputs_text(c) for c in run.cells]
    joined = "\n".join(texts)
    # The lesson really ran on the board asked for (sys.platform is its own cell).
    assert texts[2].strip() == repr("qemu" if port == "sim:qemu" else "microbit")
    assert "Hello from MicroPython!" in joined
    assert "42" in texts[4]  # answer * 2 as Out[n]
    assert [line for line in joined.split("\n") if line.startswith("tick")] == [
        f"tick {i}" for i in range(5)
    ]
    assert "IndexError: list index out of range" in joined
    assert "[1, 2, 3]" in joined  # the board was fine after the error
    # The command echoes each cell's output as it goes.
    assert "tick 4" in run.result.stdout and "Wrote the executed notebook" in run.result.stdout


@pytest.mark.parametrize("port", PORTS)
def test_03_sensors_lesson_plots_and_analyses_the_signal(port: str) -> None:
    run = executed(ROOT / "notebooks" / "03-sensors-and-live-plots.ipynb", port)
    assert run.result.returncode == 0, run.result.stderr[-3000:]
    # The live plot kept all 40 readings of one series, and its final figure as an image.
    plot_cell = next(c for c in run.cells if c.source.startswith("%%plot"))
    assert "plot_data: 40 rows, 1 series (wave), for %%host cells." in outputs_text(plot_cell)
    assert any("image/png" in o.get("data", {}) for o in plot_cell.outputs)
    # The host's analysis matches sin(i * 0.3) for i in 0..39, as printed with 3 decimals.
    wave = [round(math.sin(i * 0.3), 3) for i in range(40)]
    analysis = run.text('%%host\nwave = [row["wave"]')
    assert analysis.split("\n")[:3] == [
        "40 readings",
        f"mean {sum(wave) / 40:.3f}, min {min(wave):.3f}, max {max(wave):.3f}",
        f"{sum(1 for w in wave if w > 0.5)} readings above 0.5",
    ]
    second = next(c for c in run.cells if "running mean" in c.source)
    assert any("image/png" in o.get("data", {}) for o in second.outputs)
    # board.eval brought a list back from the board, equal to the first plotted readings.
    fresh = run.text("%%host\nfresh = board.eval")
    assert "fresh from the board: [0.0, 0.296, 0.565, 0.783, 0.932]" in fresh
    assert "same as plotted: True" in fresh


@pytest.mark.parametrize("port", PORTS)
def test_04_mqtt_lesson_publishes_readings_and_obeys_a_command(port: str) -> None:
    run = executed(ROOT / "notebooks" / "04-mqtt-tutorial.ipynb", port)
    assert run.result.returncode == 0, run.result.stderr[-3000:]
    # Wi-Fi and %mip need a real ESP32 (and the internet): skipped, visibly.
    for source in ("import network", "%mip install umqtt.simple"):
        assert run.text(source).startswith("[mpkernel run] Skipped:")
    # The local broker: loopback only, the credentials on the board and never printed.
    broker = run.text("%mqtt broker")
    assert re.search(r"MQTT broker \(mosquitto [\d.]+\) on 127\.0\.0\.1 port \d+; user and "
                     r"password in secrets\.py on the board; the notebook is connected\.", broker)
    assert "MQTT_PASSWORD" not in broker
    assert "`from umqtt.simple import MQTTClient` works" in run.text("%mqtt bridge")
    assert run.text("%mqtt watch demo/#").startswith("MQTT demo/# (watching;")
    assert run.text("from umqtt.simple import MQTTClient").strip() == "connected to the broker"
    # Five readings, then the command from the notebook reaches the board's callback.
    assert run.text("for i in range(5):").split() == [
        w for i in range(5) for w in ("published", str(20 + i))]
    assert run.text("%mqtt pub demo/cmd on").strip() == "Published 2 bytes to demo/cmd (QoS 0)."
    assert run.text("for _ in range(10):").strip().split("\n") == ["command: on", "led is on"]
    # A late subscriber gets the retained last reading and the board's reported state.
    sub = run.text("%mqtt sub demo/# --count 2")
    assert "demo/temp: 24\n" in sub and "demo/status: led on\n" in sub
    assert "Stopped (--count 2): 2 messages on demo/#" in sub
    assert run.text("c.disconnect()").strip() == "disconnected"
    assert run.text("%mqtt stop --broker").startswith("Stopped 1 watch, the connection to "
                                                      "127.0.0.1:")


@pytest.mark.parametrize("port", PORTS)
def test_when_things_go_wrong_shows_each_rescue(port: str) -> None:
    run = executed(ROOT / "notebooks" / "05-when-things-go-wrong.ipynb", port)
    assert run.result.returncode == 0, run.result.stderr[-3000:]
    # 1. The busy main.py is stopped at the reset (the moment of connecting), and named.
    reset = run.text("%reset --hard")
    assert reset.startswith("Hard reset (the emulator's reset line) done: the board rebooted")
    assert "Stopped main.py at line 6, which was running; its last output: main.py is busy, " \
           "round " in reset
    assert run.text('print("The prompt is ours again').strip() == \
        "The prompt is ours again: 6 * 7 = 42"
    assert "main.py" in run.text("%ls")
    # 2. The program that swallows Ctrl-C: stopped by the run's stop button, it is named,
    # the cell fails with the way out, and %rescue brings the board back.
    assert "[mpkernel run] pressing stop after 4 s, as the cell asks" in run.result.stdout
    swallow = run.text("import main")
    assert swallow.count("sending a reading") >= 5
    assert "The program on the board ignores Ctrl-C: it keeps running and printing" in swallow
    assert "Run %rescue" in swallow and "re-flash" not in swallow
    rescued = run.text("%rescue")
    # Stopped in its start-up lines (`import time`, the sleep), before any `try`.
    stopped = re.search(r"The board answers again\. Stopped main\.py at line (\d+), which was "
                        r"running", rescued)
    assert stopped is not None and int(stopped.group(1)) <= 2, rescued
    assert "main.py is unchanged: it runs again at the next reset." in rescued
    assert "main.py" not in run.text("%rm main.py").split("Removed main.py.")[1]
    assert run.text('print("Back to normal:"').strip() == "Back to normal: 45"
    # 4. %doctor on the kernel's own board: fine, and the kernel reconnects.
    doctor = run.text("%doctor")
    assert "Verdict: MicroPython is fine: it answered at the prompt." in doctor
    assert "Reconnected on /dev/pts/" in doctor
    assert run.text('print("Still connected').strip() == "Still connected after the check: 1024"


def test_flashing_lesson_skips_hardware_cells_and_explains_flash() -> None:
    run = executed(ROOT / "notebooks" / "06-flashing-an-esp32.ipynb", "sim")
    assert run.result.returncode == 0, run.result.stderr[-3000:]
    assert run.text("import sys\n").startswith("Connected to")
    for source in ("%doctor /dev/ttyUSB0", "%flash ESP32_GENERIC", "import sys, machine"):
        assert run.text(source).startswith("[mpkernel run] Skipped:")
    # The options the lesson refers to, with the examples' table kept line by line.
    help_text = run.text("%help flash")
    assert help_text.startswith("usage: %flash")
    assert "\n%flash ESP32_GENERIC_S3@1.24.1       a given release" in help_text
    assert "--erase" in help_text and "--baud BAUD" in help_text


def test_a_failing_cell_fails_the_command(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("1/0"),
        nbformat.v4.new_code_cell("print('never')"),
    ], metadata={"kernelspec": {"name": "mpkernel", "display_name": "MicroPython"}})
    path = tmp_path / "bad.ipynb"
    nbformat.write(nb, path)
    result = run_notebook(path, tmp_path / "bad.out.ipynb")
    assert result.returncode == 1
    assert "ZeroDivisionError" in result.stderr
    assert "never" not in result.stdout
    assert (tmp_path / "bad.out.ipynb").exists()  # the partial run is kept for reading
