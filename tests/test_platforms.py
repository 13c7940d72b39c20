"""Windows, macOS and Linux paths with the OS faked at its one boundary.

`platform_support.PLATFORM` is set to win32/darwin/linux; port listings look like pyserial's
list_ports on that OS; open errors are raised exactly as pyserial raises them there; volume
lists, PnP/ioreg output and Win32 calls come from fakes shaped like the real thing.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import serial

from mpkernel import platform_support
from mpkernel.board import doctor, link, ports
from mpkernel.board.doctor import Verdict
from mpkernel.errors import PortBusy, PortError
from mpkernel.flash import writers as flash

WIN_BUSY = serial.SerialException(
    "could not open port 'COM3': PermissionError(13, 'Access is denied.', None, 5)")
WIN_MISSING = serial.SerialException(
    "could not open port 'COM5': FileNotFoundError(2, 'The system cannot find the file "
    "specified.', None, 2)")
MAC_LOCKED = serial.SerialException(
    35, "Could not exclusively lock port /dev/cu.usbserial-0001: [Errno 35] Resource "
        "temporarily unavailable")


def comport(device: str, vid: int | None = None, pid: int | None = None,
            serial_number: str | None = None, description: str = "n/a",
            location: str | None = None, manufacturer: str | None = None) -> SimpleNamespace:
    """One entry as serial.tools.list_ports.comports() gives it."""
    hwid = f"USB VID:PID={vid:04X}:{pid:04X}" if vid is not None else "n/a"
    return SimpleNamespace(device=device, vid=vid, pid=pid, serial_number=serial_number,
                           description=description, hwid=hwid, location=location,
                           manufacturer=manufacturer, product=None)


# As Windows 10/11 list them: CH340 boards have no serial number; the Pico is a generic
# "USB Serial Device"; COM1 is the motherboard's port.
WIN_PORTS = [
    comport("COM1", description="Communications Port (COM1)"),
    comport("COM10", 0x10C4, 0xEA60, "0001", "Silicon Labs CP210x USB to UART Bridge (COM10)",
            "1-4", "Silicon Labs"),
    comport("COM3", 0x1A86, 0x7523, None, "USB-SERIAL CH340 (COM3)", "1-2", "wch.cn"),
]
MAC_PORTS = [
    comport("/dev/cu.Bluetooth-Incoming-Port", description="n/a"),
    comport("/dev/cu.usbserial-0001", 0x10C4, 0xEA60, "0001", "CP2102 USB to UART Bridge",
            "20-1", "Silicon Labs"),
    comport("/dev/tty.usbserial-0001", 0x10C4, 0xEA60, "0001", "CP2102 USB to UART Bridge",
            "20-1", "Silicon Labs"),
]


class FakeSerial:
    """What serial_for_url(..., do_not_open=True) returns; open() fails with `error`."""

    opened: list[str] = []

    def __init__(self, port: str, error: Exception | None = None) -> None:
        self.port, self.error, self.exclusive, self.timeout = port, error, None, None

    def open(self) -> None:
        if self.error is not None:
            raise self.error
        FakeSerial.opened.append(self.port)

    def close(self) -> None:
        pass


def fake_pyserial(monkeypatch, error: Exception | None = None) -> list[str]:
    calls: list[str] = []

    def serial_for_url(url: str, **kwargs) -> FakeSerial:
        assert kwargs.get("do_not_open") is True
        calls.append(url)
        return FakeSerial(url, error)

    monkeypatch.setattr(link.serial, "serial_for_url", serial_for_url)
    return calls


# --- ports ----------------------------------------------------------------------------------


def test_windows_com_ports_open_although_they_are_not_files(on, monkeypatch) -> None:
    on("win32")
    calls = fake_pyserial(monkeypatch)
    assert link.Link("COM3").port == "COM3"
    # \\.\COM10 (the form COM10 and above need in Win32) and a lower-case name are the same
    # ports as listed; pyserial adds the \\.\ prefix itself.
    assert link.Link("\\\\.\\COM10").port == "COM10"
    assert link.Link("com4").port == "COM4"
    assert calls == ["COM3", "COM10", "COM4"]


def test_linux_still_refuses_a_device_path_that_does_not_exist(on, monkeypatch) -> None:
    on("linux")
    calls = fake_pyserial(monkeypatch)
    monkeypatch.setattr(ports, "_default_lister", lambda: [])
    with pytest.raises(PortError, match="does not exist"):
        link.Link("/dev/ttyUSB9")
    assert calls == []


def test_windows_listing_names_boards_and_sorts_com_numbers(on) -> None:
    on("win32")
    listed = ports.list_ports(lambda: WIN_PORTS)
    assert [p.device for p in listed] == ["COM3", "COM10", "COM1"]
    assert "CH340" in (listed[0].board_guess or "") and "CP210x" in (listed[1].board_guess or "")
    assert not listed[2].is_likely_board
    with pytest.raises(PortError) as caught:
        ports.pick_port(lambda: [WIN_PORTS[0]])
    assert "%connect COM3" in caught.value.hint and "/dev/" not in caught.value.hint


def test_windows_identity_follows_the_com_name_in_any_spelling(on) -> None:
    on("win32")
    identity = ports.identity_of("com3", lambda: WIN_PORTS)
    assert identity is not None and (identity.vid, identity.pid) == (0x1A86, 0x7523)
    assert platform_support.port_exists("COM3", lambda: WIN_PORTS)
    assert platform_support.port_exists("\\\\.\\COM10", lambda: WIN_PORTS)
    assert not platform_support.port_exists("COM7", lambda: WIN_PORTS)


def test_macos_prefers_the_callout_device(on) -> None:
    on("darwin")
    listed = ports.list_ports(lambda: MAC_PORTS)
    assert [p.device for p in listed] == ["/dev/cu.usbserial-0001",
                                          "/dev/cu.Bluetooth-Incoming-Port"]
    assert ports.pick_port(lambda: MAC_PORTS) == "/dev/cu.usbserial-0001"
    # A tutorial's /dev/tty.* name is opened as its /dev/cu.* twin, which does not wait for
    # a carrier signal.
    exists = {"/dev/cu.usbserial-0001"}.__contains__
    assert (platform_support.normalize_port("/dev/tty.usbserial-0001", exists)
            == "/dev/cu.usbserial-0001")
    assert platform_support.normalize_port("/dev/tty.other", exists) == "/dev/tty.other"
    assert "/dev/cu.usbserial" in ports.choose_hint()


def test_linux_keeps_tty_names_and_its_example(on) -> None:
    on("linux")
    raw = [comport("/dev/ttyUSB10", 0x1A86, 0x7523), comport("/dev/ttyUSB2", 0x1A86, 0x7523)]
    assert [p.device for p in ports.list_ports(lambda: raw)] == ["/dev/ttyUSB2", "/dev/ttyUSB10"]
    assert "%connect /dev/ttyUSB0" in ports.choose_hint()


# --- busy ports -----------------------------------------------------------------------------


def test_windows_access_denied_is_a_busy_port_with_the_usual_suspects(on, monkeypatch) -> None:
    on("win32")
    fake_pyserial(monkeypatch, WIN_BUSY)
    with pytest.raises(PortBusy) as caught:
        link.Link("COM3")
    text = caught.value.user_text()
    assert str(caught.value).startswith("Port COM3 is in use by another program")
    assert "Windows does not say which program" in text
    for suspect in ("Arduino IDE", "Thonny", "another notebook", "%disconnect"):
        assert suspect in text
    assert "Access is denied" not in text and "dialout" not in text


def test_windows_missing_com_port_points_to_device_manager(on, monkeypatch) -> None:
    on("win32")
    fake_pyserial(monkeypatch, WIN_MISSING)
    monkeypatch.setattr(ports, "_default_lister", lambda: WIN_PORTS)
    with pytest.raises(PortError) as caught:
        link.Link("COM5")
    assert str(caught.value) == "Port COM5 does not exist."
    assert "Device Manager > Ports (COM & LPT)" in caught.value.hint
    assert "COM3" in caught.value.hint  # the ports that do exist are listed


def test_macos_lock_names_the_holder_lsof_finds(on, monkeypatch, tmp_path) -> None:
    on("darwin")
    port = str(tmp_path / "cu.usbserial-0001")
    Path(port).write_bytes(b"")
    fake_pyserial(monkeypatch, MAC_LOCKED)
    asked: list[list[str]] = []

    def lsof(argv: list[str]) -> str:
        asked.append(argv)
        return "p4242\ncscreen\n"

    monkeypatch.setattr(platform_support, "_run", lsof)
    with pytest.raises(PortBusy) as caught:
        link.Link(port)
    assert str(caught.value) == f"Port {port} is in use by another program: screen (PID 4242)."
    assert asked[0][0] == "lsof" and asked[0][-1] == port


def test_macos_without_lsof_says_it_cannot_tell(on, monkeypatch, tmp_path) -> None:
    on("darwin")
    port = str(tmp_path / "cu.usbmodem1101")
    Path(port).write_bytes(b"")
    fake_pyserial(monkeypatch, MAC_LOCKED)

    def no_lsof(argv: list[str]) -> str:
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    monkeypatch.setattr(platform_support, "_run", no_lsof)
    with pytest.raises(PortBusy) as caught:
        link.Link(port)
    assert "lsof is not available" in str(caught.value)
    assert "Thonny" in caught.value.hint


def test_permission_hints_name_dialout_only_on_linux(on) -> None:
    on("darwin")
    assert "dialout" not in platform_support.permission_hint("/dev/cu.usbserial-0001")
    assert "ls -l /dev/cu.usbserial-0001" in platform_support.permission_hint(
        "/dev/cu.usbserial-0001")
    on("linux")
    assert "usermod -aG" in platform_support.permission_hint("/nonexistent/ttyUSB0")


def test_doctor_on_windows_calls_access_denied_in_use(on) -> None:
    on("win32")

    def refuse(url: str, baud: int, timeout: float):
        raise WIN_BUSY

    diag = doctor.diagnose("com3", opener=refuse, usb=lambda: [])
    assert diag.verdict is Verdict.IN_USE and diag.port == "COM3"
    assert "Thonny" in diag.next_step and "dialout" not in diag.text()


# --- drivers --------------------------------------------------------------------------------

# Get-CimInstance Win32_PnPEntity output as the doctor's query formats it.
PNP_CH340_NO_DRIVER = ("USB\\VID_1A86&PID_7523\\5&2E8B1F1&0&2|28|USB2.0-Serial\n"
                       "USB\\VID_046D&PID_C52B\\6&1A2B|0|Logitech USB Receiver\n")
PNP_CP210X_OK = "USB\\VID_10C4&PID_EA60\\0001|0|Silicon Labs CP210x USB to UART Bridge (COM10)\n"
IOREG_CP2102 = """\
+-o Root  <class IORegistryEntry, id 0x100000100, retain 31>
  +-o CP2102 USB to UART Bridge Controller@01100000  <class IOUSBHostDevice>
      {
        "USB Product Name" = "CP2102 USB to UART Bridge Controller"
        "idProduct" = 60000
        "idVendor" = 4292
      }
  +-o USB Keyboard@01200000  <class IOUSBHostDevice>
      {
        "idProduct" = 591
        "idVendor" = 1452
      }
