"""Putting MicroPython on a board: esptool 5 in-process for ESP chips, a file copy for drives.

ESP: `flash_esp(port, firmware)` opens the port itself (so it is released whatever fails),
detects the chip, checks the image's header against it before anything is erased, uploads
the flasher stub, optionally erases, writes compressed with MD5 verification and hard-resets.
esptool's output goes through a TemplateLogger (`esptool.logger.log.set_logger`) into one
progress bar plus a one-line chip description; the rest is kept to explain a failure.
A transport failure is retried once at 115200 baud before giving up.

Drives: a `.uf2` goes to an RP2040/RP2350 in BOOTSEL mode (drive RPI-RP2 / RP2350), a `.hex`
to a micro:bit (drive MICROBIT); the drive is found by its volume label.

Both return a FlashResult whose summary states the size and SHA-256 of what was written.
Choosing the port, releasing and reattaching the REPL is the front end's job
(mpkernel/flash/frontend.py, shared by `%flash` and `mpkernel flash`).
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import serial

from mpkernel import platform_support as plat
from mpkernel.display import Progress, TextProgress
from mpkernel.errors import MpkernelError
from mpkernel.flash import firmware as fw

ROM_BAUD = 115200
DEFAULT_BAUD = 460800
CHIP_CHOICES = ("auto", "esp32", "esp32s2", "esp32s3", "esp32c3", "esp32c6", "esp8266")
ESP_IMAGE_MAGIC = 0xE9
# Where MicroPython's combined image (bootloader + partition table + app) starts: the ROM's
# second-stage bootloader offset. Checked against esptool's BOOTLOADER_FLASH_OFFSET per target
# (esptool/targets/*.py); ESP32-C5/P4 and newer use 0x2000 but have no MicroPython release yet.
OFFSETS = {"esp32": 0x1000, "esp32s2": 0x1000, "esp32s3": 0x0, "esp32c3": 0x0,
           "esp32c6": 0x0, "esp32c2": 0x0, "esp32h2": 0x0, "esp8266": 0x0, "esp32p4": 0x2000}
# The chip id an ESP-IDF image carries in its extended header (esp_image_header_t.chip_id).
IMAGE_CHIP_IDS = {"esp32": 0, "esp32s2": 2, "esp32c3": 5, "esp32s3": 9, "esp32c2": 12,
                  "esp32c6": 13, "esp32h2": 16, "esp32p4": 18}
CHIP_NAMES = {k: k.upper().replace("ESP32", "ESP32-").rstrip("-") for k in OFFSETS}
CHIP_NAMES["esp8266"] = "ESP8266"
DRIVE_LABELS = {".uf2": ("RPI-RP2", "RP2350"), ".hex": ("MICROBIT", "MINI")}
# Where Linux desktops mount removable drives: /media/LABEL, /media/USER/LABEL (Debian,
# Ubuntu), /run/media/USER/LABEL (Fedora, Arch). Windows and macOS: platform_support.
DRIVE_ROOTS = (Path("/media"), Path("/run/media"))

BOOT_HINT = (
    "Put the board in its bootloader by hand: hold the BOOT (IO0) button, press and release "
    "RESET (EN), release BOOT, then run the flash again. If it still fails, try --baud 115200 "
    "and a USB cable that carries data (not a charge-only cable)."
)

# esptool's logger is process-wide: one flash at a time.
_FLASH_LOCK = threading.Lock()


class FlashError(MpkernelError):
    """Flashing failed; `retryable` if trying again (slower) may help."""

    def __init__(self, message: str, hint: str = "", retryable: bool = False) -> None:
        super().__init__(message, hint)
        self.retryable = retryable


@dataclass
class FlashResult:
    """What was written: to an ESP's flash (chip, offset) or as a file on a drive."""

    firmware: str             # the file's name ("the firmware" for bytes given directly)
    size: int
    sha256: str               # of exactly the bytes written
    chip: str = ""            # esptool's key, e.g. "esp32s3"; "" for a drive copy
    description: str = ""     # "ESP32: ESP32-D0WD-V3 (revision v3.0), 4MB flash, MAC 24:62:..."
    offset: int | None = None
    drive: Path | None = None
    verified: bool = False    # esptool read the region back and its MD5 matched

    def summary(self) -> str:
        what = f"{self.firmware} ({self.size:,} bytes, SHA-256 {self.sha256})"
        if self.drive is not None:
            return f"Copied {what} to {self.drive}."
        check = ("esptool read it back and its MD5 matched" if self.verified
                 else "not read back (this loader cannot compute an MD5)")
        return f"Wrote {what} at {self.offset:#x} on {self.description}; {check}."


