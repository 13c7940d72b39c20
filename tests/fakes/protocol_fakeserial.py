"""A pyserial URL handler `fakeserial://SCENARIO?baud=N`: a scripted board for doctor tests.

Register with `serial.protocol_handler_packages.append("fakes")` (tests/ on sys.path), then
`serial.serial_for_url("fakeserial://busy?baud=57600", baudrate=115200, timeout=0.05)`.

The device runs at `baud` (default 115200). When the host's baud rate differs, both
directions are garbled, as on a real UART: the host reads bytes that are not text, and the
device never sees the Ctrl-C it was sent.

Scenarios:
  idle           MicroPython at its prompt
  raw            MicroPython in the raw REPL (Ctrl-C prints nothing; Ctrl-B leaves it)
  busy           a program printing every 50 ms; Ctrl-C stops it with KeyboardInterrupt
  quietbusy      a program running silently; Ctrl-C stops it
  swallow        a program printing every 50 ms that ignores Ctrl-C
  silent         nothing ever
  rom            ESP32 ROM bootloader in download mode
  romloop        ESP32 ROM booting an empty flash, over and over
  circuitpython  CircuitPython at its prompt
  at             an AT-command firmware (answers OK)
  arduino        a sketch that printed two lines at start and then nothing
  micropython    a raw REPL that runs what it is sent (rawrepl_device.FakeDevice with the
                 host's Python): enough for Board to connect and run cells
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

from serial.serialutil import PortNotOpenError, SerialBase, SerialException

BANNER = (b"MicroPython v1.22.0 on 2024-01-01; Fake board with FAKE\r\n"
          b'Type "help()" for more information.\r\n>>> ')
CP_BANNER = (b"Adafruit CircuitPython 9.0.0 on 2024-03-19; Raspberry Pi Pico with rp2040\r\n"
             b">>> ")
INTERRUPTED = (b"Traceback (most recent call last):\r\n  File \"<stdin>\", line 3, in <module>"
               b"\r\nKeyboardInterrupt: \r\n>>> ")
ROM_DOWNLOAD = (b"ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x3 "
                b"(DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))\r\nwaiting for download\r\n")
ROM_EMPTY = (b"ets Jun  8 2016 00:22:57\r\n\r\nrst:0x10 (RTCWDT_RTC_RESET),boot:0x13 "
             b"(SPI_FAST_FLASH_BOOT)\r\ninvalid header: 0xffffffff\r\n")
TICK = 0.05


class FakeBoard:
    """The device side: consumes host bytes, produces output as time passes."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.out = bytearray()
        self.start = time.monotonic()
        self.last_tick = self.start
        self.ticks = 0
        self.running = scenario in ("busy", "quietbusy", "swallow")
        self.raw = scenario == "raw"
        self.line = bytearray()
        if scenario == "rom":
            self.out += ROM_DOWNLOAD
        if scenario == "arduino":
            self.out += b"Sketch started\r\nsensor=512\r\n"

    def advance(self) -> None:
        now = time.monotonic()
        period = 0.2 if self.scenario == "romloop" else TICK
        while now - self.last_tick >= period:
            self.last_tick += period
            self.ticks += 1
            if self.scenario == "romloop":
                self.out += ROM_EMPTY
            elif self.running and self.scenario != "quietbusy":
                self.out += b"tick %d\r\n" % self.ticks

    def feed(self, data: bytes) -> None:
        for byte in data:
            self._byte(byte)

    def _byte(self, byte: int) -> None:
        s = self.scenario
        if s in ("silent", "rom", "romloop", "swallow", "arduino"):
            return
        if s == "at":
            if byte >= 0x20 or byte in (0x0D, 0x0A):
                self.line.append(byte)
            if self.line.endswith(b"\r\n"):
                line, self.line = bytes(self.line).strip(), bytearray()
                self.out += line + b"\r\n\r\n" + (b"OK" if line == b"AT" else b"ERROR") + b"\r\n"
            return
        if byte == 0x03:
            if self.running:
                self.running = False
                self.out += INTERRUPTED
            elif not self.raw:
                self.out += b"\r\n>>> "
        elif byte == 0x02:
            self.raw = False
            self.out += b"\r\n" + (CP_BANNER if s == "circuitpython" else BANNER)
        elif not self.running and 0x20 <= byte < 0x7F:
            self.out.append(byte)  # the REPL echoes what is typed


def garble(data: bytes) -> bytes:
    # A byte sampled at the wrong rate comes out as a different, usually non-text byte;
    # 0x80-0x9F are never valid UTF-8 starts, like the noise a real mismatch produces.
    return bytes(0x80 | ((b * 7) & 0x1F) for b in data)


class RunningBoard:
    """The `micropython` scenario: FakeBoard's interface over a FakeDevice that runs code."""

    def __init__(self) -> None:
        from fakes.rawrepl_device import FakeDevice, PythonRunner

        self.device = FakeDevice(paste_window=None, runner=PythonRunner())
        self.device.mode = "friendly"  # a board at rest shows its friendly prompt

    @property
    def out(self) -> bytearray:
        return self.device.out

    def advance(self) -> None:
        """Output appears as bytes are fed; nothing happens with time alone."""

    def feed(self, data: bytes) -> None:
        self.device.write(data)


class Serial(SerialBase):
    def open(self) -> None:
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        url = urlparse(self._port)
        if url.scheme != "fakeserial":
            raise SerialException(f"expected a fakeserial:// URL, got {self._port!r}")
        self.device_baud = int(parse_qs(url.query).get("baud", ["115200"])[0])
        self.board = RunningBoard() if url.netloc == "micropython" else FakeBoard(url.netloc)
        self.is_open = True

    def close(self) -> None:
        self.is_open = False

    def _reconfigure_port(self, force_update: bool = False) -> None:
        """Baud changes take effect on the next byte, which is all the fake needs."""

    def _update_dtr_state(self) -> None:
        """No modem lines to change."""

    def _update_rts_state(self) -> None:
        """No modem lines to change."""

    def _matched(self) -> bool:
        return self._baudrate == self.device_baud

    @property
    def in_waiting(self) -> int:
        if not self.is_open:
            raise PortNotOpenError()
        self.board.advance()
        return len(self.board.out)

    def read(self, size: int = 1) -> bytes:
        if not self.is_open:
            raise PortNotOpenError()
        deadline = time.monotonic() + (self._timeout or 0)
        while True:
            self.board.advance()
            if self.board.out or time.monotonic() >= deadline:
                break
            # Real ports block in select(); the fake waits for its next tick the same way.
            time.sleep(min(0.005, max(0.0, deadline - time.monotonic())))
        data = bytes(self.board.out[:size])
        del self.board.out[:size]
        return data if self._matched() else garble(data)

    def write(self, data: bytes) -> int:
        if not self.is_open:
            raise PortNotOpenError()
        self.board.feed(bytes(data) if self._matched() else garble(bytes(data)))
        return len(data)

    def reset_input_buffer(self) -> None:
        self.board.advance()
        self.board.out.clear()

    def reset_output_buffer(self) -> None:
        """Writes are delivered at once; nothing waits."""
