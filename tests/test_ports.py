"""Port listing, naming, picking and ownership, with fake listers shaped like ListPortInfo."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from mpkernel import platform_support
from mpkernel.board import ports
from mpkernel.board.ports import PortIdentity
from mpkernel.errors import PortError


def port(device: str, vid: int | None = None, pid: int | None = None, serial: str | None = None,
         description: str = "n/a", location: str | None = None) -> SimpleNamespace:
    hwid = f"USB VID:PID={vid:04X}:{pid:04X}" if vid is not None else "n/a"
    return SimpleNamespace(device=device, vid=vid, pid=pid, serial_number=serial,
                           description=description, hwid=hwid, location=location)


ESP_S3 = port("/dev/ttyACM0", 0x303A, 0x1001, "F4:12:FA:4D:F1:7C", "USB JTAG/serial debug unit",
              "1-1:1.0")
CP2102 = port("/dev/ttyUSB0", 0x10C4, 0xEA60, "0001", "CP2102 USB to UART Bridge Controller",
              "1-2:1.0")
CH340 = port("/dev/ttyUSB1", 0x1A86, 0x7523, None, "USB Serial", "1-3:1.0")
PICO = port("/dev/ttyACM1", 0x2E8A, 0x0005, "E6614C311B4B2A37", "Board in FS mode", "1-4:1.0")
MICROBIT = port("/dev/ttyACM2", 0x0D28, 0x0204, "9904360258994e45", "BBC micro:bit CMSIS-DAP")
ONBOARD = port("/dev/ttyS0")
MYSTERY = port("/dev/ttyACM9", 0x1234, 0x5678, "X", "Gadget")


def lister(*items):
    return lambda: list(items)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (ESP_S3, "Espressif native USB"),
        (CP2102, "CP210x"),
        (CH340, "CH340"),
        (port("/dev/ttyUSB2", 0x1A86, 0x55D4), "CH9102"),
        (port("/dev/ttyUSB3", 0x0403, 0x6001), "FTDI"),
        (PICO, "running MicroPython"),
        (MICROBIT, "micro:bit"),
        (port("/dev/ttyACM3", 0x239A, 0x80F4), "Adafruit"),
        (port("/dev/ttyACM4", 0xF055, 0x9800), "pyboard"),
        (port("/dev/ttyACM5", 0x0483, 0x5740), "STM32"),
        (port("/dev/ttyACM6", 0x303A, 0x80D1), "Espressif"),
        (port("/dev/ttyACM7", 0x1209, 0xABCD, description="MicroPython Board"), "MicroPython"),
    ],
)
def test_known_boards_are_named(raw, words: str) -> None:
    [info] = ports.list_ports(lister(raw))
    assert info.board_guess is not None and words in info.board_guess
    assert info.is_likely_board


def test_unknown_ports_are_listed_but_not_boards() -> None:
    infos = ports.list_ports(lister(ONBOARD, MYSTERY, PICO))
    assert [p.device for p in infos] == ["/dev/ttyACM1", "/dev/ttyACM9", "/dev/ttyS0"]
    assert [p.is_likely_board for p in infos] == [True, False, False]
    assert infos[2].identity is None and infos[2].description == ""
    assert infos[0].identity == PortIdentity(0x2E8A, 0x0005, "E6614C311B4B2A37", "1-4:1.0")


def test_format_ports_is_a_numbered_table() -> None:
    text = ports.format_ports(ports.list_ports(lister(ONBOARD, CP2102)))
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["1.", "/dev/ttyUSB0"]
    assert "CP210x" in lines[0] and "[10c4:ea60 serial 0001]" in lines[0]
    assert lines[1].split()[:3] == ["2.", "/dev/ttyS0", "unknown"]
    assert "No serial ports" in ports.format_ports([])


def test_pick_port_takes_the_single_board() -> None:
    assert ports.pick_port(lister(ONBOARD, MYSTERY, PICO)) == "/dev/ttyACM1"


def test_pick_port_with_no_board_lists_ports_and_says_how_to_choose() -> None:
    with pytest.raises(PortError) as caught:
        ports.pick_port(lister(ONBOARD, MYSTERY))
    assert "/dev/ttyS0" in str(caught.value) and "/dev/ttyACM9" in str(caught.value)
    for way in ("%connect PORT", "MPKERNEL_PORT=", "--MicroPythonKernel.port=", "%connect sim"):
        assert way in caught.value.hint
    with pytest.raises(PortError, match="No serial ports"):
        ports.pick_port(lister())


def test_pick_port_with_several_boards_lists_them() -> None:
    with pytest.raises(PortError) as caught:
        ports.pick_port(lister(CP2102, PICO, ONBOARD))
    message = str(caught.value)
    assert message.startswith("2 ports look like boards")
    assert "/dev/ttyUSB0" in message and "/dev/ttyACM1" in message
    assert "/dev/ttyS0" not in message


def test_find_by_identity_follows_a_renamed_board() -> None:
    identity = ports.identity_of("/dev/ttyACM0", lister(ESP_S3, CP2102))
    assert identity == PortIdentity(0x303A, 0x1001, "F4:12:FA:4D:F1:7C", "1-1:1.0")
    # After a reset the native-USB board re-enumerates as ttyACM3, on another USB port even.
    moved = port("/dev/ttyACM3", 0x303A, 0x1001, "F4:12:FA:4D:F1:7C", "USB JTAG", "1-5:1.0")
    other = port("/dev/ttyACM0", 0x303A, 0x1001, "AA:BB", "USB JTAG", "1-1:1.0")
    assert ports.find_by_identity(identity, lister(other, moved, CP2102)) == "/dev/ttyACM3"
    assert ports.find_by_identity(identity, lister(other, CP2102)) is None


def test_find_by_identity_without_serial_number() -> None:
    identity = ports.identity_of("/dev/ttyUSB1", lister(CH340))
    assert identity is not None and identity.serial_number is None
    renamed = port("/dev/ttyUSB4", 0x1A86, 0x7523, None, "USB Serial", "1-3:1.0")
    twin = port("/dev/ttyUSB5", 0x1A86, 0x7523, None, "USB Serial", "1-6:1.0")
    assert ports.find_by_identity(identity, lister(twin, renamed)) == "/dev/ttyUSB4"
    moved = port("/dev/ttyUSB4", 0x1A86, 0x7523, None, "USB Serial", "1-7:1.0")
    assert ports.find_by_identity(identity, lister(moved)) == "/dev/ttyUSB4"
    assert ports.find_by_identity(identity, lister(moved, twin)) is None


def test_identity_of_non_usb_or_absent_port() -> None:
    assert ports.identity_of("/dev/ttyS0", lister(ONBOARD)) is None
    assert ports.identity_of("/dev/ttyUSB7", lister(CP2102)) is None


def test_who_holds_reports_our_own_pid(tmp_path) -> None:
    master, slave = os.openpty()
    try:
        path = os.ttyname(slave)
        link = tmp_path / "board"
        link.symlink_to(path)  # like /dev/serial/by-id/...
        for name in (path, str(link)):
            holders = ports.who_holds(name)
            assert (os.getpid(), platform_support.command_name(os.getpid())) in holders
        assert ports.describe_holders(holders).startswith("PID ")
    finally:
        os.close(slave)
        os.close(master)
    assert os.getpid() not in [pid for pid, _ in ports.who_holds(path)]
    assert ports.describe_holders([]) == "PID unknown"


def test_cli_lists_ports(capsys, monkeypatch) -> None:
    monkeypatch.setattr(ports, "_default_lister", lister(PICO))
    assert ports.cli_main() == 0
    assert "/dev/ttyACM1" in capsys.readouterr().out


# --- %ports and the widgets ------------------------------------------------------------------


def test_ports_magic_prints_the_table(monkeypatch) -> None:
    from mpkernel.magics import MagicContext, registry

    monkeypatch.setattr(ports, "_default_lister", lister(ONBOARD, MICROBIT))
    out: list[str] = []
    ctx = MagicContext(get_board=lambda: None, write=out.append, make_progress=None)
    spec = registry()["%ports"]
    spec.handler(ctx, spec.parse(""))
    assert "1. /dev/ttyACM2" in "".join(out) and "micro:bit" in "".join(out)
    assert "VID/PID" in spec.help


class FakeHandle:
    """Stands for IPython's DisplayHandle: records what the output was replaced with."""

    def __init__(self, shown: object) -> None:
        self.shown = [shown]

    def update(self, obj: object) -> None:
        self.shown.append(obj)

    def bundle(self) -> dict:
        return self.shown[-1]._repr_mimebundle_()  # type: ignore[attr-defined]


