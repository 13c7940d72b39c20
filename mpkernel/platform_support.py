"""Everything that differs between Windows, macOS and Linux, in one place.

The rest of mpkernel asks this module how the OS names ports, what an open error means, who
holds a port, which USB-serial chips lack a driver, where a board's drive is mounted, how a
child process is tied to ours and how to get QEMU. It reads the OS from one name, `PLATFORM`
(a copy of `sys.platform`); tests set that name to walk every platform's path on Linux.

Only pyserial and the standard library are used; OS tools (lsof, ioreg, PowerShell) are run
through `subprocess` with a deadline, and every runner is injectable.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLATFORM: str = sys.platform

_CREATE_NO_WINDOW = 0x08000000

#: runner(argv) -> the command's stdout; raises OSError when the tool is missing
Runner = Callable[[list[str]], str]


def system() -> str:
    """'windows', 'macos' or 'linux' ('posix' for other Unixes, treated like Linux)."""
    if PLATFORM.startswith(("win32", "cygwin")):
        return "windows"
    if PLATFORM == "darwin":
        return "macos"
    return "linux" if PLATFORM.startswith("linux") else "posix"


def _run(argv: list[str], timeout: float = 10.0) -> str:
    # A kernel started from a GUI has no console; without CREATE_NO_WINDOW each PowerShell
    # call would flash one up on Windows.
    flags = _CREATE_NO_WINDOW if system() == "windows" else 0
    done = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                          timeout=timeout, check=False, creationflags=flags)
    return done.stdout


# --- port names -----------------------------------------------------------------------------

_COM = re.compile(r"^(?:\\\\\.\\)?com(\d+)$", re.IGNORECASE)


def is_url(port: str) -> bool:
    return "://" in port


def example_port() -> str:
    """A port name as this OS spells it, for hints."""
    return {"windows": "COM3", "macos": "/dev/cu.usbserial-0001"}.get(system(), "/dev/ttyUSB0")


def normalize_port(port: str, exists: Callable[[str], bool] = os.path.exists) -> str:
    """The name the OS lists `port` under.

    Windows: `com3` and `\\\\.\\COM3` are COM3 (pyserial adds the `\\\\.\\` that COM10 and
    above need by itself). macOS: /dev/tty.X becomes /dev/cu.X when that exists, because
    opening the tty.X side waits for a carrier signal a board never raises.
    """
    if is_url(port):
        return port
    kind = system()
    if kind == "windows":
        match = _COM.match(port.strip())
        return f"COM{int(match.group(1))}" if match else port
    if kind == "macos" and port.startswith("/dev/tty."):
        callout = "/dev/cu." + port[len("/dev/tty."):]
        if exists(callout):
            return callout
    return port


def same_port(a: str, b: str) -> bool:
    if is_url(a) or is_url(b):
        return a == b
    a, b = normalize_port(a), normalize_port(b)
    if system() == "windows":
        return a.upper() == b.upper()
    return a == b or os.path.realpath(a) == os.path.realpath(b)


def prefer_callout(devices: list[str]) -> list[str]:
    """macOS lists a port twice at most (cu.X, tty.X): keep cu.X, drop its tty.X twin."""
    if system() != "macos":
        return devices
    have = set(devices)
    return [d for d in devices
            if not (d.startswith("/dev/tty.") and "/dev/cu." + d[len("/dev/tty."):] in have)]


def is_device_file(port: str) -> bool:
    """Whether `port` is a file whose existence and permissions can be checked before opening.

    Windows COM ports are not files: os.path.exists("COM3") is False for a port that opens.
    """
    return not is_url(port) and system() != "windows"


def port_exists(port: str, lister: Callable[[], Iterable[Any]] | None = None) -> bool:
    """Whether the OS has `port` now (a URL always counts as present).

    `lister` returns ports shaped like pyserial's ListPortInfo (only `.device` is read).
    """
    if is_url(port):
        return True
    if system() == "windows":
        if lister is None:
            from serial.tools.list_ports import comports as lister
        names = {str(p.device).upper() for p in lister()}
        return normalize_port(port).upper() in names
    return os.path.exists(port)


# --- what an open error means ---------------------------------------------------------------

# pyserial raises SerialException(errno, text) on POSIX and SerialException(text) naming the
# Windows error on Windows; the numbers differ between Linux and macOS (EAGAIN is 11 vs 35).
_ERRNO = {
    "macos": {"busy": {16, 35}, "permission": {1, 13}, "missing": {2, 6, 19}},
    "linux": {"busy": {errno.EBUSY, errno.EAGAIN}, "permission": {errno.EACCES, errno.EPERM},
              "missing": {errno.ENOENT, errno.ENXIO, errno.ENODEV}},
}


def classify_open_error(err: BaseException) -> str:
    """'busy', 'permission', 'missing', 'failing' (the driver or device errs), 'refused', or
    'other'."""
    text = str(err)
    code = getattr(err, "errno", None)
    if system() == "windows":
        # Windows gives a COM port to one program at a time and refuses the next with
        # ERROR_ACCESS_DENIED: on Windows "Access is denied" means busy, not permissions.
        if "PermissionError" in text or "Access is denied" in text:
            return "busy"
        if "FileNotFoundError" in text or "cannot find the file" in text:
            return "missing"
        if "semaphore timeout" in text or "not functioning" in text:
            return "failing"
    if "exclusively lock" in text or "Resource busy" in text:
        return "busy"
    table = _ERRNO.get(system(), _ERRNO["linux"])
    if code in table["busy"]:
        return "busy"
    if code in table["permission"] or "Permission denied" in text:
        return "permission"
    if code in table["missing"] or "No such file" in text:
        return "missing"
    if "refused" in text.lower():
        return "refused"
    return "other"


def permission_hint(port: str) -> str:
    if system() == "macos":
        return (f"macOS normally lets every user open {port}; check its permissions with "
                f"ls -l {port}, and use the /dev/cu.* name rather than /dev/tty.*.")
    if system() == "windows":
        return "Close any program using the port, or unplug the board and plug it back in."
    try:
        import grp

        group = grp.getgrgid(os.stat(port).st_gid).gr_name
    except (ImportError, KeyError, OSError):
        group = "dialout"
    return (f"On Linux add yourself to the '{group}' group: sudo usermod -aG {group} $USER, "
            "then log out and back in (or reboot) so the new group applies.")


def missing_hint(port: str) -> str:
    """Where to look for the right port name, in the OS's own words."""
    if system() == "windows":
        return (f"Windows has no {port} now. Device Manager > Ports (COM & LPT) shows which COM "
                "number the board has (it can change with the USB socket); a board under "
                "'Other devices' with a yellow mark lacks its driver (run %doctor).")
    if system() == "macos":
        return ("ls /dev/cu.* lists the ports; a board appears as /dev/cu.usbserial-..., "
                "/dev/cu.wchusbserial... or /dev/cu.usbmodem... when plugged in.")
    return "ls /dev/ttyUSB* /dev/ttyACM* lists the USB serial ports."


