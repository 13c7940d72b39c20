"""An ESP32 that esptool can flash, without a chip: the ROM loader (and the stub) in Python.

Reachable as the pyserial URL `espemu://NAME` once `register()` ran, so esptool opens it
in-process exactly as it opens /dev/ttyUSB0 (`serial_for_url`), and so can the kernel's Board.

Why a URL handler rather than a pty: a pty has no modem lines (TIOCMSET raises ENOTTY), so
the emulator could never see esptool's DTR/RTS reset into the bootloader nor the hard reset
after flashing. A handler receives every `dtr`/`rts` write, so the emulated auto-reset
circuit of a devkit decides the boot mode as the real transistors do, and after the hard
reset the same port serves whatever "runs" from flash (a REPL). `fileno()` answers ENOTTY
like a pty does, which makes esptool's atomic-ioctl reset fall back to its sequential
DTR/RTS writes (what it does on any port without ioctl support).

Modelled facts (esptool 5 source, ESP32 TRM):
- packets are SLIP-framed; a request is `<BBHI` (0, op, len, checksum) + data, a reply is
  `<BBHI` (1, op, len, value) + data + status bytes (4 from the ESP32 ROM, 2 from the stub);
- the ESP32 ROM answers GET_SECURITY_INFO with "invalid command", so esptool reads the chip
  magic at 0x40001000 (0x00F01D83 = ESP32); eFuse words give revision and MAC;
- flash ID comes through the SPI peripheral's user-command registers (RDID 0x9F);
- the ROM erases on FLASH_BEGIN/FLASH_DEFL_BEGIN, MD5 replies as 32 hex chars; the stub
  (after MEM_BEGIN/DATA/END + "OHAI") replies with 16 raw bytes and supports ERASE_FLASH;
- NOR flash programming can only clear bits, so writes are AND-ed into memory: a write to a
  region that was not erased shows up as an MD5 mismatch, as on hardware.
"""

from __future__ import annotations

import hashlib
import random
import re
import struct
import sys
import threading
import time
import types
import zlib
from collections.abc import Callable

import serial
from serial.serialutil import SerialBase, SerialException

FLASH_SIZE = 4 * 1024 * 1024
SECTOR = 0x1000
ESP32_MAGIC = 0x00F01D83
FLASH_ID = 0x1640C8  # GigaDevice (0xC8), size id 0x16 = 4 MB

SPI_BASE = 0x3FF42000
SPI_CMD, SPI_USR2, SPI_W0 = SPI_BASE + 0x00, SPI_BASE + 0x24, SPI_BASE + 0x80
SPI_CMD_USR = 1 << 18
EFUSE_BASE = 0x3FF5A000
APB_CTL_DATE = 0x3FF66000 + 0x7C

ROM_SYNC_VALUE = 0x20120707
INVALID_COMMAND = bytes([1, 5])

OP = {
    "FLASH_BEGIN": 0x02, "FLASH_DATA": 0x03, "FLASH_END": 0x04, "MEM_BEGIN": 0x05,
    "MEM_END": 0x06, "MEM_DATA": 0x07, "SYNC": 0x08, "WRITE_REG": 0x09, "READ_REG": 0x0A,
    "SPI_SET_PARAMS": 0x0B, "SPI_ATTACH": 0x0D, "CHANGE_BAUDRATE": 0x0F,
    "FLASH_DEFL_BEGIN": 0x10, "FLASH_DEFL_DATA": 0x11, "FLASH_DEFL_END": 0x12,
    "SPI_FLASH_MD5": 0x13, "ERASE_FLASH": 0xD0, "ERASE_REGION": 0xD1,
}

DOWNLOAD_BOOT_LOG = (
    b"ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),"
    b"boot:0x3 (DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))\r\nwaiting for download\r\n"
)
FLASH_BOOT_LOG = (
    b"ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
)
_BANNER = re.compile(rb"MicroPython v[0-9][^\x00\r\n]{5,120}")


def _checksum(data: bytes) -> int:
    state = 0xEF
    for b in data:
        state ^= b
    return state


class App:
    """What runs after a flash boot: gets the host's bytes, sends bytes back with `emit`."""

    def start(self, emit: Callable[[bytes], None], flash: bytearray) -> None: ...

    def feed(self, data: bytes) -> None: ...

    def stop(self) -> None: ...


