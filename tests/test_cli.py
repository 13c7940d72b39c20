"""The `mpkernel` command: install, the kernelspec in the wheel, sim."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import serial

ROOT = Path(__file__).resolve().parent.parent


def mpkernel(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mpkernel", *args], capture_output=True,
                          text=True, timeout=120, **kw)  # type: ignore[call-overload]


def test_install_registers_a_kernelspec_with_this_interpreter(tmp_path: Path) -> None:
    result = mpkernel("install", "--prefix", str(tmp_path))
    assert result.returncode == 0, result.stderr
    spec_dir = tmp_path / "share" / "jupyter" / "kernels" / "mpkernel"
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert spec["display_name"] == "MicroPython"
    assert spec["language"] == "python"
    assert spec["argv"][0] == sys.executable
    assert spec["argv"][1:] == ["-m", "mpkernel", "kernel", "-f", "{connection_file}"]
    assert "port" not in json.dumps(spec).lower()  # never a hard-coded port
    for logo in ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg"):
        assert (spec_dir / logo).stat().st_size > 100

    from jupyter_client.kernelspec import KernelSpecManager

    found = KernelSpecManager(kernel_dirs=[str(spec_dir.parent)]).get_kernel_spec("mpkernel")
    assert found.display_name == "MicroPython"


def test_the_wheel_ships_the_kernelspec(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = next(tmp_path.glob("mpkernel-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shared = [n for n in names if "/data/share/jupyter/kernels/mpkernel/" in n]
    assert {Path(n).name for n in shared} >= {"kernel.json", "logo-32x32.png", "logo-64x64.png"}
    assert any(n.endswith("mpkernel/kernel.py") for n in names)


def test_help_lists_the_commands() -> None:
    result = mpkernel("--help")
    for command in ("install", "sim", "ports", "doctor", "run", "flash"):
        assert command in result.stdout


@pytest.mark.device
def test_sim_prints_a_port_that_answers_and_stops_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mpkernel", "sim"], stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "The emulated micro:bit is on /dev/pts/" in first
        port = first.strip().split()[-1]
        with serial.Serial(port, 115200, timeout=3) as ser:
            ser.write(b"\r\x03")
            assert b">>>" in ser.read_until(b">>> ")
    finally:
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "Stopped the emulated board" in out
