"""The notebooks in notebooks/ run headless against the emulated board, as a user's would."""

from __future__ import annotations

import subprocess
import sys
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


@pytest.mark.parametrize("port", PORTS)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_on_the_emulated_board(path: Path, port: str, tmp_path: Path) -> None:
    out = tmp_path / path.name
    result = run_notebook(path, out, port=port)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    executed = nbformat.read(out, as_version=4)
    code_cells = [c for c in executed.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code_cells), "every code cell ran"
    assert "Connected to" in outputs_text(code_cells[0])


@pytest.mark.parametrize("port", PORTS)
def test_getting_started_shows_what_a_learner_expects(port: str, tmp_path: Path) -> None:
    path = ROOT / "notebooks" / "01-getting-started.ipynb"
    out = tmp_path / "gs.ipynb"
    result = run_notebook(path, out, port=port)
    assert result.returncode == 0, result.stderr[-3000:]
    texts = [outputs_text(c) for c in nbformat.read(out, as_version=4).cells
             if c.cell_type == "code"]
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
    assert "tick 4" in result.stdout and "Wrote the executed notebook" in result.stdout


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