def test_port_picker_connects_to_the_chosen_port_and_leaves_text() -> None:
    from mpkernel import widgets
    from mpkernel.errors import MpkernelError

    infos = ports.list_ports(lister(ONBOARD, PICO))
    chosen: list[str] = []

    def connect(port: str, say) -> str:
        chosen.append(port)
        say("stopped main.py")
        return f"Connected to {port}: MicroPython v1.25.0."

    choices = widgets.port_choices(infos, [(widgets.SIM_LABEL, "sim"),
                                           (widgets.QEMU_LABEL, "sim:qemu")])
    picker = widgets.port_picker(choices, "/dev/ttyACM1", connect, heading="No board yet.",
                                 text="the list as text", show=FakeHandle)
    labels = [label for label, _ in picker.dropdown.options]
    assert labels[0].startswith("/dev/ttyACM1 - Raspberry Pi")
    assert labels[-2:] == [widgets.SIM_LABEL, widgets.QEMU_LABEL]
    assert picker.dropdown.value == "/dev/ttyACM1"
    # Before a choice: the widget, with the list as text beside it for a saved notebook.
    first = picker.handle.bundle()
    assert first["text/plain"] == "the list as text"
    assert "application/vnd.jupyter.widget-view+json" in first
    picker.dropdown.value = "sim:qemu"
    picker.button.click()
    assert chosen == ["sim:qemu"]
    # After it: only the text of what happened, no widget a reopened notebook cannot show.
    assert picker.handle.bundle() == {"text/plain": "Connected to sim:qemu: MicroPython v1.25.0."}

    def refuse(port: str, say) -> str:
        raise MpkernelError(f"{port} is in use by another program (PID 42 (screen)).", "Close it.")

    failing = widgets.port_picker(choices, "sim", refuse, show=FakeHandle)
    assert failing.dropdown.value == "sim"
    failing.button.click()
    assert "PID 42" in failing.status.value and not failing.button.disabled
    assert len(failing.handle.shown) == 1  # the picker stays for another try