def failing_hint(port: str) -> str:
    return (f"Windows reports that the device behind {port} is not working: unplug it and plug "
            "it back in; if it persists, reinstall the USB-serial driver (see %doctor) or try "
            "another cable or USB socket.")


# --- who holds a port -----------------------------------------------------------------------

# What holds a port on a classroom laptop, most likely first.
TYPICAL_HOLDERS = ("a serial monitor (the Arduino IDE's, PuTTY, Tera Term, screen)",
                   "Thonny or Mu", "another notebook's kernel", "esptool or an upload still "
                   "running")


@dataclass
class Holders:
    """Processes holding a port, and whether the OS let us look at all."""

    found: list[tuple[int, str]] = field(default_factory=list)
    can_see: bool = True
    why_not: str = ""


def find_holders(path: str, run: Runner | None = None) -> Holders:
    """Who has `path` open: /proc on Linux, lsof on macOS; Windows does not tell."""
    kind = system()
    if kind == "windows":
        return Holders(can_see=False, why_not="Windows does not say which program")
    if kind == "macos":
        return _lsof_holders(path, run or _run)
    return Holders(_proc_holders(path))


def _lsof_holders(path: str, run: Runner) -> Holders:
    try:
        out = run(["lsof", "-w", "-F", "pc", "--", path])
    except (OSError, subprocess.TimeoutExpired):
        return Holders(can_see=False,
                       why_not="macOS did not say which program (lsof is not available)")
    found: list[tuple[int, str]] = []
    pid = None
    for line in out.splitlines():
        if line.startswith("p") and line[1:].isdigit():
            pid = int(line[1:])
        elif line.startswith("c") and pid is not None:
            found.append((pid, line[1:]))
            pid = None
    return Holders(sorted(found))