def chip_key(chip_name: str) -> str:
    """esptool's CHIP_NAME ("ESP32-S3") -> our key ("esp32s3")."""
    return chip_name.lower().replace("-", "")


def image_chip(data: bytes) -> str | None:
    """The chip an ESP32-family image is built for (from its extended header), else None."""
    if len(data) < 16 or data[0] != ESP_IMAGE_MAGIC or data[8] != 0xEE:
        return None  # ESP8266 images have no extended header; 0xEE is the usual wp_pin byte
    chip_id = int.from_bytes(data[12:14], "little")
    return next((k for k, v in IMAGE_CHIP_IDS.items() if v == chip_id), f"chip id {chip_id}")


def check_image(data: bytes, chip: str, name: str = "the firmware") -> None:
    """Refuse, before anything is erased, a file that is not a flashable image for `chip`."""
    if len(data) < 24 or data[0] != ESP_IMAGE_MAGIC:
        first = f"0x{data[0]:02X}" if data else "nothing"
        raise FlashError(
            f"{name} is not an ESP firmware image: it starts with {first}, an image starts "
            f"with 0x{ESP_IMAGE_MAGIC:02X}. Nothing was written.",
            "Use the .bin from the board's page on micropython.org/download (not .app-bin, "
            ".elf or .uf2), e.g. %flash " + fw.DEFAULT_BOARDS.get(chip, "ESP32_GENERIC"))
    if chip == "esp8266":
        built_for = image_chip(data)
        if built_for is not None:
            raise FlashError(f"{name} is an image for {CHIP_NAMES.get(built_for, built_for)}, "
                             "but the board is an ESP8266. Nothing was written.",
                             "Use an ESP8266 image, e.g. %flash ESP8266_GENERIC")
        return
    chip_id = int.from_bytes(data[12:14], "little")
    if chip in IMAGE_CHIP_IDS and chip_id != IMAGE_CHIP_IDS[chip]:
        built_for = image_chip(data) or f"chip id {chip_id}"
        want = fw.DEFAULT_BOARDS.get(chip, "the board's")
        raise FlashError(
            f"{name} is an image for {CHIP_NAMES.get(built_for, built_for)}, but the board is "
            f"{CHIP_NAMES.get(chip, chip)}. Nothing was written.",
            f"Use the {CHIP_NAMES.get(chip, chip)} firmware, e.g. %flash {want}")


# ---- esptool's output -> the notebook --------------------------------------------------
def _esptool_logger_class() -> type:
    from esptool.logger import TemplateLogger

    class NotebookLogger(TemplateLogger):
        """One progress bar for the write, warnings shown, everything else kept for errors."""

        def __init__(self, write: Callable[[str], None],
                     make_progress: Callable[[str, int], Progress], label: str) -> None:
            self.write = write
            self.make_progress = make_progress
            self.label = label
            self.lines: list[str] = []
            self.bar: Progress | None = None
            self.bar_total = 0

        def print(self, *args: Any, **kwargs: Any) -> None:
            text = kwargs.get("sep", " ").join(str(a) for a in args).strip()
            if text and text.strip("."):
                self.lines.append(text)

        def note(self, message: str) -> None:
            self.lines.append(f"Note: {message}")

        def warning(self, message: str) -> None:
            self.lines.append(f"Warning: {message}")
            if "VID/PID" not in message:  # a URL port has no USB identity: not news
                self.write(f"esptool: {message}\n")

        def error(self, message: str) -> None:
            self.lines.append(f"Error: {message}")

        def stage(self, finish: bool = False) -> None:
            pass

        def set_verbosity(self, verbosity: str) -> None:
            pass

        def progress_bar(self, cur_iter: int, total_iters: int, prefix: str = "",
                         suffix: str = "", bar_length: int = 30) -> None:
            if self.bar is None or total_iters != self.bar_total:
                self.finish()
                self.bar = self.make_progress(self.label, total_iters)
                self.bar_total = total_iters
            self.bar.update(cur_iter)

        def finish(self, summary: str = "") -> None:
            if self.bar is not None:
                self.bar.close(summary)
                self.bar = None

    return NotebookLogger