"""


def test_windows_chip_without_driver_is_named_with_its_driver(on) -> None:
    on("win32")
    asked: list[list[str]] = []

    def powershell(argv: list[str]) -> str:
        asked.append(argv)
        return PNP_CH340_NO_DRIVER

    def missing(url: str, baud: int, timeout: float):
        raise WIN_MISSING

    diag = doctor.diagnose("COM5", opener=missing, lister=lambda: [],
                           usb=lambda: platform_support.usb_devices(powershell))
    assert asked[0][0] == "powershell" and "Win32_PnPEntity" in asked[0][-1]
    assert diag.verdict is Verdict.NO_DRIVER, diag.text()
    assert "CH340" in diag.summary and "driver is not installed (Device Manager code 28)" \
        in diag.summary
    assert diag.next_step.startswith("Install WCH's CH341SER driver")
    assert "Device Manager > Ports (COM & LPT)" in diag.next_step


def test_windows_chip_with_driver_but_no_com_port_is_suspect(on) -> None:
    on("win32")
    devices = platform_support.usb_devices(lambda argv: PNP_CP210X_OK)
    diag = doctor.check_drivers(lister=lambda: [], usb=lambda: devices)
    assert diag is not None and "no serial port appeared" in diag.summary
    assert "Silicon Labs CP210x USB to UART Bridge VCP driver" in diag.next_step
    # The same chip with its COM port listed is fine: no false alarm.
    assert doctor.check_drivers(lister=lambda: WIN_PORTS, usb=lambda: devices) is None


def test_macos_chip_in_ioreg_without_a_port_needs_its_driver(on) -> None:
    on("darwin")
    devices = platform_support.usb_devices(lambda argv: IOREG_CP2102)
    assert [(d.vid, d.pid) for d in devices or []] == [(0x10C4, 0xEA60), (0x05AC, 0x024F)]
    diag = doctor.check_drivers(lister=lambda: [MAC_PORTS[0]], usb=lambda: devices)
    assert diag is not None and diag.verdict is Verdict.NO_DRIVER
    assert "CP2102 USB to UART Bridge Controller" in diag.summary
    assert "Privacy & Security" in diag.next_step and "/dev/cu.*" in diag.next_step
    assert doctor.check_drivers(lister=lambda: MAC_PORTS, usb=lambda: devices) is None


def test_linux_asks_no_os_tool_about_drivers(on) -> None:
    on("linux")

    def must_not_run(argv: list[str]) -> str:
        raise AssertionError(f"ran {argv}")

    assert platform_support.usb_devices(must_not_run) is None
    assert doctor.check_drivers(lister=lambda: [], usb=lambda: None) is None


def test_doctor_magic_without_ports_reports_the_missing_driver(on, monkeypatch) -> None:
    from mpkernel.magics import MagicContext, registry

    on("win32")
    monkeypatch.setattr(platform_support, "_run", lambda argv: PNP_CH340_NO_DRIVER)
    monkeypatch.setattr(ports, "_default_lister", lambda: [])
    out: list[str] = []
    ctx = MagicContext(get_board=lambda: None, write=out.append, make_progress=None,
                       resolve_port=lambda: ports.pick_port(), peek_board=lambda: None)
    spec = registry()["%doctor"]
    spec.handler(ctx, spec.parse(""))
    text = "".join(out)
    assert "No serial ports found" in text and "%connect COM3" in text
    assert "Verdict: A WCH CH340" in text and "CH341SER" in text


# --- drives ---------------------------------------------------------------------------------


class FakeKernel32:
    """GetLogicalDrives / GetVolumeInformationW / SetErrorMode as ctypes.windll.kernel32 has
    them: C: and E: hold volumes, D: is an empty card reader (the call fails)."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.error_modes: list[int] = []

    def GetLogicalDrives(self) -> int:  # noqa: N802 - the Win32 name
        return sum(1 << (ord(letter) - ord("A")) for letter in "CDE")

    def GetVolumeInformationW(self, root, name_buffer, size, *rest) -> int:  # noqa: N802
        label = self.labels.get(root.value)
        if label is None:
            return 0
        assert len(label) < size
        name_buffer.value = label
        return 1

    def SetErrorMode(self, mode: int) -> int:  # noqa: N802
        self.error_modes.append(mode)
        return 0 if len(self.error_modes) == 1 else 1