def _resolve(path: str) -> str:
    try:
        return str(Path(path).resolve())
    except (OSError, RuntimeError):
        return path


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _proc_holders(path: str) -> list[tuple[int, str]]:
    # Processes of other users are invisible without root: an empty list means "none seen".
    target = _resolve(path)
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    holders = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(entry / "fd")
        except OSError:
            continue  # another user's process, or it exited while we looked
        for fd in fds:
            try:
                link = os.readlink(entry / "fd" / fd)
            except OSError:
                continue
            if link == target or link == path:
                pid = int(entry.name)
                holders.append((pid, command_name(pid)))
                break
    return sorted(holders)


def busy_text(port: str, holders: Holders) -> tuple[str, str]:
    """(what happened, what to do) for a port another program holds."""
    close = "or %disconnect in the other notebook, then try again."
    if holders.found:
        who = ", ".join(f"{name} (PID {pid})" for pid, name in holders.found)
        return (f"Port {port} is in use by another program: {who}.",
                f"Close that program {close}")
    typical = "Usually it is " + ", ".join(TYPICAL_HOLDERS[:-1]) + " or " + TYPICAL_HOLDERS[-1]
    if not holders.can_see:
        return (f"Port {port} is in use by another program ({holders.why_not}).",
                f"{typical}. Close it {close} If nothing is open, unplug the board and plug it "
                "back in.")
    return (f"Port {port} is in use by another program.",
            f"{typical}. Close it {close}")


# --- USB-serial chips and their drivers -----------------------------------------------------

@dataclass(frozen=True)
class UsbDevice:
    """A USB device as the OS reports it; `problem` is the OS's complaint, None if working."""

    vid: int
    pid: int
    name: str = ""
    problem: str | None = None


# VID -> (chip family, driver to install on Windows, on macOS). macOS 11+ ships drivers for
# CH34x and FTDI, but older macOS and some clones still need the vendor's.
DRIVERS: dict[int, tuple[str, str, str]] = {
    0x1A86: ("WCH CH340/CH341/CH9102",
             "WCH's CH341SER driver (wch-ic.com, search CH341SER.EXE)",
             "WCH's CH34x macOS driver (wch-ic.com, search CH341SER_MAC), then allow it in "
             "System Settings > Privacy & Security"),
    0x10C4: ("Silicon Labs CP210x",
             "the Silicon Labs CP210x USB to UART Bridge VCP driver (silabs.com)",
             "the Silicon Labs CP210x VCP driver for macOS (silabs.com), then allow it in "
             "System Settings > Privacy & Security"),
    0x0403: ("FTDI", "FTDI's VCP driver (ftdichip.com/drivers/vcp-drivers)",
             "FTDI's VCP driver for macOS (ftdichip.com/drivers/vcp-drivers)"),
    0x067B: ("Prolific PL2303", "Prolific's PL2303 driver (prolific.com.tw)",
             "Prolific's PL2303 macOS driver (prolific.com.tw or the Mac App Store)"),
}


