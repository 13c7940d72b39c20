"""`%doctor` / `mpkernel doctor PORT`: say in plain words why a connection fails.

The answer to "the IDE says burn firmware, but my board is fine": most failing connections
are a wrong port, a missing group membership, another program holding the port, a running
program, or a wrong baud rate, and none of those needs new firmware.

Steps, each bounded by a deadline so the doctor never hangs:
1. the path exists (else list the ports that do), 2. permission, 3. nobody else holds it,
4. listen passively, 5. Ctrl-C twice and Ctrl-B until a prompt, 6. if the bytes look like
noise or nothing came, try the common baud rates, 7. name what answered.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from mpkernel import platform_support as plat
from mpkernel.board import ports as portlib
from mpkernel.errors import MpkernelError

COMMON_BAUDS = (115200, 9600, 57600, 74880, 230400, 460800, 921600)

# An opener is `opener(url, baudrate, timeout)` -> an open pyserial-like object.
Opener = Callable[[str, int, float], Any]
#: usb() -> the USB devices the OS reports, or None where it gives no view
UsbLister = Callable[[], "list[plat.UsbDevice] | None"]


class Verdict(str, Enum):
    OK = "ok"
    BUSY_STOPPED = "busy-stopped"
    SWALLOWS_CTRL_C = "swallows-ctrl-c"
    SILENT = "silent"
    WRONG_BAUD = "wrong-baud"
    BOOTLOADER = "bootloader"
    NO_FIRMWARE = "no-firmware"
    OTHER_FIRMWARE = "other-firmware"
    MISSING = "missing"
    PERMISSION = "permission"
    IN_USE = "in-use"
    OPEN_FAILED = "open-failed"
    NO_DRIVER = "no-driver"


@dataclass(frozen=True)
class Timing:
    """How long each step may take (seconds). Tests shrink these; the defaults fit real boards.

    `listen` exceeds 1 s because the emulated board's pty starts passing bytes about 1 s after
    it is opened, and a USB-UART board may print its boot log when the port opens.
    """

    listen: float = 1.5
    answer: float = 2.5
    round: float = 0.6
    settle: float = 0.5
    probe: float = 0.7
    read_timeout: float = 0.05


@dataclass
class Diagnosis:
    port: str
    verdict: Verdict
    summary: str
    next_step: str
    findings: list[str] = field(default_factory=list)
    baudrate: int | None = None

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    def text(self) -> str:
        lines = [f"Doctor: {self.port}"]
        lines += [f"  - {f}" for f in self.findings]
        lines.append(f"Verdict: {self.summary}")
        if self.next_step:
            lines.append(f"Next: {self.next_step}")
        return "\n".join(lines)


# --- what the bytes say ----------------------------------------------------------------------

_PROMPT = b">>> "
_BANNER = re.compile(rb"MicroPython (v[^\s;,]+)[^\r\n]*")
_CIRCUITPY = re.compile(rb"Adafruit CircuitPython [^\r\n]*")
_ROM_DOWNLOAD = (b"waiting for download", b"DOWNLOAD_BOOT", b"DOWNLOAD(USB")
_ROM_BOOT = (b"ets Jun  8 2016", b"ets Jul 29 2019", b"ets Jan  8 2013", b"rst:0x", b"boot:0x",
             b"ESP-ROM:")
_EMPTY_FLASH = (b"invalid header", b"flash read err")


def noise_ratio(data: bytes) -> float:
    """Share of bytes that are neither printable text nor line control: high at a wrong baud."""
    if not data:
        return 0.0
    text = data.decode("utf-8", errors="replace")
    bad = sum(1 for ch in text if ch == "\ufffd" or (ord(ch) < 32 and ch not in "\r\n\t\x1b"))
    return bad / max(len(text), 1)


def looks_like_noise(data: bytes) -> bool:
    return len(data) >= 8 and noise_ratio(data) > 0.3


def _sample(data: bytes, limit: int = 120) -> str:
    """A short quote of what arrived: text lines joined with ' | ', or hex when it is noise."""
    if looks_like_noise(data):
        return data[:24].hex(" ") + (" ..." if len(data) > 24 else "")
    text = "".join(ch for ch in data.decode("utf-8", errors="replace")
                   if ch == "\n" or ch >= " ")
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    joined = " | ".join(lines)
    return joined if len(joined) <= limit else joined[: limit - 3] + "..."


def _has_micropython(data: bytes) -> bool:
    return _PROMPT in data or _BANNER.search(data) is not None


# --- a bounded reader ------------------------------------------------------------------------


@dataclass
class _Heard:
    """Bytes read in one window, with the arrival time of each chunk relative to its start."""

    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    length: float = 0.0

    @property
    def data(self) -> bytes:
        return b"".join(c for _, c in self.chunks)

    def still_coming(self) -> bool:
        """Bytes arrived in at least two chunks, the last within the final third of the window.

        That separates a program printing on and on from one burst (a boot log, a banner).
        """
        if len(self.chunks) < 2:
            return False
        return self.chunks[-1][0] >= self.length * 2 / 3


def _read_window(ser: Any, seconds: float, until: Callable[[bytes], bool] | None = None) -> _Heard:
    heard = _Heard()
    start = time.monotonic()
    deadline = start + seconds
    seen = b""
    while time.monotonic() < deadline:
        # read() returns after the port's short timeout, so the deadline is checked often.
        chunk = ser.read(max(1, getattr(ser, "in_waiting", 0) or 0))
        if chunk:
            heard.chunks.append((time.monotonic() - start, chunk))
            seen += chunk
            if until is not None and until(seen):
                break
    heard.length = seconds
    return heard


def _prompt_after_banner(data: bytes) -> bool:
    return data.rstrip(b" ").endswith(b">>>")


def _banner_and_prompt(data: bytes) -> bool:
    return _prompt_after_banner(data) and (
        _BANNER.search(data) is not None or _CIRCUITPY.search(data) is not None)


def _knock(ser: Any, timing: Timing, total: float) -> bytes:
    """Ctrl-C twice then Ctrl-B, repeated until a friendly prompt answers or `total` passes.

    Ctrl-C stops a running program; Ctrl-B leaves the raw REPL and prints the banner, which
    names the firmware. Repeating covers a pty that passes input only ~1 s after opening.
    """
    got = b""
    deadline = time.monotonic() + total
    while time.monotonic() < deadline:
        ser.write(b"\x03\x03")
        got += _read_window(ser, min(0.15, timing.round / 4)).data
        ser.write(b"\x02")
        left = max(0.0, min(timing.round, deadline - time.monotonic()))
        got += _read_window(ser, left, until=_banner_and_prompt).data
        if _prompt_after_banner(got):
            break
    return got


# --- opening ---------------------------------------------------------------------------------


def open_port(url: str, baudrate: int, timeout: float) -> Any:
    """Open a device path exclusively, or any pyserial URL (socket://, rfc2217://) plainly."""
    import serial

    url = plat.normalize_port(url)
    if "://" in url:
        # exclusive is a flock on a local file descriptor; network URLs have none.
        return serial.serial_for_url(url, baudrate=baudrate, timeout=timeout)
    return serial.serial_for_url(url, baudrate=baudrate, timeout=timeout, exclusive=True)


def _is_local(port: str) -> bool:
    return "://" not in port


def _ports_listing(lister: portlib.Lister | None) -> str:
    try:
        found = portlib.list_ports(lister)
    except Exception as err:  # listing is a courtesy here; never let it mask the diagnosis
        return f"(could not list ports: {err})"
    return portlib.format_ports(found)


# --- the diagnosis ---------------------------------------------------------------------------


def diagnose(
    port: str,
    baudrate: int = 115200,
    *,
    opener: Opener | None = None,
    timing: Timing | None = None,
    lister: portlib.Lister | None = None,
    usb: UsbLister | None = None,
) -> Diagnosis:
    """Check `port` step by step and return findings, a verdict and the next step.

    `lister` and `usb` stand in for pyserial's port list and the OS's USB device list.
    """
    if port == "sim" or port.startswith("sim:"):
        return _diagnose_sim(baudrate, opener=opener, timing=timing, name=port.partition(":")[2])
    timing = timing or Timing()
    opener = opener or open_port
    findings: list[str] = []

    def done(verdict: Verdict, summary: str, next_step: str = "", rate: int | None = None):
        return Diagnosis(port, verdict, summary, next_step, findings, rate)

    if _is_local(port):
        port = plat.normalize_port(port)
    if plat.is_device_file(port):
        if not os.path.exists(port):
            return _missing(port, f"{port} does not exist.", lister, usb, findings)
        findings.append(f"{port} exists")
        if not os.access(port, os.R_OK | os.W_OK):
            return done(Verdict.PERMISSION, f"Permission denied on {port}.",
                        plat.permission_hint(port))
        seen = plat.find_holders(port)
        seen.found = [h for h in seen.found if h[0] != os.getpid()]
        if seen.found:
            summary, hint = plat.busy_text(port, seen)
            return done(Verdict.IN_USE, summary, hint)
        findings.append("no other program has it open" if seen.can_see
                        else f"could not check who holds it: {seen.why_not}")

    try:
        ser = opener(port, baudrate, timing.read_timeout)
    except (OSError, ValueError) as err:
        return _open_failure(port, err, findings, done, lister, usb)
    findings.append(f"opened at {baudrate} baud")
    try:
        return _converse(ser, port, baudrate, timing, findings, done)
    finally:
        try:
            ser.close()
        except OSError:
            findings.append("closing the port failed (it may have vanished)")


def _open_failure(port: str, err: Exception, findings: list[str], done: Callable,
                  lister: portlib.Lister | None, usb: UsbLister | None) -> Diagnosis:
    kind = plat.classify_open_error(err)
    if kind == "permission":
        return done(Verdict.PERMISSION, f"Permission denied on {port}.",
                    plat.permission_hint(port))
    if kind == "busy" or (kind == "other" and "lock" in str(err).lower()):
        seen = plat.find_holders(port) if _is_local(port) else plat.Holders(can_see=False)
        seen.found = [h for h in seen.found if h[0] != os.getpid()]
        summary, hint = plat.busy_text(port, seen)
        return done(Verdict.IN_USE, summary, hint)
    if kind == "missing":
        return _missing(port, f"{port} vanished or has no device behind it ({err}).", lister,
                        usb, findings)
    if kind == "failing":
        return done(Verdict.OPEN_FAILED, f"{port} could not be opened: {err}",
                    plat.failing_hint(port))
    return done(Verdict.OPEN_FAILED, f"{port} could not be opened: {err}",
                "Check the port name (run %ports) and the cable; for a network port, that the "
                "server is running.")


def _missing(port: str, summary: str, lister: portlib.Lister | None, usb: UsbLister | None,
             findings: list[str]) -> Diagnosis:
    """The port is not there: a chip without its driver explains that best, if there is one."""
    drivers = check_drivers(lister, usb)
    if drivers is not None:
        drivers.port = port
        drivers.findings[:0] = findings + [summary]
        return drivers
    return Diagnosis(port, Verdict.MISSING, summary,
                     plat.missing_hint(port) + "\nPorts that exist:\n" + _ports_listing(lister)
                     + "\n" + portlib.choose_hint(), findings)


def check_drivers(lister: portlib.Lister | None = None,
                  usb: UsbLister | None = None) -> Diagnosis | None:
    """A NO_DRIVER diagnosis if a USB-serial chip is plugged in but has no working driver.

    The OS's device list is the only witness: pyserial lists only ports that have a driver.
    On Linux (drivers are in the kernel) nothing is asked and the answer is None.
    """
    devices = (usb or plat.usb_devices)()
    if not devices:
        return None
    try:
        listed = {(p.identity.vid, p.identity.pid) for p in portlib.list_ports(lister)
                  if p.identity is not None}
    except Exception:  # noqa: BLE001 - without a port list, only the OS's problem codes count
        listed = set()
    findings, installs = [], []
    for dev in devices:
        driver = plat.driver_for(dev.vid)
        if driver is None:
            continue
        chip, install = driver
        if dev.problem:
            why = dev.problem
        elif (dev.vid, dev.pid) not in listed:
            why = "no serial port appeared for it, so its driver is missing"
        else:
            continue
        name = f" ({dev.name})" if dev.name else ""
        findings.append(f"a {chip} USB-serial chip{name} [{dev.vid:04x}:{dev.pid:04x}] is "
                        f"plugged in, but {why}")
        if install not in installs:
            installs.append(install)
    if not findings:
        return None
    return Diagnosis("USB", Verdict.NO_DRIVER, findings[0][0].upper() + findings[0][1:] + ".",
                     "Install " + " and ".join(installs) + ", " + plat.driver_settings_hint(),
                     findings[1:])


def _converse(ser: Any, port: str, baudrate: int, timing: Timing, findings: list[str],
              done: Callable) -> Diagnosis:
    passive = _read_window(ser, timing.listen)
    if passive.data:
        running = " and kept coming" if passive.still_coming() else ""
        findings.append(f"listening: {len(passive.data)} bytes arrived unasked{running}: "
                        f"{_sample(passive.data)!r}")
    else:
        findings.append(f"listening: nothing arrived unasked in {timing.listen:.1f} s")

    if any(sig in passive.data for sig in _ROM_DOWNLOAD):
        # The ROM waits for esptool and ignores Ctrl-C: knocking would only cost time.
        return _rom_verdict(passive.data, done, baudrate)  # type: ignore[return-value]

    answer = _knock(ser, timing, timing.answer)
    if answer:
        findings.append(f"after Ctrl-C, Ctrl-C, Ctrl-B: {_sample(answer)!r}")
    else:
        findings.append("after Ctrl-C, Ctrl-C, Ctrl-B: no answer")
    everything = passive.data + answer

    circuit = _CIRCUITPY.search(everything)
    if circuit:
        return done(Verdict.OTHER_FIRMWARE,
                    f"The board runs CircuitPython, not MicroPython ({circuit.group().decode()}).",
                    "mpkernel talks to MicroPython. Use CircuitPython's own tools, or flash "
                    "MicroPython (%flash) if you want MicroPython on it.")
    if _has_micropython(answer):
        banner = _BANNER.search(everything)
        if banner:
            findings.append(f"banner: {banner.group().decode(errors='replace').strip()}")
        after = _read_window(ser, timing.settle)
        if after.data and not _has_micropython(after.data):
            findings.append(f"output continued after the prompt: {_sample(after.data)!r} "
                            "(a timer or thread may be printing)")
        if b"KeyboardInterrupt" in answer or passive.still_coming():
            return done(Verdict.BUSY_STOPPED,
                        "MicroPython found but busy (it was running a program); Ctrl-C "
                        "stopped it.",
                        "Connect now. If the program starts at every boot (main.py), the "
                        "kernel will stop it again on connect.", baudrate)
        return done(Verdict.OK, "MicroPython is fine: it answered at the prompt.",
                    "Connect with %connect " + port, baudrate)

    rom = _rom_verdict(everything, done, baudrate)
    if rom is not None:
        return rom

    if looks_like_noise(everything):
        findings.append(f"{noise_ratio(everything):.0%} of the bytes are not text: "
                        "that is what a wrong baud rate looks like")
        return _scan_bauds(ser, port, baudrate, timing, findings, done, noisy=True)

    still = _read_window(ser, timing.settle)
    if still.data and (passive.still_coming() or still.still_coming()):
        findings.append(f"output kept coming after Ctrl-C: {_sample(still.data)!r}")
        return done(Verdict.SWALLOWS_CTRL_C,
                    "A program keeps running and ignores Ctrl-C: most likely a MicroPython "
                    "program that catches KeyboardInterrupt (a bare `except:` in a loop), or "
                    "another firmware (an Arduino sketch, say).",
                    "Use %rescue: it resets the board and sends Ctrl-C from the first moment "
                    "of boot.", baudrate)

    # Last, before guessing at baud rates: an AT-command firmware stays silent until asked.
    at = _probe_at(ser, timing)
    if at is not None:
        return done(Verdict.OTHER_FIRMWARE, f"The board runs an AT-command firmware ({at}), "
                    "not MicroPython.",
                    "Flash MicroPython (%flash) if you want a Python REPL on it.", baudrate)
    if everything:
        return done(Verdict.OTHER_FIRMWARE,
                    "The board sends text but no MicroPython prompt: it runs another firmware "
                    f"(an Arduino sketch, say). It printed: {_sample(everything)!r}",
                    "If this is the board you meant, flash MicroPython (%flash); otherwise "
                    "pick another port (%ports).", baudrate)

    findings.append(f"nothing at {baudrate} baud; trying the common rates")
    return _scan_bauds(ser, port, baudrate, timing, findings, done, noisy=False)


def _rom_verdict(data: bytes, done: Callable, baudrate: int) -> Diagnosis | None:
    if any(sig in data for sig in _ROM_DOWNLOAD):
        return done(Verdict.BOOTLOADER,
                    "The board is in its ROM bootloader (download mode), not running "
                    "MicroPython.",
                    "Press reset (EN/RST) without holding BOOT (IO0); the firmware is "
                    "probably fine.", baudrate)
    if any(sig in data for sig in _ROM_BOOT):
        empty = any(sig in data for sig in _EMPTY_FLASH)
        what = ("the flash looks empty or unreadable" if empty
                else "the firmware may be missing, built for another chip, or crashing at boot")
        return done(Verdict.NO_FIRMWARE,
                    f"The chip's ROM starts but no MicroPython answers: {what}.",
                    "Here flashing MicroPython (%flash) is the right move.", baudrate)
    return None


def _probe_at(ser: Any, timing: Timing) -> str | None:
    """Send one `AT` line; an `OK` answer means an AT-command firmware (ESP-AT, a modem)."""
    ser.reset_input_buffer()
    ser.write(b"AT\r\n")
    heard = _read_window(ser, timing.settle, until=lambda d: b"OK" in d or b"ERROR" in d)
    return "it answered OK to AT" if b"OK" in heard.data.split(b"AT", 1)[-1] else None


def _scan_bauds(ser: Any, port: str, baudrate: int, timing: Timing, findings: list[str],
                done: Callable, *, noisy: bool) -> Diagnosis:
    readable: list[int] = []
    for rate in COMMON_BAUDS:
        if rate == baudrate:
            continue
        try:
            ser.baudrate = rate  # reconfigure in place: reopening could pulse DTR/RTS
            ser.reset_input_buffer()
        except (OSError, ValueError) as err:
            findings.append(f"{rate} baud: cannot set ({err})")
            continue
        heard = _knock(ser, timing, timing.probe)
        if _has_micropython(heard):
            findings.append(f"{rate} baud: MicroPython answered")
            return done(Verdict.WRONG_BAUD,
                        f"MicroPython answers at {rate} baud, not {baudrate}.",
                        f"Use {rate} baud: --MicroPythonKernel.baudrate={rate} for the kernel, "
                        f"mpkernel doctor {port} --baud {rate} to check again.", rate)
        rom = _rom_verdict(heard, done, rate)
        if rom is not None:
            findings.append(f"{rate} baud: ROM boot messages {_sample(heard)!r}")
            return rom
        if heard and not looks_like_noise(heard):
            readable.append(rate)
    if readable:
        findings.append("readable text but no prompt at " + ", ".join(map(str, readable)))
    if noisy:
        return done(Verdict.WRONG_BAUD,
                    f"Bytes arrive but do not read as text at {baudrate} baud, and no common "
                    "rate produced a MicroPython prompt.",
                    "The board probably runs another firmware at an unusual rate; check what "
                    "it is meant to run, or flash MicroPython (%flash).")
    return done(Verdict.SILENT,
                "Nothing received: a wrong port, a board without power, or a port that is "
                "not a REPL (a debug probe's second UART, say).",
                "Check %ports for another candidate, try the board's reset button while the "
                "doctor listens, and use a data cable, not a charge-only one.")


def _diagnose_sim(baudrate: int, *, opener: Opener | None, timing: Timing | None,
                  name: str = "") -> Diagnosis:
    """`sim` / `sim:NAME` name no device: check that a fresh emulated board starts and answers.

    The modern board gets a fresh, temporary filesystem: the user's own flash file may be in
    use by the kernel's board (one running board per file), and a check must not touch it.
    """
    from mpkernel.sim import ModernBoard, simulator_for

    port = f"sim:{name}" if name else "sim"
    try:
        board = simulator_for(name)
        if isinstance(board, ModernBoard):
            board = ModernBoard(fresh=True)
        with board as sim:
            diag = diagnose(sim.pty_path, baudrate, opener=opener, timing=timing)
    except MpkernelError as err:
        return Diagnosis(port, Verdict.OPEN_FAILED, f"The emulated board cannot start: {err}",
                         err.hint)
    diag.port = port
    diag.findings.insert(0, f"started a fresh copy of {sim.label} on {sim.pty_path}")
    if diag.ok:
        # That pty is gone with the check's copy; the user connects by the board's name.
        diag.next_step = f"Connect with %connect {port}"
    return diag


def cli_main(port: str | None, baudrate: int = 115200) -> int:
    """`mpkernel doctor [PORT]`: print the diagnosis; exit 0 only if MicroPython is fine."""
    if not port:
        try:
            port = portlib.pick_port()
        except MpkernelError as err:
            print(err.user_text())
            drivers = check_drivers()
            if drivers is not None:
                print(drivers.text())
            return 1
    diag = diagnose(port, baudrate)
    print(diag.text())
    return 0 if diag.ok else 1
