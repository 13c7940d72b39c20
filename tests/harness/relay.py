"""A fault-injecting relay between the kernel and the emulated micro:bit.

The relay holds QEMU's UART pty open for its whole life (no output lost, QEMU's ~1 s "reader
appeared" delay paid once) and serves the host through a front end that can be unplugged:

- "pty": a pty pair behind a stable symlink (<dir>/ttyACM0); no modem lines, like QEMU's pty.
  After unplug (measured, pyserial 3.5) read() raises SerialException("device reports
  readiness to read but returned no data ..."), write() SerialException("write failed: [Errno
  5] Input/output error"), and opening the vanished path SerialException ([Errno 2]).
- "rfc2217": a one-client RFC 2217 server, rfc2217://127.0.0.1:PORT, carrying DTR/RTS wired
  like the ESP32 auto-reset circuit: EN is low while RTS is asserted and DTR is not. EN low
  pauses the VM (held in reset, input dropped); EN rising resets and resumes it. After unplug
  read() raises SerialException("connection failed (reader thread died)") (a read already
  waiting returns b"" first), write() SerialException("connection failed (socket error):
  [Errno 32] Broken pipe") (the first write may still pass), and opening SerialException
  ("Could not open port ...: [Errno 111] Connection refused").

Each direction is a `Pipe` with an optional line rate (115200 baud = 11,520 bytes/s) and a
one-way latency, order kept. Every delivered chunk and event goes to a bounded traffic log.
"""

from __future__ import annotations

import collections
import os
import select
import shutil
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from serial.tools.list_ports_common import ListPortInfo

from .fronts import Front, PtyFront, Rfc2217Front
from .wire import Pipe, drain, open_board, write_all

TO_HOST = "to_host"
TO_BOARD = "to_board"
BAUD_115200 = 11_520  # bytes/s: 115200 baud, 8N1 = 10 bits per byte
USB_SERIAL_LATENCY = 0.004  # s, one way, a typical CP210x/CH340 bridge
FTDI_LATENCY = 0.016  # s, an FTDI bridge's default latency timer

# Stale, half-finished REPL exchanges, as left by a previous client that died mid-cell.
STALE_RAW_OUTPUT = b"OK12345\r\nprint('from a cell that never fin"  # to host: no \x04, no '>'
STALE_HALF_CELL = b"\r\x03\x01for i in range(3):\n    print(i"  # to board: raw mode, half a cell


class BoardLike(Protocol):
    """What the relay needs from the board: `mpkernel.sim.Simulator` fits."""

    pty_path: str
    banner: str

    def monitor(self, command: str, timeout: float = ...) -> str: ...


@dataclass
class FakeUsbIdentity:
    """The USB identity a real board's port would carry, so reattach-by-identity is testable."""

    vid: int = 0x10C4  # Silicon Labs CP210x, the usual ESP32 dev-board bridge
    pid: int = 0xEA60
    serial_number: str = "MPK-SIM-0001"
    description: str = "CP2102 USB to UART Bridge Controller"
    manufacturer: str = "Silicon Labs"


@dataclass
class Trigger:
    """A one-shot board reset armed on the traffic; `fired` is set when it went off."""

    direction: str | None
    remaining: int | None = None  # bytes still to pass before firing (reset_after_bytes)
    predicate: Callable[[str, bytes], bool] | None = None
    seen: bytearray = field(default_factory=bytearray)  # traffic since arming (predicate)
    fired: threading.Event = field(default_factory=threading.Event)
    fired_at: float = 0.0