def driver_for(vid: int) -> tuple[str, str] | None:
    """(chip family, the driver to install on this OS) for a USB-serial bridge, else None."""
    entry = DRIVERS.get(vid)
    if entry is None:
        return None
    return entry[0], entry[2] if system() == "macos" else entry[1]


# Win32_PnPEntity.ConfigManagerErrorCode values a user meets with USB-serial chips.
_WINDOWS_PROBLEMS = {
    28: "its driver is not installed (Device Manager code 28)",
    10: "the device cannot start (Device Manager code 10; often a fake chip or old driver)",
    22: "the device is disabled in Device Manager (code 22)",
    43: "Windows stopped the device after it reported problems (code 43)",
}

_WINDOWS_QUERY = (
    "Get-CimInstance Win32_PnPEntity -Filter \"PNPDeviceID LIKE 'USB%VID_%'\" | "
    "ForEach-Object { $_.PNPDeviceID + '|' + $_.ConfigManagerErrorCode + '|' + $_.Name }"
)
_WIN_ID = re.compile(r"VID_([0-9A-F]{4})&PID_([0-9A-F]{4})", re.IGNORECASE)
_IOREG_ID = re.compile(r'"(idVendor|idProduct|USB Product Name)" = (\d+|"[^"]*")')


def usb_devices(run: Runner | None = None) -> list[UsbDevice] | None:
    """The USB devices present, with any driver problem; None where the OS gives no view.

    pyserial lists only devices that already have a serial driver, so a chip without one is
    invisible to it. Windows still lists it among PnP devices with a problem code (asked
    through PowerShell's CIM cmdlets); macOS lists it in the I/O Registry (ioreg) with no
    serial port attached. Linux ships these drivers in the kernel, so it is not asked.
    """
    run = run or _run
    try:
        if system() == "windows":
            return _parse_windows_pnp(run(["powershell", "-NoProfile", "-NonInteractive",
                                           "-Command", _WINDOWS_QUERY]))
        if system() == "macos":
            return _parse_ioreg(run(["ioreg", "-p", "IOUSB", "-l", "-w0"]))
    except (OSError, subprocess.TimeoutExpired):
        return None
    return None


def _parse_windows_pnp(text: str) -> list[UsbDevice]:
    devices = []
    for line in text.splitlines():
        parts = line.strip().split("|", 2)
        match = _WIN_ID.search(parts[0])
        if len(parts) < 2 or not match:
            continue
        code = int(parts[1]) if parts[1].strip().isdigit() else 0
        problem = None if code == 0 else _WINDOWS_PROBLEMS.get(
            code, f"Device Manager reports problem code {code}")
        devices.append(UsbDevice(int(match.group(1), 16), int(match.group(2), 16),
                                 parts[2].strip() if len(parts) > 2 else "", problem))
    return devices


def _parse_ioreg(text: str) -> list[UsbDevice]:
    devices = []
    for block in text.split("+-o ")[1:]:
        fields = {key: value.strip('"') for key, value in _IOREG_ID.findall(block)}
        if "idVendor" in fields and "idProduct" in fields:
            devices.append(UsbDevice(int(fields["idVendor"]), int(fields["idProduct"]),
                                     fields.get("USB Product Name", "")))
    return devices


def driver_settings_hint() -> str:
    if system() == "windows":
        return ("then unplug the board and plug it back in; Device Manager > Ports (COM & LPT) "
                "then shows its COM number.")
    return "then unplug the board and plug it back in; it then appears as /dev/cu.*."


# --- drives of drive-copy boards (RPI-RP2, RP2350, MICROBIT) ---------------------------------

_SEM_FAILCRITICALERRORS = 0x0001