def test_windows_drive_is_found_by_label_on_its_letter(on) -> None:
    on("win32")
    k32 = FakeKernel32({"C:\\": "Windows", "E:\\": "RPI-RP2"})
    found = flash.find_drive(("RPI-RP2", "RP2350"),
                             volumes=lambda: platform_support.mounted_volumes(k32))
    assert found == Path("E:\\")
    assert k32.error_modes == [1, 0]  # no "insert a disk" dialog, and the old mode restored
    none = FakeKernel32({"C:\\": "Windows"})
    assert flash.find_drive(("MICROBIT",),
                            volumes=lambda: platform_support.mounted_volumes(none)) is None


def test_macos_drive_is_found_in_volumes_and_the_image_copied(on, monkeypatch, tmp_path) -> None:
    on("darwin")
    volumes = tmp_path / "Volumes"
    (volumes / "Macintosh HD").mkdir(parents=True)
    (volumes / "MICROBIT 1").mkdir()  # a second MICROBIT mounted while the first was stale
    monkeypatch.setattr(platform_support, "VOLUMES", volumes)
    image = tmp_path / "microbit.hex"
    image.write_text(":00000001FF\n")
    result = flash.copy_to_drive(image, write=lambda s: None, roots=[], lsblk=lambda: "")
    assert result.drive == volumes / "MICROBIT 1"
    assert (volumes / "MICROBIT 1" / "microbit.hex").read_text() == ":00000001FF\n"
    with pytest.raises(flash.FlashError) as caught:
        flash.copy_to_drive(tmp_path / "x.uf2", write=lambda s: None)
    assert "No drive labelled RPI-RP2 or RP2350" in str(caught.value)
    assert "Finder" in caught.value.hint