class _logger_installed:
    """Install a logger for esptool while flashing; put the previous one back after."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def __enter__(self) -> Any:
        from esp_pylib.logger import EspLog
        from esptool.logger import log

        _FLASH_LOCK.acquire()
        self._previous = EspLog.instance
        log.set_logger(self.logger)
        return self.logger

    def __exit__(self, *exc: object) -> None:
        from esp_pylib.logger import EspLog

        EspLog.instance = self._previous
        _FLASH_LOCK.release()


# ---- the flash itself ---------------------------------------------------------------------
def _open_port(port: str) -> serial.SerialBase:
    """Open the port the way esptool does, but keep the object so we can always close it."""
    try:
        ser = serial.serial_for_url(port, exclusive=True, do_not_open=True)
        ser.open()
    except (serial.SerialException, OSError, ValueError) as err:
        if plat.classify_open_error(err) == "busy":  # Windows says "Access is denied"
            raise FlashError(*plat.busy_text(port, plat.find_holders(port))) from None
        raise FlashError(f"Could not open {port}: {err}",
                         "Check the port name (%ports), and that no other program (a serial "
                         "monitor, another notebook) holds it.") from None
    return ser


def _translate(err: BaseException, port: str, log_lines: list[str]) -> FlashError:
    """esptool's exception -> what the user reads and whether a slower retry may help."""
    text = str(err)
    context = "\n".join(log_lines[-6:])
    if "No serial data received" in text or "Failed to connect" in text:
        return FlashError(f"The board on {port} did not answer esptool (no serial data "
                          "received): it is not in its bootloader.", BOOT_HINT, retryable=True)
    if "Wrong chip argument" in text or "This chip is" in text:
        return FlashError(f"{text.splitlines()[0]} Nothing was written.",
                          "Leave --chip at auto, or name the chip the board really has.")
    if "image" in text and ("is not" in text or "not a" in text):
        return FlashError(f"{text} Nothing was written.", "Use an image built for this chip.")
    if isinstance(err, serial.SerialException | OSError) or "Lost connection" in context \
            or "Timed out" in text or "MD5" in text or "Packet" in text:
        return FlashError(
            f"The transfer to {port} was interrupted ({text.splitlines()[0] if text else err!r})."
            " The firmware on the board is incomplete and will not start until flashed again.",
            "Check the USB cable and hub, then flash again (a board can always be re-flashed; "
            "if it stops answering, " + BOOT_HINT[0].lower() + BOOT_HINT[1:] + ")",
            retryable=True)
    return FlashError(f"esptool failed: {text}", context, retryable=False)


def _describe(esp: Any) -> str:
    from esptool.cmds import detect_flash_size

    parts = [esp.get_chip_description()]
    try:
        size = detect_flash_size(esp)
        if size:
            parts.append(f"{size} flash")
        mac = esp.read_mac()
        if mac:
            parts.append("MAC " + ":".join(f"{b:02x}" for b in mac))
    except Exception as err:  # noqa: BLE001 - a description is a courtesy; never fail on it
        parts.append(f"(details unavailable: {err})")
    return ", ".join(parts)


