"""Which port the kernel picks, and how %connect offers a choice (widgets or text)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from mpkernel import kernel as kernel_module
from mpkernel import sim
from mpkernel.board import ports
from mpkernel.cli import spec_dir_with_argv
from mpkernel.errors import PortError


def fake_kernel(**kw: object) -> SimpleNamespace:
    said: list[str] = []
    base = dict(chosen_port="", port="", fallback_to_sim=True, _write=said.append, said=said)
    base.update(kw)
    return SimpleNamespace(**base)


def resolve(k: SimpleNamespace) -> str:
    return kernel_module.MicroPythonKernel.resolve_port(k)  # type: ignore[arg-type]


def port_list(*devices: tuple[str, bool]) -> list[ports.PortInfo]:
    return [ports.PortInfo(device=d, description="", identity=None, board_guess=None,
                           is_likely_board=likely) for d, likely in devices]


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("MPKERNEL_PORT", raising=False)
    return monkeypatch


def test_connect_beats_environment_beats_config(no_env: pytest.MonkeyPatch) -> None:
    no_env.setenv("MPKERNEL_PORT", "/dev/from-env")
    assert resolve(fake_kernel(chosen_port="/dev/chosen", port="/dev/cfg")) == "/dev/chosen"
    assert resolve(fake_kernel(port="/dev/cfg")) == "/dev/from-env"
    no_env.delenv("MPKERNEL_PORT")
    assert resolve(fake_kernel(port="/dev/cfg")) == "/dev/cfg"


def test_the_single_board_found_is_used(no_env: pytest.MonkeyPatch) -> None:
    no_env.setattr(ports, "pick_port", lambda lister=None: "/dev/ttyUSB0")
    assert resolve(fake_kernel()) == "/dev/ttyUSB0"


def test_no_board_at_all_uses_the_emulated_board_and_says_so(no_env: pytest.MonkeyPatch) -> None:
    def none_found(lister: object = None) -> str:
        raise PortError("No serial ports found.")

    no_env.setattr(ports, "pick_port", none_found)
    no_env.setattr(ports, "list_ports", lambda lister=None: [])
    # A unit test: whether QEMU is installed here is not its business (it was, unmarked).
    no_env.setattr(sim, "check_installed", lambda: None)
    k = fake_kernel()
    assert resolve(k) == "sim"
    assert "emulated micro:bit" in k.said[0] and "%connect" in k.said[0]
    # Switched off, the user gets the list-and-choose message instead.
    with pytest.raises(PortError):
        resolve(fake_kernel(fallback_to_sim=False))


def test_no_board_and_no_emulator_says_what_to_install(no_env: pytest.MonkeyPatch) -> None:
    def none_found(lister: object = None) -> str:
        raise PortError("No serial ports found.")

    def missing() -> None:
        raise sim.SimulatorMissing("missing qemu-system-arm", "apt-get install qemu-system-arm")

    no_env.setattr(ports, "pick_port", none_found)
    no_env.setattr(ports, "list_ports", lambda lister=None: [])
    no_env.setattr(sim, "check_installed", missing)
    k = fake_kernel()
    with pytest.raises(sim.SimulatorMissing) as info:
        resolve(k)
    assert info.value.hint == "apt-get install qemu-system-arm"
    assert k.said == []  # it did not claim to be using the emulated board


def test_several_boards_must_be_chosen(no_env: pytest.MonkeyPatch) -> None:
    def several(lister: object = None) -> str:
        raise PortError("Several boards: /dev/ttyUSB0, /dev/ttyACM0.")

    no_env.setattr(ports, "pick_port", several)
    no_env.setattr(ports, "list_ports",
                   lambda lister=None: port_list(("/dev/ttyUSB0", True), ("/dev/ttyACM0", True)))
    with pytest.raises(PortError, match="Several boards"):
        resolve(fake_kernel())


@pytest.fixture
def kernel_client(tmp_path: Path) -> Iterator:
    spec_dir_with_argv(tmp_path / "kernels" / "mpkernel")
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    km = KernelManager(kernel_name="mpkernel", kernel_spec_manager=specs)
    km.start_kernel(env={**os.environ, "MPKERNEL_PORT": "sim"})
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def outputs_of(kc, code: str) -> list[dict]:  # noqa: ANN001
    msg_id = kc.execute(code)
    out = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return out
        out.append(msg)
    raise AssertionError("the cell did not finish")


@pytest.mark.device
def test_connect_without_port_is_a_text_list_in_a_console(kernel_client) -> None:  # noqa: ANN001
    out = outputs_of(kernel_client, "%connect")
    text = "".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream")
    assert "%connect N" in text and "%connect sim" in text
    assert not [m for m in out if m["msg_type"] == "display_data"]


@pytest.mark.device
def test_connect_without_port_is_a_dropdown_where_widgets_render(kernel_client) -> None:  # noqa: ANN001
    # What JupyterLab's widget manager does when it starts.
    msg = kernel_client.session.msg("comm_info_request", {"target_name": "jupyter.widget"})
    kernel_client.shell_channel.send(msg)
    out = outputs_of(kernel_client, "%connect")
    shown = [m for m in out if m["msg_type"] == "display_data"]
    assert shown, out
    assert "application/vnd.jupyter.widget-view+json" in shown[0]["content"]["data"]
    opened = [m for m in out if m["msg_type"] == "comm_open"]
    models = {m["content"]["data"]["state"].get("_model_name") for m in opened}
    assert {"DropdownModel", "ButtonModel"} <= models