def test_linux_drive_finding_is_unchanged(on, tmp_path) -> None:
    on("linux")
    mount = tmp_path / "mnt"
    mount.mkdir()
    listing = f'LABEL="RP2350" MOUNTPOINT="{mount}"\n'
    assert flash.find_drive(("RPI-RP2", "RP2350"), roots=[], lsblk=lambda: listing) == mount


def test_flashing_a_busy_windows_port_names_the_usual_holders(on, monkeypatch) -> None:
    on("win32")
    monkeypatch.setattr(flash.serial, "serial_for_url",
                        lambda url, **kw: FakeSerial(url, WIN_BUSY))
    with pytest.raises(flash.FlashError) as caught:
        flash._open_port("COM3")
    assert str(caught.value).startswith("Port COM3 is in use by another program")
    assert "Arduino IDE" in caught.value.hint and "Access is denied" not in str(caught.value)


def test_windows_device_not_functioning_is_not_called_missing(on, monkeypatch) -> None:
    on("win32")
    fake_pyserial(monkeypatch, serial.SerialException(
        "could not open port 'COM3': OSError(22, 'A device attached to the system is not "
        "functioning.', None, 31)"))
    with pytest.raises(PortError) as caught:
        link.Link("COM3")
    assert "not working" in caught.value.hint and "driver" in caught.value.hint