def test_widget_progress_updates_and_leaves_the_summary() -> None:
    from mpkernel import widgets

    now = [0.0]
    bar = widgets.WidgetProgress("upload main.py", 2048, show=FakeHandle,
                                 clock=lambda: now[0])
    assert bar.handle.shown[0].widget is bar.widget
    assert bar.handle.bundle()["text/plain"].startswith("upload main.py: 0 B / 2.0 KB")
    now[0] = 1.0
    bar.update(1024)
    assert bar.bar.value == 1024 and "50%" in bar.text.value and "1.0 KB/s" in bar.text.value
    now[0] = 1.01
    bar.update(1100)  # within the redraw gap: not drawn
    assert bar.bar.value == 1024
    bar.update(2048)  # the end is always drawn
    bar.close("main.py: 2.0 KB in 1.0 s, verified")
    assert bar.text.value == "main.py: 2.0 KB in 1.0 s, verified"
    assert bar.bar.bar_style == "success"
    assert bar.handle.bundle() == {"text/plain": "main.py: 2.0 KB in 1.0 s, verified"}


def test_importing_mpkernel_does_not_import_ipywidgets() -> None:
    import subprocess
    import sys

    code = ("import sys, mpkernel, mpkernel.board.ports, mpkernel.board.doctor, mpkernel.magics; "
            "mpkernel.magics.registry(); print('ipywidgets' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
