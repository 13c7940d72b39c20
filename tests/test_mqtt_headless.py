"""%mqtt watch in a headless run (`mpkernel run`, as nbconvert would): nothing renders live,
so what the saved notebook shows of the watch is all a reader gets. It must hold the messages
that arrived while the later cells ran, not the empty display the watch cell first drew.

The lesson's shape, on each emulated board: a broker here, the bridge, a watch, a board cell
publishing through the bridge, a `%mqtt pub` from the notebook, then everything stopped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from host_kernel import PORTS, board_name_fixture  # noqa: F401

pytestmark = pytest.mark.device

CELLS = [
    "%mqtt broker --port 0 --bind 127.0.0.1",
    "%mqtt bridge",
    "%mqtt watch demo/#",
    "from umqtt.simple import MQTTClient\nimport secrets, time\n"
    "c = MQTTClient('board1', secrets.MQTT_BROKER, secrets.MQTT_PORT,\n"
    "               user=secrets.MQTT_USER, password=secrets.MQTT_PASSWORD)\nc.connect()\n"
    "for i in range(3):\n    c.publish('demo/n', str(i))\n    time.sleep_ms(200)\n"
    "c.disconnect()\nprint('sent')",
    "%mqtt pub demo/cmd on",
    "%mqtt stop --broker",
]


def test_a_headless_run_saves_the_watch_with_the_messages_that_arrived_later(
        sim: str, tmp_path: Path) -> None:
    source, out = tmp_path / "watch.ipynb", tmp_path / "watch.executed.ipynb"
    nbformat.write(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(c) for c in CELLS],
        metadata={"kernelspec": {"name": "mpkernel", "display_name": "MicroPython",
                                 "language": "python"}}), source)
    # The modern board on a flash file of its own, not the user's.
    env = dict(os.environ, MPKERNEL_QEMU_FLASH=str(tmp_path / "flash.bin"))
    run = subprocess.run([sys.executable, "-m", "mpkernel", "run", str(source), "--port",
                          PORTS[sim], "--output", str(out)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, (run.stdout, run.stderr)
    cells = nbformat.read(out, as_version=4).cells
    assert "".join(o.get("text", "") for o in cells[3].outputs) == "sent\n", cells[3].outputs
    watch = cells[2].outputs
    # One display, updated in place: no output was added per message.
    assert [o.output_type for o in watch] == ["display_data"], watch
    lines = watch[0].data["text/plain"].splitlines()
    assert lines[0] == ("MQTT demo/# (watching; 4 messages, newest first; %mqtt stop ends)"), lines
    # Each row is "HH:MM:SS topic: message", newest first.
    assert [line.split(" ", 1)[1] for line in lines[1:]] == [
        "demo/cmd: on", "demo/n: 2", "demo/n: 1", "demo/n: 0"], lines
    # The cells after the watch show only their own outputs (no stray copy of the display).
    for cell in cells[3:]:
        assert all(o.output_type == "stream" for o in cell.outputs), cell.outputs
