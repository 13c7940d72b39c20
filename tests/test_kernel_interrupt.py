"""Jupyter's "Interrupt kernel" in both kernelspec interrupt modes, on the emulated board."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.fixtures import default_boards
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from mpkernel.cli import spec_dir_with_argv

pytestmark = pytest.mark.device


# Each interrupt mode on each emulated board MPK_BOARDS names (the micro:bit by default).
MODES = [(mode, board) for board in default_boards() for mode in ("signal", "message")]


@pytest.fixture(params=MODES, ids=[f"{mode}-{board}" for mode, board in MODES])
def kernel(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple]:
    mode, board = request.param
    port = "sim" if board == "microbit" else f"sim:{board}"
    # The modern board's flash file is locked by the QEMU using it: this kernel gets its own.
    env = {"MPKERNEL_PORT": port, "MPKERNEL_QEMU_FLASH": str(tmp_path / "flash.bin")}
    spec_dir = spec_dir_with_argv(tmp_path / "kernels" / "mpkernel")
    spec = json.loads((spec_dir / "kernel.json").read_text())
    spec["interrupt_mode"] = mode
    spec["env"] = env
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    km = KernelManager(
        kernel_name="mpkernel",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]),
    )
    km.start_kernel(env={**os.environ, **env})
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run(kc, code: str, on_start=None, timeout: float = 60) -> tuple[dict, list[dict]]:  # noqa: ANN001
    msg_id = kc.execute(code)
    if on_start is not None:
        on_start()
    outputs = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        if msg["msg_type"] in ("stream", "error", "execute_result"):
            outputs.append(msg)
    # wait_for_ready may leave extra kernel_info replies queued: take this cell's reply.
    while True:
        reply = kc.get_shell_msg(timeout=10)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"], outputs


@pytest.mark.parametrize(
    "loop",
    ["while True:\n    pass", "import time\ntime.sleep(60)",
     "import time\nwhile True:\n    print(n)\n    time.sleep_ms(50)"],
    ids=["busy-loop", "sleep-60", "printing-loop"],
)
def test_interrupt_stops_the_cell_and_keeps_variables(kernel: tuple, loop: str) -> None:
    km, kc = kernel
    reply, _ = run(kc, "n = 7")
    assert reply["status"] == "ok"
    started = []

    def interrupt_soon() -> None:
        time.sleep(1.0)
        started.append(time.monotonic())
        km.interrupt_kernel()

    reply, outputs = run(kc, "n = 7\n" + loop, on_start=interrupt_soon)
    ended = time.monotonic()
    assert reply["status"] == "error", (reply, outputs)
    assert reply["ename"] == "KeyboardInterrupt"
    assert [m for m in outputs if m["msg_type"] == "error"][0]["content"]["ename"] == (
        "KeyboardInterrupt"
    )
    assert ended - started[0] < 5, "the cell ended promptly after the interrupt"
    reply, outputs = run(kc, "print(n * 6)")
    assert reply["status"] == "ok"
    assert "".join(m["content"].get("text", "") for m in outputs) == "42\n"