def test_a_board_without_serial_number_is_found_again_on_its_com_port(on) -> None:
    from mpkernel.board.board import Board

    on("win32")
    present: list = []
    board = Board("COM3", lister=lambda: present)
    assert board._find_again() is None  # unplugged: Windows lists no COM3
    present.extend(WIN_PORTS)
    assert board._find_again() == "COM3"


def test_windows_message_mode_interrupt_reaches_the_cells_handler(on, monkeypatch) -> None:
    # ipykernel's own _send_interrupt_children only logs "not supported on Windows"; the
    # kernel's override must run the SIGINT handler the cell installed, in the main thread.
    import threading

    from ipykernel import kernelbase

    from mpkernel.kernel import MicroPythonKernel

    on("win32")
    monkeypatch.setattr(kernelbase, "os", SimpleNamespace(name="nt"))  # ipykernel's own test
    logged: list[str] = []
    kernel = SimpleNamespace(log=SimpleNamespace(error=logged.append))
    seen: list[str] = []
    previous = signal.signal(signal.SIGINT,
                             lambda *a: seen.append(threading.current_thread().name))
    try:
        control = threading.Thread(  # ipykernel answers interrupt_request on its control thread
            target=MicroPythonKernel._send_interrupt_children, args=(kernel,))
        control.start()
        control.join()
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen == [threading.main_thread().name] and logged == []


def _magic(line: str, name: str) -> str:
    from mpkernel.magics import MagicContext, registry

    out: list[str] = []
    ctx = MagicContext(get_board=lambda: None, write=out.append, make_progress=None)
    spec = registry()[name]
    spec.handler(ctx, spec.parse(line))
    return "".join(out)


def test_ports_magic_with_no_board_names_a_missing_driver(on, monkeypatch) -> None:
    on("win32")
    monkeypatch.setattr(ports, "_default_lister", lambda: [WIN_PORTS[0]])  # COM1 only
    monkeypatch.setattr(platform_support, "_run", lambda argv: PNP_CH340_NO_DRIVER)
    text = _magic("", "%ports")
    assert "COM1" in text and "CH340" in text and "Install WCH's CH341SER driver" in text
    # With the driver installed the board is listed, and nothing is said about drivers.
    monkeypatch.setattr(ports, "_default_lister", lambda: WIN_PORTS)
    monkeypatch.setattr(platform_support, "_run",
                        lambda argv: PNP_CH340_NO_DRIVER.replace("|28|", "|0|"))
    assert "driver" not in _magic("", "%ports")