class Relay:
    """The emulated board behind a pluggable, throttled, fault-injecting front end."""

    LOG_ENTRIES = 4000

    def __init__(
        self,
        board: BoardLike,
        front: str = "pty",
        name: str | None = None,
        identity: FakeUsbIdentity | None = None,
        rate: float | None = None,
        latency: float = 0.0,
        directory: str | None = None,
        board_fd: int | None = None,
    ) -> None:
        """Start relaying `board` (its pty_path, and monitor() for resets).

        board_fd: the board's pty already open (raw, non-blocking), borrowed and left open at
        stop(), so a test session pays QEMU's ~1 s reconnect delay once, not per relay.
        """
        if front not in ("pty", "rfc2217"):
            raise ValueError(f"front must be 'pty' or 'rfc2217', not {front!r}")
        self.board = board
        self.front_kind = front
        self.identity = identity if identity is not None else FakeUsbIdentity()
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="mpkernel-relay-"))
        self.counters = {TO_HOST: 0, TO_BOARD: 0, "dropped": 0, "resets": 0}
        self.log: collections.deque[tuple[float, str, bytes]] = collections.deque(
            maxlen=self.LOG_ENTRIES
        )
        self._t0 = time.monotonic()
        self._lock = threading.RLock()  # guards the front, triggers and the held-in-reset state
        self._reset_lock = threading.Lock()
        # While a reset is under way the board's output is what it printed before it: the
        # pump drops it (QEMU prints faster than the throttled line carries, so a reset at
        # "line 5" finds later lines already in the pty, which a real UART never sent).
        self._resetting = False
        self._triggers: list[Trigger] = []
        self._held_in_reset = False
        self._timers: list[threading.Timer] = []
        self._board_tail = bytearray()  # recent board output, for wait_board_output()
        self._board_cond = threading.Condition()
        self._stopping = False

        self._own_fd = board_fd is None
        self._board_fd = open_board(board.pty_path) if board_fd is None else board_fd
        termios.tcflush(self._board_fd, termios.TCIOFLUSH)  # whatever was left by a previous user
        self._name = name or ("ttyACM0" if front == "pty" else "0")
        self._url = ""
        self._wake_r, self._wake_w = os.pipe()
        self.to_host = Pipe(TO_HOST, lambda data: self._deliver(TO_HOST, data))
        self.to_board = Pipe(TO_BOARD, lambda data: self._deliver(TO_BOARD, data))
        self.set_throttle(rate, latency)
        self.front: Front | None = None
        self.replug(name)
        self._io = threading.Thread(target=self._io_loop, name="relay-io", daemon=True)
        self._io.start()

    # ----- the host side -----------------------------------------------------------------

    @property
    def url(self) -> str:
        """What the kernel opens: the symlink path or rfc2217:// URL (kept while unplugged)."""
        return self._url

    @property
    def plugged(self) -> bool:
        return self.front is not None

    def unplug(self, power_cycle: bool = False) -> None:
        """Pull the cable: the path/port vanishes, bytes in flight are lost.

        With power_cycle the board also loses power (a USB-powered board): it stays halted
        until replug(), which then boots it fresh.
        """
        with self._lock:
            front, self.front = self.front, None
            if front is None:
                return
            front.close()
            self.counters["dropped"] += self.to_host.clear() + self.to_board.clear()
            # Without power the board halts until replug; with power (the usual USB-serial
            # glitch) a board held in reset by EN is released when the lines vanish.
            self._hold_reset(power_cycle)
        self._event(f"unplug {front.url}" + (" (power lost)" if power_cycle else ""))
        os.write(self._wake_w, b"u")

    def replug(self, name: str | None = None) -> str:
        """Plug back in, under the same name (None) or a new one; return the new url.

        For the pty front a name is a device file name (ttyACM1); for the RFC 2217 front it is
        a TCP port number as a string ("0" picks a free port).
        """
        with self._lock:
            if self.front is not None:
                raise RuntimeError(f"already plugged in at {self.front.url}")
            if self.front_kind == "pty":
                self.front = PtyFront(self.directory / (name or self._name))
                self._name = self.front.link.name
            else:
                port = int(name or self._name)
                self.front = Rfc2217Front(port, on_en=self._on_en)
                self._name = str(self.front.port)  # "0" became a real port: replug reuses it
            self._url = self.front.url
            if self._held_in_reset:
                self._hold_reset(False)  # power comes back with the cable
        self._event(f"replug {self.front.url}")
        os.write(self._wake_w, b"r")
        return self.front.url

    def replug_after(self, seconds: float, name: str | None = None) -> threading.Timer:
        """Replug from a timer, for tests that block in the kernel while the cable is out."""
        return self.call_later(seconds, lambda: self.replug(name), "relay-replug")

    def call_later(self, seconds: float, action: Callable[[], None],
                   name: str = "relay-timer") -> threading.Timer:
        """Run `action` from a timer that stop() cancels: a test that ends first must not
        have it act on a relay that is gone (its directory removed, its fds closed)."""
        timer = threading.Timer(seconds, action)
        timer.daemon, timer.name = True, name
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()
        return timer

    def port_info(self) -> ListPortInfo | None:
        """This port as pyserial's list_ports shows it, or None while unplugged."""
        if self.front is None:
            return None
        info = ListPortInfo(self.url, skip_link_detection=True)
        ident = self.identity
        info.vid, info.pid, info.serial_number = ident.vid, ident.pid, ident.serial_number
        info.manufacturer, info.product = ident.manufacturer, ident.description
        info.description = ident.description
        info.hwid = info.usb_info()
        return info

    # ----- throttling and faults -----------------------------------------------------------

    def set_throttle(self, rate: float | None = None, latency: float = 0.0,
                     piece: int = 0) -> None:
        """Limit both directions to `rate` bytes/s (None: unlimited) plus a one-way latency.

        piece: bytes handed over at a time (0: 2 ms worth). A real wire hands the board's
        UART one byte every 87 us at 115200 baud, and a 16 MHz board's read loop finds only
        a few at a time; the emulated board runs faster, so 2 ms slices give it ~23 bytes
        per read. A small piece shows the board what a real wire does."""
        for pipe in (self.to_host, self.to_board):
            pipe.rate, pipe.latency, pipe.piece = rate, latency, piece

    def inject_to_host(self, data: bytes) -> None:
        """Noise on the line towards the kernel, in order with the board's output."""
        self._event(f"inject to host {data!r}")
        self.to_host.put(data)

    def inject_to_board(self, data: bytes) -> None:
        """Bytes the board receives as if the kernel had sent them."""
        self._event(f"inject to board {data!r}")
        self.to_board.put(data)

    def reset_board(self) -> None:
        """Hard-reset the board now (the reset button): files survive, RAM does not."""
        with self._reset_lock:
            with self._lock:
                self._resetting = True
                self.counters["dropped"] += self.to_host.discard_untransmitted()
            try:
                # Pause the VM, then drop what it printed before the reset and still sits in
                # the pty: a paused board prints nothing more, so the drain ends.
                self.board.monitor("stop")
                self.counters["dropped"] += drain(self._board_fd)
                self._reboot_paused_vm()
            finally:
                with self._lock:
                    self._resetting = False
                    held = self._held_in_reset
                if not held:  # a board held in reset (EN low) stays paused
                    self.board.monitor("cont")
            self.counters["resets"] += 1
        self._event("board reset")

    def reset_after_bytes(self, direction: str, n: int) -> Trigger:
        """Reset the board once exactly n more bytes have been delivered in `direction`."""
        trigger = Trigger(direction, remaining=n)
        with self._lock:
            self._triggers.append(trigger)
        if n == 0:
            self._fire(trigger)
        return trigger

    def reset_when(
        self, predicate: Callable[[str, bytes], bool], direction: str | None = None
    ) -> Trigger:
        """Reset once predicate(direction, traffic_since_arming[-4096:]) is true.

        It is checked after each delivered chunk; direction None watches both ways.
        """
        trigger = Trigger(direction, predicate=predicate)
        with self._lock:
            self._triggers.append(trigger)
        return trigger

    def wait_board_output(self, marker: bytes, timeout: float = 5.0) -> bool:
        """Wait until the board prints `marker` (seen at the board, whatever the front does).

        Only output arriving after the previous call counts: each call consumes what it saw.
        A reset (reset_board, or EN rising) forgets what the board printed before it: after
        one, only the new boot's output counts (a main.py's line printed before the reset once
        satisfied a wait meant for the new boot, and the test caught the board mid-boot).
        """
        deadline = time.monotonic() + timeout
        with self._board_cond:
            while True:
                at = self._board_tail.find(marker)
                if at >= 0:
                    del self._board_tail[: at + len(marker)]
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._board_cond.wait(left)

    def clear_board_output(self) -> None:
        with self._board_cond:
            self._board_tail.clear()

    def sync_board(self, timeout: float = 5.0) -> bool:
        """Bring the board to an idle friendly prompt, bypassing the front (fixture setup).

        Stops a program, leaves raw mode, then evaluates a fresh nonce: only its answer proves
        the board is listening now (a buffered boot banner also ends in '>>> ', and QEMU
        passes nothing either way until ~1 s after the relay opened its pty).
        """
        nonce = b"%d" % time.monotonic_ns()
        self.clear_board_output()
        self._write_board(b"\r\x03\x03\x02'sync-'+'" + nonce + b"'\r")
        return self.wait_board_output(b"'sync-" + nonce + b"'\r\n>>> ", timeout)

    # ----- debugging -------------------------------------------------------------------------

    def log_text(self, limit: int = 200) -> str:
        """The last `limit` log entries, one per line, with relative times in ms."""
        lines = []
        for t, kind, data in list(self.log)[-limit:]:
            lines.append(f"{(t - self._t0) * 1000:9.1f} ms {kind:8} {data!r}")
        return "\n".join(lines)

    def _event(self, text: str) -> None:
        self.log.append((time.monotonic(), "event", text.encode()))

    # ----- internals -------------------------------------------------------------------------

    def _deliver(self, direction: str, data: bytes) -> None:
        """Called by a pipe thread when bytes are due: cut at triggers, write, count, log."""
        pos = 0
        while pos < len(data):
            with self._lock:
                cut = len(data)
                for trig in self._triggers:
                    if trig.remaining is not None and trig.direction == direction:
                        cut = min(cut, pos + trig.remaining)
            piece = data[pos:cut]
            pos = cut
            self._write_out(direction, piece)
            fired = self._advance_triggers(direction, piece)
            for trig in fired:
                self._fire(trig)
            if fired and direction == TO_HOST:
                # The reset happened at this byte: the rest was never printed by the old board.
                self.counters["dropped"] += len(data) - pos
                return

    def _write_out(self, direction: str, piece: bytes) -> None:
        if direction == TO_BOARD:
            # A board held in reset hears nothing.
            ok = not self._held_in_reset and self._write_board(piece)
        else:
            front = self.front
            ok = front is not None and front.write(piece)
        if not ok:
            self.counters["dropped"] += len(piece)
            return
        self.counters[direction] += len(piece)
        self.log.append((time.monotonic(), direction, piece))

    def _advance_triggers(self, direction: str, piece: bytes) -> list[Trigger]:
        fired = []
        with self._lock:
            for trig in list(self._triggers):
                if trig.direction not in (None, direction):
                    continue
                if trig.remaining is not None:
                    trig.remaining -= len(piece)
                    hit = trig.remaining <= 0
                else:
                    trig.seen += piece
                    del trig.seen[:-4096]
                    assert trig.predicate is not None
                    hit = trig.predicate(direction, bytes(trig.seen))
                if hit:
                    self._triggers.remove(trig)
                    fired.append(trig)
        return fired

    def _fire(self, trigger: Trigger) -> None:
        with self._lock:
            if trigger in self._triggers:
                self._triggers.remove(trigger)
        self.reset_board()
        trigger.fired_at = time.monotonic()
        trigger.fired.set()

    def _write_board(self, data: bytes) -> bool:
        return write_all(self._board_fd, data, lambda: self._stopping)

    def _reboot_paused_vm(self) -> None:
        """The reset itself, for both ways of resetting (the VM is paused and stays so)."""
        self.board.monitor("system_reset")
        # The board's UART receive buffer dies with the reset: drop what it had not read.
        termios.tcflush(self._board_fd, termios.TCOFLUSH)
        # What it printed before belongs to the old boot (see wait_board_output).
        self.clear_board_output()

    def _hold_reset(self, hold: bool) -> None:
        """EN low pauses the VM (held in reset); EN rising reboots and resumes it."""
        if hold and not self._held_in_reset:
            self.board.monitor("stop")
            self._held_in_reset = True
            self._event("EN low: board held in reset")
        elif not hold and self._held_in_reset:
            self._reboot_paused_vm()
            self.board.monitor("cont")
            self._held_in_reset = False
            self.counters["resets"] += 1
            self._event("EN high: board boots")

    def _on_en(self, en_low: bool, dtr: bool, rts: bool) -> None:
        self._event(f"modem lines DTR={int(dtr)} RTS={int(rts)}")
        with self._lock:
            if not en_low and self._held_in_reset and dtr:
                # IO0 would be low at boot on an ESP32: its ROM bootloader. The micro:bit has
                # none, so it just boots; the log says the kernel asked for the bootloader.
                self._event("EN rose with DTR asserted: bootloader entry requested")
            self._hold_reset(en_low)

    def _io_loop(self) -> None:
        """Move bytes from the board and from the host front into the pipes."""
        while not self._stopping:
            front = self.front
            fds = [self._board_fd, self._wake_r] + (front.read_fds() if front else [])
            try:
                readable, _, _ = select.select(fds, [], [], 1.0)
            except (OSError, ValueError):
                continue  # the front closed an fd between building the list and select
            if self._wake_r in readable:
                os.read(self._wake_r, 64)
            if self._board_fd in readable:
                try:
                    data = os.read(self._board_fd, 4096)
                except BlockingIOError:
                    data = b""
                except OSError as exc:  # EIO: QEMU exited; select would now spin on the fd
                    self._event(f"board pty failed: {exc}; relay stops reading")
                    return
                if data:
                    with self._board_cond:
                        self._board_tail += data
                        del self._board_tail[:-8192]
                        self._board_cond.notify_all()
                    with self._lock:
                        if self.front is not None and not self._resetting:
                            self.to_host.put(data)
                        else:  # nobody at the other end, or printed before a reset
                            self.counters["dropped"] += len(data)
            if front is not None and front is self.front:
                for fd in readable:
                    if fd in front.read_fds():
                        self.to_board.put(front.read(fd))

    def stop(self) -> None:
        """Stop every thread, close every fd, remove the symlink directory."""
        if self._stopping:
            return
        for timer in self._timers:
            timer.cancel()
        self.unplug()  # also releases a board held in reset: never leave the shared VM paused
        self._stopping = True
        os.write(self._wake_w, b"s")
        self._io.join(timeout=5)
        self.to_host.stop()
        self.to_board.stop()
        for fd in (self._wake_r, self._wake_w) + ((self._board_fd,) if self._own_fd else ()):
            os.close(fd)
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LossyRelay(Relay):
    """The relay, plus faults of the line itself: drop or flip board-bound bytes at given
    offsets (a UART without flow control losing or garbling a byte).

    `faults` is a queue of (kind, offset): each offset counts board-bound bytes from the
    previous fault (from arming, for the first). `fault = (kind, offset)` arms just one.
    With `after_board_says` set, counting starts only once the board printed those bytes
    (b"R": the stream upload's ready byte), so a fault lands in the data, not in a program.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        # Set before the relay's threads start: they call _deliver at once.
        self.faults: list[tuple[str, int]] = []
        self.hits = 0
        self.after_board_says: bytes | None = None
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    @property
    def fault(self) -> tuple[str, int] | None:
        return self.faults[0] if self.faults else None

    @fault.setter
    def fault(self, value: tuple[str, int] | None) -> None:
        self.faults = [value] if value is not None else []

    @property
    def hit(self) -> bool:
        return self.hits > 0

    def lose_run(self, after: int, count: int) -> None:
        """Drop `count` consecutive board-bound bytes, starting `after` bytes from now."""
        self.faults = [("drop", after)] + [("drop", 0)] * (count - 1)

    def _deliver(self, direction: str, data: bytes) -> None:
        if direction == TO_HOST and self.after_board_says and self.after_board_says in data:
            self.after_board_says = None
        if direction == TO_BOARD and self.faults and not self.after_board_says:
            out, pos = bytearray(), 0
            while self.faults:
                kind, left = self.faults[0]
                if pos + left >= len(data):
                    self.faults[0] = (kind, left - (len(data) - pos))
                    break
                at = pos + left
                out += data[pos:at]
                if kind == "flip":
                    out.append(data[at] ^ 0x5A)
                pos = at + 1
                self.faults.pop(0)
                self.hits += 1
            data = bytes(out + data[pos:])
        super()._deliver(direction, data)


def comports_with(relays: Iterable[Relay]) -> list[ListPortInfo]:
    """A port lister over relays, shaped like serial.tools.list_ports.comports().

    Unplugged relays are absent, as a pulled board is; inject it as the kernel's lister.
    """
    return [info for relay in relays if (info := relay.port_info()) is not None]