#: where macOS mounts volumes, as /Volumes/LABEL ("LABEL 1" when two share a label)
VOLUMES = Path("/Volumes")


def mounted_volumes(kernel32: Any = None) -> list[tuple[str, Path]] | None:
    """(label, mount path) of mounted volumes on Windows and macOS; None on Linux, where the
    caller looks under /media and asks lsblk."""
    if system() == "windows":
        return _windows_volumes(kernel32)
    if system() == "macos":
        if not VOLUMES.is_dir():
            return []
        return [(re.sub(r" \d+$", "", d.name), d) for d in sorted(VOLUMES.iterdir())
                if d.is_dir()]
    return None


def _kernel32() -> Any:
    """Our own kernel32 handle with exact signatures (HANDLE is 64-bit; ctypes' int default
    would truncate it), leaving ctypes.windll.kernel32 as other code expects it."""
    from ctypes import wintypes

    k32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    k32.CreateJobObjectW.restype = wintypes.HANDLE
    k32.CreateJobObjectW.argtypes = [ctypes.c_void_p, wintypes.LPCWSTR]
    k32.SetInformationJobObject.argtypes = [wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p,
                                            wintypes.DWORD]
    k32.AssignProcessToJobObject.argtypes = [wintypes.HANDLE, wintypes.HANDLE]
    k32.CloseHandle.argtypes = [wintypes.HANDLE]
    k32.GetLogicalDrives.restype = wintypes.DWORD
    k32.SetErrorMode.restype = wintypes.UINT
    k32.SetErrorMode.argtypes = [wintypes.UINT]
    return k32


def _windows_volumes(kernel32: Any = None) -> list[tuple[str, Path]]:
    k32 = kernel32 if kernel32 is not None else _kernel32()
    found = []
    # An empty card reader or DVD drive would pop up "There is no disk in the drive" without
    # this error mode.
    previous = k32.SetErrorMode(_SEM_FAILCRITICALERRORS)
    try:
        mask = k32.GetLogicalDrives()
        for index in range(26):
            if not mask & (1 << index):
                continue
            root = f"{chr(ord('A') + index)}:\\"
            label = ctypes.create_unicode_buffer(261)
            if k32.GetVolumeInformationW(ctypes.c_wchar_p(root), label, 261, None, None, None,
                                         None, 0):
                found.append((label.value, Path(root)))
    finally:
        k32.SetErrorMode(previous)
    return found


# --- Jupyter's interrupt --------------------------------------------------------------------


def deliver_interrupt_message() -> bool:
    """Handle a message-mode interrupt here where ipykernel does not; True if handled.

    On Windows ipykernel answers an interrupt_request with "Interrupt message not supported
    on Windows" and does nothing. interrupt_main(SIGINT) runs the main thread's SIGINT
    handler (Python 3.10+), exactly what the signal mode and its Windows interrupt event do.
    """
    if system() != "windows":
        return False
    import _thread

    _thread.interrupt_main(signal.SIGINT)
    return True


# --- a child process that ends with ours (the emulated board's QEMU) -------------------------

_CREATE_NEW_PROCESS_GROUP = 0x00000200
_JOB_OBJECT_EXTENDED_LIMIT_INFORMATION = 9
_JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000