class BannerApp(App):
    """A MicroPython-looking REPL that only prints the banner found in flash and a prompt.

    Enough to show "the new firmware booted"; tests needing a real REPL use RelayApp.
    """

    banner = b""

    def start(self, emit: Callable[[bytes], None], flash: bytearray) -> None:
        self._emit = emit
        m = _BANNER.search(bytes(flash[0x1000:0x1000 + 0x200000]))
        self.banner = m.group(0) if m and flash[0x1000] == 0xE9 else b""
        if self.banner:
            emit(self.banner + b"\r\nType \"help()\" for more information.\r\n>>> ")

    def feed(self, data: bytes) -> None:
        if self.banner and (b"\r" in data or b"\x03" in data):
            self._emit(b"\r\n>>> ")


class RelayApp(App):
    """Hands the port over to another serial device (the QEMU micro:bit) after the reset."""

    def __init__(self, path: str, on_boot: Callable[[], None] | None = None) -> None:
        self.path = path
        self.on_boot = on_boot
        self._port: serial.Serial | None = None
        self._stop = threading.Event()

    def start(self, emit: Callable[[bytes], None], flash: bytearray) -> None:
        self._port = serial.serial_for_url(self.path, timeout=0.05)
        self._stop.clear()
        if self.on_boot is not None:
            self.on_boot()  # a hard reset of the target, so it prints a fresh banner
        threading.Thread(target=self._pump, args=(emit,), daemon=True).start()

    def _pump(self, emit: Callable[[bytes], None]) -> None:
        while not self._stop.is_set() and self._port is not None:
            try:
                data = self._port.read(4096)
            except (SerialException, OSError, TypeError):
                return
            if data:
                emit(data)

    def feed(self, data: bytes) -> None:
        if self._port is not None:
            self._port.write(data)

    def stop(self) -> None:
        self._stop.set()
        if self._port is not None:
            self._port.close()
            self._port = None