def _flash_once(port: str, data: bytes, name: str, chip: str, erase: bool, baud: int,
                before: str, connect_attempts: int, use_stub: bool,
                write: Callable[[str], None], logger: Any) -> FlashResult:
    from esptool.cmds import (
        attach_flash,
        detect_chip,
        erase_flash,
        reset_chip,
        run_stub,
        write_flash,
    )
    from esptool.targets import CHIP_DEFS
    from esptool.util import FatalError

    ser = _open_port(port)
    try:
        try:
            if chip == "auto":
                esp = detect_chip(ser, ROM_BAUD, before, connect_attempts=connect_attempts)
            else:
                esp = CHIP_DEFS[chip](ser, ROM_BAUD)
                esp.connect(before, connect_attempts)
            key = chip_key(esp.CHIP_NAME)
            # Before the stub, the erase, anything: the image must be for this chip.
            check_image(data, key, name)
            if use_stub:
                esp = run_stub(esp)
            if baud != ROM_BAUD:
                esp.change_baud(baud)
            attach_flash(esp)
            description = f"{CHIP_NAMES.get(key, esp.CHIP_NAME)}: {_describe(esp)}"
            write(description + "\n")
            if erase:
                write("Erasing the whole flash...\n")
                erase_flash(esp)
            offset = OFFSETS.get(key, esp.BOOTLOADER_FLASH_OFFSET)
            write_flash(esp, [(offset, data)], compress=True)
            result = FlashResult(name, len(data), hashlib.sha256(data).hexdigest(), key,
                                 description, offset,
                                 verified="Hash of data verified." in logger.lines)
            logger.finish(result.summary())
            # IO0 (DTR) must be released for the RTS pulse to boot from flash rather than
            # back into the bootloader; a port whose atomic ioctl reset failed still has DTR
            # asserted from opening.
            ser.dtr = False
            reset_chip(esp, "hard-reset")
            return result
        except FlashError:
            raise
        except (FatalError, serial.SerialException, OSError) as err:
            logger.finish()
            raise _translate(err, port, logger.lines) from None
    finally:
        try:
            ser.close()
        except (serial.SerialException, OSError):
            pass  # the port vanished (unplugged/re-enumerated): it is released either way


def flash_esp(port: str, firmware: str | Path | bytes, *, chip: str = "auto",
              erase: bool = False, baud: int = DEFAULT_BAUD, before: str = "default-reset",
              connect_attempts: int = 7, use_stub: bool = True,
              write: Callable[[str], None] = print,
              make_progress: Callable[[str, int], Progress] | None = None,
              fetch: fw.Fetcher = fw.urllib_fetch) -> FlashResult:
    """Flash `firmware` (path, URL, board spec or bytes) to the ESP on `port`.

    Raises FlashError with what to do; the port is closed on every path out.
    """
    if make_progress is None:
        def make_progress(label: str, total: int) -> Progress:
            return TextProgress(label, total, write)

    data, name = _load(firmware, chip, port, fetch, write, before, connect_attempts)
    if chip != "auto":
        check_image(data, chip, name)  # a wrong file is refused before the port is touched
    logger = _esptool_logger_class()(write, make_progress, f"Flashing {name}")
    with _logger_installed(logger):
        try:
            return _flash_once(port, data, name, chip, erase, baud, before, connect_attempts,
                               use_stub, write, logger)
        except FlashError as err:
            if not err.retryable:
                raise
            first = err
            write(f"{err}\nRetrying once at {ROM_BAUD} baud...\n")
        try:
            return _flash_once(port, data, name, chip, erase, ROM_BAUD, before,
                               connect_attempts, use_stub, write, logger)
        except FlashError as second:
            # The first failure says what went wrong; the retry's (often "cannot open the
            # port" once a cable is out) only adds to it.
            if str(second) != str(first):
                first.hint += f"\n(Retrying at {ROM_BAUD} baud failed too: {second})"
            raise first from None
        finally:
            logger.finish()


def _load(firmware: str | Path | bytes, chip: str, port: str, fetch: fw.Fetcher,
          write: Callable[[str], None], before: str, connect_attempts: int) -> tuple[bytes, str]:
    if isinstance(firmware, bytes):
        return firmware, "the firmware"
    text = str(firmware)
    spec_needs_chip = not Path(text).suffix and "://" not in text \
        and fw.parse_spec(text).board is None
    if spec_needs_chip and chip == "auto":
        chip = detect(port, before, connect_attempts)
    path = fw.resolve(text, chip=None if chip == "auto" else chip, fetch=fetch, note=write)
    try:
        return path.read_bytes(), path.name
    except OSError as err:
        raise FlashError(f"Cannot read {path}: {err}") from None