def _die_with_parent() -> None:
    """Linux, in the child before exec: SIGTERM it when the process that started it ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before the signal was armed
        os._exit(1)


def child_popen_options() -> dict[str, Any]:
    """subprocess.Popen options for a child that must survive Ctrl-C and die with us.

    A group/session of its own keeps Jupyter's interrupt (sent to the kernel's process group)
    from killing the board. Linux adds the parent-death signal; Windows and macOS are tied
    after start by `tie_to_this_process`.
    """
    if system() == "windows":
        return {"creationflags": _CREATE_NEW_PROCESS_GROUP}
    if system() == "linux":
        return {"start_new_session": True, "preexec_fn": _die_with_parent}
    return {"start_new_session": True}


class Tie:
    """What ties a child to this process; `release()` before stopping the child on purpose."""

    def release(self) -> None:
        pass


class _JobTie(Tie):
    """Windows: the child is in a job object that kills it when our last handle closes, which
    Windows does when this process ends, however it ends."""

    def __init__(self, handle: Any, kernel32: Any) -> None:
        self.handle = handle
        self.kernel32 = kernel32

    def release(self) -> None:
        if self.handle:
            # Closing the handle kills what is still in the job: the caller is stopping it.
            self.kernel32.CloseHandle(self.handle)
            self.handle = None


class _WatchdogTie(Tie):
    """macOS (no parent-death signal): a small watchdog process reads a pipe whose only
    writer is us. When we die the pipe ends, and it terminates the child. A release byte
    tells it to leave instead."""

    def __init__(self, writer: int, watchdog: subprocess.Popen[bytes]) -> None:
        self.writer = writer
        self.watchdog = watchdog

    def release(self) -> None:
        if self.writer >= 0:
            try:
                os.write(self.writer, b"r")
                os.close(self.writer)
            except OSError:
                pass  # the watchdog is gone already: nothing to release
            self.writer = -1
            try:
                self.watchdog.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.watchdog.kill()


# Polls so that it also leaves soon after the child ends (its PID could later be reused).
WATCHDOG = """\
import os, select, signal, sys
pid = int(sys.argv[1])
while True:
    ready, _, _ = select.select([0], [], [], 1.0)
    if ready:
        if os.read(0, 1) != b"r":
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        break
    try:
        os.kill(pid, 0)
    except OSError:
        break