class EspRomEmulator:
    """One emulated ESP32 devkit (chip + CP2102-style auto-reset circuit + 4 MB flash).

    `mode`: "download" (BOOT held at power-on, the ROM loader waits), "app" (runs flash),
    "dead" (nothing answers). `cut_after_blocks`: the USB link drops after that many flash
    data blocks (a cable pulled mid-transfer). `events` records what happened, for tests.
    """

    def __init__(self, mode: str = "download", app: App | None = None,
                 cut_after_blocks: int | None = None) -> None:
        self.flash = bytearray(b"\xff" * FLASH_SIZE)
        self.mode = mode
        self.app = app or BannerApp()
        self.cut_after_blocks = cut_after_blocks
        self.unplugged = False
        self.stub = False
        self.events: list[str] = []
        self.open_ports = 0  # handles the host holds now: 0 means the port was released
        self.regs: dict[int, int] = {
            0x40001000: ESP32_MAGIC,
            EFUSE_BASE + 4: 0xABCDEF01,               # MAC low word
            EFUSE_BASE + 8: 0x00002462,               # MAC high bytes (24:62 Espressif OUI)
            EFUSE_BASE + 12: (1 << 9) | (1 << 15),    # pkg D0WD, rev bit0
            EFUSE_BASE + 20: 1 << 20,                 # rev bit1
            APB_CTL_DATE: 1 << 31,                    # rev bit2 -> chip revision v3.0
        }
        self._rx = bytearray()  # bytes waiting for the host
        self._cond = threading.Condition()
        self._frame: bytearray | None = None
        self._escape = False
        self._dtr = self._rts = False
        self._en_low = False
        self._pending_boot = False
        self._io0_low_seen = False
        self._write: dict | None = None
        self._blocks = 0
        if mode == "app":
            self.boot(download=False)

    # ---- the wire -------------------------------------------------------------------
    def emit(self, data: bytes) -> None:
        with self._cond:
            self._rx += data
            self._cond.notify_all()

    def host_read(self, size: int, timeout: float | None) -> bytes:
        self._resolve_boot()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._rx:
                if self.unplugged:
                    raise SerialException("device reports readiness to read but returned no "
                                          "data (device disconnected or multiple access on port?)")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return b""
                self._cond.wait(left)
            out = bytes(self._rx[:size])
            del self._rx[:size]
            return out

    def in_waiting(self) -> int:
        self._resolve_boot()
        with self._cond:
            return len(self._rx)

    def clear_rx(self) -> None:
        with self._cond:
            self._rx.clear()

    def host_write(self, data: bytes) -> None:
        if self.unplugged:
            raise SerialException("write failed: [Errno 5] Input/output error")
        self._resolve_boot()
        if self.mode == "app":
            self.app.feed(data)
            return
        if self.mode != "download":
            return
        for b in data:
            if b == 0xC0:
                if self._frame is not None and len(self._frame) > 0:
                    frame, self._frame = bytes(self._frame), None
                    self._packet(frame)
                    if self.mode != "download":
                        return
                self._frame = bytearray()
            elif self._frame is None:
                continue
            elif self._escape:
                self._frame.append({0xDC: 0xC0, 0xDD: 0xDB}.get(b, b))
                self._escape = False
            elif b == 0xDB:
                self._escape = True
            else:
                self._frame.append(b)

    # ---- modem lines: the devkit's two-transistor auto-reset circuit -----------------
    def set_lines(self, dtr: bool, rts: bool) -> None:
        self._dtr, self._rts = dtr, rts
        en_low = rts and not dtr   # EN is pulled low only by RTS alone
        io0_low = dtr and not rts  # IO0 is pulled low only by DTR alone
        if en_low and not self._en_low:
            self._power_down()
        if self._en_low and not en_low:
            # EN's RC delay means the strapping pin is sampled a little after release:
            # decide the boot mode at the next byte exchanged, from IO0 meanwhile.
            self._pending_boot = True
            self._io0_low_seen = io0_low
        elif self._pending_boot and io0_low:
            self._io0_low_seen = True
        self._en_low = en_low

    def _power_down(self) -> None:
        if self.mode == "app":
            self.app.stop()
        self.mode = "reset"
        self.stub = False
        self._frame = None
        self.events.append("reset")

    def _resolve_boot(self) -> None:
        if not self._pending_boot:
            return
        self._pending_boot = False
        self.boot(download=self._io0_low_seen)

    def boot(self, download: bool) -> None:
        """Come out of reset: the ROM loader (BOOT held) or whatever is in flash."""
        self.clear_rx()
        if download:
            self.mode = "download"
            self.events.append("boot:download")
            self.emit(DOWNLOAD_BOOT_LOG)
        else:
            self.mode = "app"
            self.events.append("boot:flash")
            self.emit(FLASH_BOOT_LOG)
            self.app.start(self.emit, self.flash)

    # ---- the loader protocol ----------------------------------------------------------
    def _reply(self, op: int, value: int = 0, data: bytes = b"", status: bytes = b"\0\0") -> None:
        body = data + status + (b"" if self.stub else b"\0\0")
        pkt = struct.pack("<BBHI", 1, op, len(body), value) + body
        self.emit(b"\xc0" + pkt.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
                  + b"\xc0")

    def _packet(self, frame: bytes) -> None:
        if len(frame) < 8 or frame[0] != 0:
            return
        _, op, size, chk = struct.unpack("<BBHI", frame[:8])
        data = frame[8:8 + size]
        handler = getattr(self, f"_op_{op:02x}", None)
        if handler is None or (op in (OP["ERASE_FLASH"], OP["ERASE_REGION"]) and not self.stub):
            self.events.append(f"invalid:{op:#04x}")
            self._reply(op, status=INVALID_COMMAND)
            return
        handler(op, data, chk)

    def _op_08(self, op: int, data: bytes, chk: int) -> None:  # SYNC
        value = 0 if self.stub else ROM_SYNC_VALUE
        for _ in range(8):
            self._reply(op, value)

    def _op_0a(self, op: int, data: bytes, chk: int) -> None:  # READ_REG
        (addr,) = struct.unpack("<I", data[:4])
        self._reply(op, self.regs.get(addr, 0))

    def _op_09(self, op: int, data: bytes, chk: int) -> None:  # WRITE_REG
        addr, value, mask, _delay = struct.unpack("<IIII", data[:16])
        old = self.regs.get(addr, 0)
        self.regs[addr] = (old & ~mask) | (value & mask)
        if addr == SPI_CMD and value & SPI_CMD_USR:
            command = self.regs.get(SPI_USR2, 0) & 0xFF
            self.regs[SPI_W0] = FLASH_ID if command == 0x9F else 0
            self.regs[SPI_CMD] = 0  # the user command completes at once
        self._reply(op)

    def _ack(self, op: int, data: bytes, chk: int) -> None:
        self._reply(op)

    _op_0b = _op_0d = _op_0f = _ack  # SPI_SET_PARAMS, SPI_ATTACH, CHANGE_BAUDRATE

    def _op_05(self, op: int, data: bytes, chk: int) -> None:  # MEM_BEGIN
        self.events.append("mem_begin")
        self._reply(op)

    def _op_07(self, op: int, data: bytes, chk: int) -> None:  # MEM_DATA
        size = struct.unpack("<I", data[:4])[0]
        ok = _checksum(data[16:16 + size]) == chk
        self._reply(op, status=b"\0\0" if ok else b"\1\7")

    def _op_06(self, op: int, data: bytes, chk: int) -> None:  # MEM_END
        _no_entry, entry = struct.unpack("<II", data[:8])
        self._reply(op)
        if entry:
            self.stub = True  # the uploaded flasher stub now runs and greets
            self.events.append("stub")
            self.emit(b"\xc0OHAI\xc0")

    def _erase(self, start: int, size: int) -> None:
        end = min(FLASH_SIZE, -(-(start + size) // SECTOR) * SECTOR)
        start -= start % SECTOR
        self.flash[start:end] = b"\xff" * (end - start)

    def _program(self, addr: int, data: bytes) -> None:
        old = self.flash[addr:addr + len(data)]
        n = len(old)
        merged = int.from_bytes(old, "big") & int.from_bytes(data[:n], "big")
        self.flash[addr:addr + n] = merged.to_bytes(n, "big")

    def _begin(self, op: int, data: bytes, compressed: bool) -> None:
        size, blocks, block_size, offset = struct.unpack("<IIII", data[:16])
        self._erase(offset, size)
        self._write = {"offset": offset, "block": block_size, "seq": 0, "pos": offset,
                       "z": zlib.decompressobj() if compressed else None}
        self.events.append(f"{'defl_' if compressed else ''}begin:{offset:#x}:{size}")
        self._reply(op)

    def _op_02(self, op: int, data: bytes, chk: int) -> None:  # FLASH_BEGIN
        self._begin(op, data, compressed=False)

    def _op_10(self, op: int, data: bytes, chk: int) -> None:  # FLASH_DEFL_BEGIN
        self._begin(op, data, compressed=True)

    def _data(self, op: int, data: bytes, chk: int) -> None:
        size, seq = struct.unpack("<II", data[:8])
        payload = data[16:16 + size]
        w = self._write
        if w is None or seq != w["seq"] or _checksum(payload) != chk or len(payload) != size:
            self._reply(op, status=b"\1\7")
            return
        if self.cut_after_blocks is not None and self._blocks >= self.cut_after_blocks:
            self.unplugged = True  # the cable is pulled: nothing answers, IO errors from now
            self.events.append("unplugged")
            with self._cond:
                self._cond.notify_all()
            return
        self._blocks += 1
        w["seq"] += 1
        chunk = w["z"].decompress(payload) if w["z"] is not None else payload
        self._program(w["pos"], chunk)
        w["pos"] += len(chunk)
        self._reply(op)

    _op_03 = _op_11 = _data  # FLASH_DATA, FLASH_DEFL_DATA

    def _end(self, op: int, data: bytes, chk: int) -> None:  # FLASH_END, FLASH_DEFL_END
        (stay,) = struct.unpack("<I", data[:4])
        self._reply(op)
        self._write = None
        if not stay:
            self.boot(download=False)

    _op_04 = _op_12 = _end

    def _op_13(self, op: int, data: bytes, chk: int) -> None:  # SPI_FLASH_MD5
        addr, size = struct.unpack("<II", data[:8])
        self.events.append(f"md5:{addr:#x}:{size}")  # so tests can tell a read-back happened
        digest = hashlib.md5(self.flash[addr:addr + size])
        self._reply(op, data=digest.digest() if self.stub else digest.hexdigest().encode())

    def _op_d0(self, op: int, data: bytes, chk: int) -> None:  # ERASE_FLASH (stub)
        self.flash[:] = b"\xff" * FLASH_SIZE
        self.events.append("erase_flash")
        self._reply(op)

    def _op_d1(self, op: int, data: bytes, chk: int) -> None:  # ERASE_REGION (stub)
        offset, size = struct.unpack("<II", data[:8])
        self._erase(offset, size)
        self._reply(op)


# ---- the pyserial side --------------------------------------------------------------
EMULATORS: dict[str, EspRomEmulator] = {}
_PACKAGE = "mpkernel_test_serial_handlers"


class Serial(SerialBase):
    """`espemu://NAME`: a serial port wired to `EMULATORS[NAME]`."""

    def open(self) -> None:
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        if self.is_open:
            raise SerialException("Port is already open.")
        name = str(self._port).split("://", 1)[1].strip("/")
        emu = EMULATORS.get(name)
        if emu is None or emu.unplugged:
            raise SerialException(2, f"could not open port {self._port}: No such device")
        self.emu = emu
        emu.open_ports += 1
        emu.events.append("open")
        self.is_open = True
        self._update_dtr_state()
        self._update_rts_state()

    def close(self) -> None:
        if self.is_open:
            self.emu.open_ports -= 1
        self.is_open = False

    def _reconfigure_port(self) -> None:
        pass  # any baud rate: the emulated UART follows CHANGE_BAUDRATE instantly

    def fileno(self) -> int:
        # No file descriptor for TIOCMSET: answer like a pty so esptool falls back to
        # sequential DTR/RTS writes (see the module docstring).
        raise OSError(25, "Inappropriate ioctl for device")

    @property
    def in_waiting(self) -> int:
        self._check()
        return self.emu.in_waiting()

    def read(self, size: int = 1) -> bytes:
        self._check()
        out = bytearray()
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while len(out) < size:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            chunk = self.emu.host_read(size - len(out), left)
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def write(self, data: bytes) -> int:
        self._check()
        self.emu.host_write(bytes(data))
        return len(data)

    def reset_input_buffer(self) -> None:
        self._check()
        self.emu._resolve_boot()
        self.emu.clear_rx()

    def reset_output_buffer(self) -> None:
        pass

    def _update_dtr_state(self) -> None:
        if self.is_open:
            self.emu.set_lines(self._dtr_state, self._rts_state)

    _update_rts_state = _update_dtr_state

    def _update_break_state(self) -> None:
        pass

    @property
    def cts(self) -> bool:
        return False

    dsr = ri = cd = cts

    def _check(self) -> None:
        if not self.is_open:
            raise serial.PortNotOpenError()


def register() -> None:
    """Make `serial.serial_for_url("espemu://NAME")` find this module.

    pyserial imports `<package>.protocol_<scheme>` for each package in
    `protocol_handler_packages`; an alias package in sys.modules avoids making tests/ a
    package just for that.
    """
    if _PACKAGE not in sys.modules:
        pkg = types.ModuleType(_PACKAGE)
        pkg.__path__ = []  # a package, for importlib
        sys.modules[_PACKAGE] = pkg
        sys.modules[f"{_PACKAGE}.protocol_espemu"] = sys.modules[__name__]
    if _PACKAGE not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(_PACKAGE)


def serve(name: str, emulator: EspRomEmulator) -> str:
    """Plug `emulator` in as `espemu://name` and return that URL."""
    register()
    EMULATORS[name] = emulator
    return f"espemu://{name}"


def make_app_image(banner: str = "MicroPython v1.24.1 on 2024-11-29; Generic ESP32 module "
                   "with ESP32", chip_id: int = 0, size: int = 64 * 1024) -> bytes:
    """A structurally valid ESP-IDF app image: header, extended header, segments, checksum.

    Modelled on esp_image_format.h: magic 0xE9, segment count, flash mode/size/freq, entry;
    a 16-byte extended header holding the chip id; each segment `<II` load address and
    length; a checksum byte (XOR seeded with 0xEF) padded to a 16-byte boundary.
    """
    # a banner string where MicroPython keeps one, then filler that compresses like code
    text = (banner.encode() + b"\0").ljust(128, b"\0")
    body = text + random.Random(chip_id).randbytes(size - 64 - len(text))
    segments = [(0x3F400020, body[: len(body) // 2]), (0x400D0020, body[len(body) // 2:])]
    header = struct.pack("<BBBBI", 0xE9, len(segments), 0x02, 0x20, 0x40080000)
    # wp_pin, spi_pin_drv[3], chip_id, min_chip_rev, min/max_chip_rev_full, reserved, hash
    ext = struct.pack("<B3sHBHH4sB", 0xEE, b"\0\0\0", chip_id, 0, 0, 0, b"\0" * 4, 0)
    assert len(ext) == 16
    out = bytearray(header + ext)
    check = 0xEF
    for addr, data in segments:
        out += struct.pack("<II", addr, len(data)) + data
        for b in data:
            check ^= b
    pad = 15 - (len(out) % 16)
    out += b"\0" * pad + bytes([check])
    return bytes(out)