def detect(port: str, before: str = "default-reset", connect_attempts: int = 7) -> str:
    """The chip on `port` (our key), for picking a default board; closes the port after."""
    from esptool.cmds import detect_chip
    from esptool.util import FatalError

    logger = _esptool_logger_class()(lambda s: None, lambda label, total: _NoProgress(), "")
    with _logger_installed(logger):
        ser = _open_port(port)
        try:
            esp = detect_chip(ser, ROM_BAUD, before, connect_attempts=connect_attempts)
            return chip_key(esp.CHIP_NAME)
        except (FatalError, serial.SerialException, OSError) as err:
            raise _translate(err, port, logger.lines) from None
        finally:
            ser.close()


class _NoProgress:
    def update(self, done: int) -> None:
        pass

    def close(self, summary: str = "") -> None:
        pass


# ---- drive-copy boards (.uf2 / .hex) ------------------------------------------------------
def is_drive_image(firmware: str) -> bool:
    return Path(firmware.split("?")[0]).suffix.lower() in DRIVE_LABELS


def find_drive(labels: Iterable[str], roots: Iterable[Path] | None = None,
               lsblk: Callable[[], str] | None = None,
               volumes: Callable[[], list[tuple[str, Path]] | None] | None = None,
               ) -> Path | None:
    """A mounted drive whose volume label is one of `labels`, or None.

    Windows (drive letters) and macOS (/Volumes) list their volumes with labels
    (`platform_support.mounted_volumes`); on Linux the desktop's mount folders and lsblk tell.
    """
    labels = tuple(labels)
    listed = (volumes or plat.mounted_volumes)()
    if listed is not None:
        return next((path for label, path in listed if label in labels), None)
    for root in DRIVE_ROOTS if roots is None else roots:
        candidates = [root / label for label in labels]
        if root.is_dir():
            # /media/USER/LABEL and /run/media/USER/LABEL
            candidates += [d / label for d in root.iterdir() if d.is_dir() for label in labels]
        for path in candidates:
            if path.is_dir():
                return path
    text = (lsblk or _lsblk)()
    for line in text.splitlines():
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        label = fields.get("LABEL", "").strip('"')
        mount = fields.get("MOUNTPOINT", "").strip('"')
        if label in labels and mount:
            return Path(mount)
    return None


def _file_manager() -> str:
    return {"windows": "File Explorer with a drive letter", "macos": "the Finder's sidebar"}.get(
        plat.system(), "the file manager; open it once there")


def _lsblk() -> str:
    try:
        done = subprocess.run(["lsblk", "-P", "-o", "LABEL,MOUNTPOINT"], capture_output=True,
                              text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout


def copy_to_drive(image: Path, write: Callable[[str], None] = print,
                  make_progress: Callable[[str, int], Progress] | None = None,
                  roots: Iterable[Path] | None = None,
                  lsblk: Callable[[], str] | None = None) -> FlashResult:
    """Copy a .uf2/.hex onto the board's drive, which flashes the board and reboots it."""
    labels = DRIVE_LABELS[image.suffix.lower()]
    drive = find_drive(labels, roots, lsblk)
    if drive is None:
        how = ("hold BOOTSEL while plugging the RP2040/RP2350 in" if image.suffix.lower() ==
               ".uf2" else "plug the micro:bit in (it shows a MICROBIT drive)")
        raise FlashError(f"No drive labelled {' or '.join(labels)} is mounted.",
                         f"To flash {image.name}, {how}; make sure the drive is mounted "
                         f"(it shows in {_file_manager()}), then run the flash again.")
    data = image.read_bytes()
    bar = (make_progress or (lambda label, total: TextProgress(label, total, write)))(
        f"Copying {image.name} to {drive}", len(data))
    target = drive / image.name
    done = 0
    try:
        with open(target, "wb") as out:
            for start in range(0, len(data), 64 * 1024):
                out.write(data[start:start + 64 * 1024])
                done = min(len(data), start + 64 * 1024)
                bar.update(done)
            out.flush()
    except OSError as err:
        # The board reboots as soon as it has the whole image, and its drive vanishes: an
        # error once every byte went out is the expected ending, not a failure.
        if done < len(data):
            bar.close()
            raise FlashError(f"Copying to {drive} failed: {err}",
                             "Put the board back in its bootloader and try again.") from None
    result = FlashResult(image.name, len(data), hashlib.sha256(data).hexdigest(), drive=drive)
    bar.close(result.summary())
    return result