"""


def tie_to_this_process(proc: subprocess.Popen[Any], kernel32: Any = None) -> Tie:
    """Make `proc` end when this process ends, on every OS."""
    if system() == "windows":
        return _job_tie(proc, kernel32)
    if system() == "macos":
        return watchdog_tie(proc.pid)
    return Tie()  # Linux: the parent-death signal armed in child_popen_options


def watchdog_tie(pid: int) -> Tie:
    reader, writer = os.pipe()  # both non-inheritable: only the watchdog gets `reader`
    watchdog = subprocess.Popen([sys.executable, "-c", WATCHDOG, str(pid)], stdin=reader,
                                start_new_session=True, close_fds=True)
    os.close(reader)
    return _WatchdogTie(writer, watchdog)


class _ExtendedLimits(ctypes.Structure):
    # JOBOBJECT_EXTENDED_LIMIT_INFORMATION: the basic limits, IO counters, and four sizes.
    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_int64), ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", ctypes.c_uint32), ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t), ("ActiveProcessLimit", ctypes.c_uint32),
        ("Affinity", ctypes.c_size_t), ("PriorityClass", ctypes.c_uint32),
        ("SchedulingClass", ctypes.c_uint32),
        ("IoCounters", ctypes.c_uint64 * 6),
        ("ProcessMemoryLimit", ctypes.c_size_t), ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t), ("PeakJobMemoryUsed", ctypes.c_size_t),
    ]


def _job_tie(proc: subprocess.Popen[Any], kernel32: Any = None) -> Tie:
    k32 = kernel32 if kernel32 is not None else _kernel32()
    job = k32.CreateJobObjectW(None, None)
    if not job:
        return Tie()  # no job object: the child outlives a killed kernel, as before
    limits = _ExtendedLimits()
    limits.LimitFlags = _JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    ok = k32.SetInformationJobObject(job, _JOB_OBJECT_EXTENDED_LIMIT_INFORMATION,
                                     ctypes.byref(limits), ctypes.sizeof(limits))
    handle = getattr(proc, "_handle", None)  # Popen's process handle on Windows
    if not ok or not k32.AssignProcessToJobObject(job, handle):
        k32.CloseHandle(job)
        return Tie()
    return _JobTie(job, k32)


# --- QEMU -----------------------------------------------------------------------------------

# Where installers put QEMU when it is not on PATH: Jupyter started from the Dock or the Start
# menu does not see the shell's PATH.
_QEMU_PLACES = {
    "windows": (r"C:\Program Files\qemu\qemu-system-arm.exe",),
    "macos": ("/opt/homebrew/bin/qemu-system-arm", "/usr/local/bin/qemu-system-arm",
              "/opt/local/bin/qemu-system-arm"),
}


def find_qemu_binary(which: Callable[[str], str | None] | None = None,
                     exists: Callable[[str], bool] = os.path.exists) -> str | None:
    found = (which or shutil.which)("qemu-system-arm")  # looked up now: tests replace it
    if found:
        return found
    return next((p for p in _QEMU_PLACES.get(system(), ()) if exists(p)), None)


def qemu_serial_transport() -> str:
    """How the emulated board's UART and monitor reach us: 'pty' (a pseudo-terminal and a
    unix-socket monitor, Linux and macOS) or 'tcp' (loopback TCP ports, Windows: its QEMU has
    neither `-serial pty` nor unix-socket monitors)."""
    return "tcp" if system() == "windows" else "pty"


def qemu_flash_backend() -> str:
    """How the modern emulated board's flash file reaches QEMU: 'file' (memory-backend-file
    maps it, so every write lands in the file at once) or 'ram' (Windows: QEMU's
    memory-backend-file is POSIX-only there, so the image is loaded into RAM at start and
    saved back through the monitor at a hard reset and at stop)."""
    return "ram" if system() == "windows" else "file"


def microbit_firmware_places() -> tuple[Path, ...]:
    """Where an OS package puts a micro:bit V1 MicroPython .hex (Debian's
    firmware-microbit-micropython); Homebrew and the Windows installers ship none."""
    if system() in ("linux", "posix"):
        return (Path("/usr/share/firmware-microbit-micropython/firmware.hex"),)
    return ()


def microbit_firmware_hint(env_name: str, python: str | None = None) -> str:
    """What to do when no micro:bit firmware is found, in this OS's own commands. `python` is
    the kernel's interpreter (pip must install into the kernel's environment)."""
    py = python or sys.executable
    pip = f'"{py}" -m pip install uflash' if " " in py else f"{py} -m pip install uflash"
    bundled = f"{pip} (it carries MicroPython for the micro:bit V1, which mpkernel then uses)"
    if system() == "windows":
        return (f"Install it with: {bundled}, then restart the kernel. Or set {env_name} to a "
                "micro:bit V1 MicroPython .hex in the window that starts Jupyter: "
                f"set {env_name}=C:\\path\\to\\firmware.hex (PowerShell: "
                f"$env:{env_name}=\"C:\\path\\to\\firmware.hex\").")
    if system() == "macos":
        return (f"Install it with: {bundled}, then restart the kernel. Or set {env_name} to a "
                "micro:bit V1 MicroPython .hex in the shell that starts Jupyter: "
                f"export {env_name}=/path/to/firmware.hex")
    return ("Install it with: sudo apt-get install firmware-microbit-micropython "
            f"(Debian/Ubuntu) or {bundled}, then restart the kernel. Or set {env_name} to a "
            "micro:bit V1 MicroPython .hex in the shell that starts Jupyter: "
            f"export {env_name}=/path/to/firmware.hex")


def qemu_install_hint(linux_hint: str) -> str:
    """How to get QEMU on this OS (`linux_hint` is the package manager's line for Linux)."""
    if system() == "windows":
        return ("Install QEMU for Windows with the installer linked from qemu.org/download "
                "(qemu.weilnetz.de/w64), or connect a real board with %connect COM3.")
    if system() == "macos":
        return ("Install QEMU with Homebrew: brew install qemu, or connect a real board with "
                "%connect /dev/cu.usbmodem...")
    return linux_hint
