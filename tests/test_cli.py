"""The `mpkernel` command: install, the kernelspec in the wheel, sim."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import serial

from mpkernel import platform_support

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
    # Started as from a terminal, where Ctrl-C reaches the foreground command. A test run
    # started in the background by a non-interactive shell has SIGINT ignored, and a child
    # inherits that: Python then leaves SIGINT ignored and no Ctrl-C can stop it (seen when
    # .ci/run was launched with `(cmd &)`; `mpkernel sim` in a terminal is not affected).
    proc = subprocess.Popen(
        [sys.executable, "-m", "mpkernel", "sim"], stdout=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
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


# --- the hard-reset hint and `mpkernel sim --reset` (issue 12 item 3) -----------------------


def test_the_reset_hint_fits_each_kind_of_monitor() -> None:
    from mpkernel.cli import reset_hint

    unix = reset_hint("unix:/tmp/mpkernel-sim-x/monitor.sock")
    assert unix.startswith("mpkernel sim --reset unix:/tmp/mpkernel-sim-x/monitor.sock")
    assert "echo system_reset | socat - UNIX-CONNECT:/tmp/mpkernel-sim-x/monitor.sock" in unix
    tcp = reset_hint("tcp:127.0.0.1:40123")
    assert tcp == "mpkernel sim --reset tcp:127.0.0.1:40123"  # no socat on Windows


class _FakeSim:
    label = "the emulated micro:bit"
    pty_path = "socket://127.0.0.1:40122"
    monitor_address = "tcp:127.0.0.1:40123"
    firmware_source = "uflash 2.0.0's micro:bit V1 runtime 1.0.1 (C:\\cache\\v1.hex)"
    running = False

    def start(self) -> _FakeSim:
        return self

    def stop(self) -> None:
        pass


def test_sim_prints_the_hint_for_a_tcp_monitor(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from mpkernel import cli, sim

    monkeypatch.setattr(sim, "simulator_for", lambda name: _FakeSim())
    assert cli.main(["sim"]) == 0
    out = capsys.readouterr().out
    assert "The emulated micro:bit is on socket://127.0.0.1:40122" in out
    assert "Hard reset: mpkernel sim --reset tcp:127.0.0.1:40123\n" in out
    assert "socat" not in out and "UNIX-CONNECT" not in out
    assert "Firmware: uflash 2.0.0's micro:bit V1 runtime 1.0.1" in out


def test_reset_of_a_board_that_is_gone_says_so(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    from mpkernel import cli

    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there now
    assert cli.main(["sim", "--reset", f"tcp:127.0.0.1:{port}"]) == 1
    assert cli.main(["sim", "--reset", f"unix:{tmp_path / 'monitor.sock'}"]) == 1
    err = capsys.readouterr().err
    assert f"no emulated board answers at tcp:127.0.0.1:{port}" in err
    assert "still running?" in err
    assert cli.main(["sim", "--reset", "/dev/pts/3"]) == 2
    assert "unix:PATH or tcp:HOST:PORT" in capsys.readouterr().err


_LINUX_POPEN = {"start_new_session": True, "preexec_fn": platform_support._die_with_parent}


@pytest.mark.device
@pytest.mark.parametrize("platform", ["linux", "win32"])
def test_sim_reset_reboots_the_board_through_either_monitor(
    monkeypatch: pytest.MonkeyPatch, platform: str, capsys: pytest.CaptureFixture[str],
) -> None:
    from mpkernel import cli, sim

    monkeypatch.setattr(platform_support, "PLATFORM", platform)
    if platform == "win32":  # the two calls only a real Windows can make, as on Linux
        monkeypatch.setattr(platform_support, "child_popen_options", lambda: dict(_LINUX_POPEN))
        monkeypatch.setattr(platform_support, "tie_to_this_process",
                            lambda proc: platform_support.Tie())
    with sim.Simulator() as emulator:
        kind = "tcp:127.0.0.1:" if platform == "win32" else "unix:/"
        assert emulator.monitor_address.startswith(kind)
        with serial.serial_for_url(emulator.address, 115200, timeout=0.2) as port:
            port.write(b"\r\x03\x02")
            _read_until(port, b">>> ")
            assert cli.main(["sim", "--reset", emulator.monitor_address]) == 0
            assert _read_until(port, emulator.banner.encode())
    assert f"Reset the emulated board at {emulator.monitor_address}." in capsys.readouterr().out


def _read_until(port: serial.SerialBase, marker: bytes, timeout: float = 10.0) -> bytes:
    seen, deadline = b"", time.monotonic() + timeout
    while marker not in seen:
        assert time.monotonic() < deadline, f"no {marker!r} in {seen[-300:]!r}"
        seen += port.read(4096)
    return seen
