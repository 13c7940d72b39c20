"""Board: the one place that knows the state of the connection to a MicroPython board.

It opens the link (a device, a pyserial URL, or `sim`), catches a busy board, runs code with
streamed output, interrupts with an escalating ladder, notices resets and a vanished port, and
reattaches to the same board. Every wait is bounded, and every failure ends in an
MpkernelError whose text says what happened and what to do next.
"""

from __future__ import annotations

import ast
import codecs
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from mpkernel import cells
from mpkernel.board.caps import PROBE as _PROBE
from mpkernel.board.caps import Capabilities
from mpkernel.board.interrupts import InterruptLadder, catch_busy_board
from mpkernel.board.link import Link, is_url
from mpkernel.board.rawrepl import PasteStalled, RawRepl, ResetDuringExec, find_reset
from mpkernel.display import report_lines
from mpkernel.errors import (
    BoardReset,
    BoardTimeout,
    CellRefused,
    DeviceError,
    Interrupted,
    LinkLost,
    MpkernelError,
    PortError,
    ResetUnsupported,
)

if TYPE_CHECKING:
    from mpkernel.board.ports import PortIdentity
    from mpkernel.sim import QemuBoard

Note = Callable[[str], None]

# An idle raw prompt acknowledges a program within milliseconds (the paced writes themselves
# take the wire time); longer means something else is running.
ACK_TIMEOUT = 2.0

_SOFTWARE_RESET = b"""\
try:
 import machine;machine.reset()
except ImportError:
 import microbit;microbit.reset()
"""

class Board:
    """A connection to one board. `port` is a device path, a pyserial URL, or "sim"."""

    def __init__(
        self,
        port: str,
        baudrate: int = 115200,
        *,
        lister: Callable[[], list[Any]] | None = None,
        reattach_wait: float = 10.0,
        catch_timeout: float = 3.0,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.url = port
        self.lister = lister
        self.reattach_wait = reattach_wait
        self.catch_timeout = catch_timeout
        self.simulator: QemuBoard | None = None
        self.identity: PortIdentity | None = None
        self.caps = Capabilities()
        self.link: Link | None = None
        self.repl: RawRepl | None = None
        self.note: Note = lambda text: None  # the kernel points this at the running cell
        self.busy_reason = ""  # set while a program on the board ignores Ctrl-C
        # What ends a program of ours that has Ctrl-C off, if the link went while it ran;
        # sent first when the same board is found again (see lost_link_while_running).
        self._stop_first = b""
        # Helper functions a file command left defined on the board for the next one (the
        # micro:bit's stream upload: sending them is a fifth of a 10 KB upload's time). They
        # hold RAM, so any program not run with keep_resident frees them first: a cell never
        # runs with less RAM than it had before.
        self.resident: tuple[str, ...] = ()
        self._session = ""
        # Interrupts are counted, not flagged: a multi-step operation (an upload of many
        # chunks) must see an interrupt that arrived between two of its execs.
        self._interrupts = 0
        self._cell_mark = 0
        self._exec_mark = 0
        self.running = False
        self.session_survived = False  # the last resync found this session's marker

    # -- public facts ---------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.link is not None and not self.link.closed

    @property
    def firmware(self) -> str:
        return self.caps.firmware

    @property
    def version(self) -> tuple[int, ...]:
        return self.caps.version

    def summary(self) -> str:
        where = self.url if self.port == self.url else f"{self.url} ({self.port})"
        if self.simulator is not None:
            where = f"{self.url} ({self.simulator.label})"
        fw = self.caps.firmware or "MicroPython " + ".".join(map(str, self.caps.version))
        if self.caps.machine and self.caps.machine not in fw:
            fw = f"{fw}; {self.caps.machine}"
        ram = f"{self.caps.mem_free / 1024:.1f} KB free RAM" if self.caps.mem_free >= 0 else ""
        return f"Connected to {where}: {fw}" + (f", {ram}" if ram else "") + "."

    # -- connecting -----------------------------------------------------------------------
    def connect(self) -> str:
        """Open the port, catch whatever runs on the board, probe it; return the summary."""
        self._stop_first = b""  # meant for the board of an earlier connection
        self.open_port()
        stopped = self._sync(first=True)
        line = self.summary()
        if self.simulator is not None and self.simulator.notice:
            line = f"{line}\n{self.simulator.notice}"
        return f"{line}\n{stopped}" if stopped else line

    def _open(self) -> None:
        self.link = Link(self.url, self.baudrate)
        self.repl = RawRepl(self.link)
        if not is_url(self.url):
            self.identity = self._identity_of(self.url)

    def _identity_of(self, device: str) -> PortIdentity | None:
        try:
            from mpkernel.board.ports import identity_of
        except ImportError:
            return None
        return identity_of(os.path.realpath(device), lister=self.lister) or identity_of(
            device, lister=self.lister
        )

    def _sync(self, first: bool = False) -> str:
        """Reach a clean raw prompt, verify it with a nonce, probe capabilities on first use.

        Returns a sentence about what was interrupted ("" if the board was idle).
        """
        repl = self._repl()
        # On first contact, listen a moment before interrupting: the port was just opened
        # (pyserial drops what arrived before), and a busy program's last line is worth
        # quoting in "stopped main.py; its last output: ...".
        stopped = catch_busy_board(repl, self.catch_timeout, self.note, listen=0.4 if first else 0)
        self.busy_reason = ""
        self.session_survived = self._verify_nonce() == self._session != ""
        if first or not self.caps.version:
            self._probe()
        if not self.session_survived:
            self.resident = ()  # a reset cleared them, or they are an earlier session's
            self._session = secrets.token_hex(4)
            self._run_quiet(f"__mpk_session='{self._session}'")
        return stopped

    def _verify_nonce(self) -> str:
        """Prove the board answers now; return its session marker ("" if it has none)."""
        # Stale bytes from an earlier tool or session could look like an answer; a number the
        # board must compute cannot. The session marker rides along: it tells a real reset
        # (variables gone) from output that only looked like one.
        nonce = secrets.randbelow(10**9)
        for attempt in range(2):
            try:
                out = self._run_quiet(f"print({nonce}+1,globals().get('__mpk_session',''))")
            except (DeviceError, BoardReset, BoardTimeout):
                # A late Ctrl-C of our own, or a reset (a button) in the middle of resyncing:
                # catch whatever runs now and ask once more.
                if attempt:
                    raise
                catch_busy_board(self._repl(), self.catch_timeout, self.note)
                continue
            words = out.strip().split()
            if len(words) >= 1 and str(nonce + 1) in words:
                after = words[words.index(str(nonce + 1)) + 1 :]
                return after[0] if after else ""
            self._repl().discard_input()
            self._repl().enter_raw(2.0)
        raise BoardTimeout(
            "The board answered, but not with what was asked: the line is garbled.",
            "Check the baud rate (%connect PORT --baud N) or run %doctor.",
        )

    def _probe(self) -> None:
        fields = ast.literal_eval(self._run_quiet(_PROBE).strip().splitlines()[-1])
        (platform, version, uversion, machine, mem_free, stat, ilistdir, mkdir, hashlib,
         binascii, deflate, statvfs, rename) = fields
        # The nonce and probe execs above already asked whether raw-paste exists.
        repl = self._repl()
        self.caps = Capabilities(
            platform=platform, version=tuple(version), firmware=uversion or "",
            machine=machine or "",
            mem_free=mem_free, stat=stat, ilistdir=ilistdir, mkdir=mkdir, hashlib=hashlib,
            binascii=binascii, deflate=deflate, statvfs=statvfs, rename=rename,
            raw_paste=bool(repl.raw_paste),
        )
        if not self.caps.firmware:
            self.caps.firmware = "MicroPython " + ".".join(map(str, self.caps.version))

    def _run_quiet(self, code: str, timeout: float = 5.0) -> str:
        """Run a short internal program; raise DeviceError if it fails."""
        repl = self._repl()
        out = bytearray()
        deadline = time.monotonic() + timeout

        def tick(state: Any) -> None:
            if time.monotonic() > deadline:
                raise BoardTimeout(
                    f"The board did not finish an internal step within {timeout:.0f} s.",
                    "Run %doctor, or interrupt and try again.",
                )

        try:
            # Inside a resync: send plainly, without the catch-and-resend of send_program.
            stderr = self._run_program(
                code.encode(), out.extend, tick, send=lambda data: repl.send_code(data, timeout)
            )
        except ResetDuringExec as reset:
            # No resync from here (this runs inside one): the caller's next step does it.
            self.busy_reason = "reset"
            raise BoardReset(
                "The board reset during an internal step; its variables are gone.",
                "Run the cell again.",
                boot_output=_boot_text(reset),
            ) from None
        if stderr.strip():
            raise DeviceError(*cells.parse_traceback(stderr.decode(errors="replace")))
        return out.decode(errors="replace")

    def _repl(self) -> RawRepl:
        if self.repl is None:
            raise LinkLost("Not connected.", "Run a cell or %connect to connect.")
        return self.repl

    # -- running code -----------------------------------------------------------------------
    def exec(
        self,
        code: str,
        on_output: Callable[[str], None] | None = None,
        timeout: float | None = None,
        *,
        interruptible: bool = True,
        on_idle: Callable[[], None] | None = None,
        keep_resident: bool = False,
    ) -> str:
        """Run code, streaming its stdout; return all of it.

        Raises DeviceError (an exception on the board), BoardReset, LinkLost, BoardTimeout,
        Interrupted (an interrupt arrived before it started, or while a raw-paste upload was
        under way: none of it ran), or InterruptFailed when a program ignored every interrupt.
        `interruptible=False` is for clean-up steps that must run even after the user
        interrupted the cell. `on_idle` is called at every read tick (at least every READ_TICK
        seconds) while the program runs. `keep_resident` is for a file command's short steps
        between two uploads: they leave the helpers in `resident` defined.
        """
        data = code.encode()
        if interruptible and self.interrupt_requested:
            raise Interrupted("Interrupted before the next step was sent to the board.")
        self.ensure_ready()
        if self.resident and not keep_resident:
            self.free_resident()
        if not self.caps.raw_paste and len(data) > self.caps.max_plain_cell():
            raise CellRefused(
                f"This cell is {len(data)} bytes; this firmware has no raw-paste mode, so the "
                f"board must hold the whole cell in its {self.caps.mem_free} bytes of free RAM, "
                "and a cell this large would wedge it. Nothing was sent.",
                "Split the cell, or save it with %%writefile module.py and `import module`.",
            )
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        collected: list[str] = []

        def on_bytes(chunk: bytes) -> None:
            text = decoder.decode(chunk)
            if text:
                collected.append(text)
                if on_output is not None:
                    on_output(text)

        ladder = InterruptLadder(self, timeout)
        self._exec_mark = self._interrupts
        self.running = True
        def tick(state: Any) -> None:
            if on_idle is not None:
                on_idle()
            ladder.tick(state)

        def send(program: bytes) -> None:
            self.send_program(program, should_stop=lambda: self.exec_interrupted)

        try:
            stderr = self._run_program(data, on_bytes, tick, send)
        except ResetDuringExec as reset:
            during = ("while the cell was being sent (none of it ran)" if reset.while_sending
                      else "while the cell ran")
            raise self._after_reset(reset, during=during) from None
        except LinkLost:
            self.drop_link()
            raise
        except MpkernelError:
            # A gave-up ladder or timeout leaves the board in an unknown state: resync first.
            self.busy_reason = self.busy_reason or "interrupted"
            raise
        finally:
            self.running = False
        tail = decoder.decode(b"", final=True)
        if tail:
            on_bytes(b"")
            collected.append(tail)
        if stderr.strip():
            ename, evalue, lines = cells.parse_traceback(stderr.decode(errors="replace"))
            if ename == "KeyboardInterrupt" and self.exec_interrupted:
                took = f" after {ladder.sent} Ctrl-C" if ladder.sent > 1 else ""
                lines.append(
                    f"Interrupted{took}: the program stopped; the board's variables are kept."
                )
            raise DeviceError(ename, evalue, lines)
        return "".join(collected)

    def _run_program(
        self,
        data: bytes,
        on_bytes: Callable[[bytes], None],
        tick: Callable[[Any], None],
        send: Callable[[bytes], None] | None = None,
    ) -> bytes:
        """Send a program and follow it to its end; return its stderr.

        A program runs at most once. Plain raw mode has no flow control: a board whose CPU
        fell behind drops bytes and compiles something other than what was sent. So the
        program is sent once more, more slowly, only when the answer proves none of it ran:
        the board printed nothing and reported a compile error of the program itself (see
        cells.is_compile_error), for code the host parses. A SyntaxError raised while the
        program ran (`exec('1 +')`, importing a broken module) is never a reason to resend.
        """
        repl = self._repl()
        send = send or self.send_program
        printed = 0

        def counted(chunk: bytes) -> None:
            nonlocal printed
            printed += len(chunk)
            on_bytes(chunk)

        send(data)
        stderr = repl.follow(counted, tick)
        if repl.raw_paste or printed or not garbled_in_transit(stderr, data):
            return stderr
        repl.slow_down()
        send(data)
        return repl.follow(on_bytes, tick)

    def send_program(self, data: bytes, should_stop: Callable[[], bool] | None = None) -> None:
        """Send a program; if the board does not acknowledge, catch what runs and resend once.

        An idle raw prompt answers within milliseconds, so a missing acknowledgement means a
        program started since the last cell (a reset ran main.py, a button was pressed), and
        the board never received this one. `should_stop` can abandon a raw-paste upload
        (see RawRepl.send_code); a reset in the middle of one ends the cell (it is raised).
        """
        # Ctrl-C at an idle raw prompt empties its line buffer and prints nothing: half a
        # program left there by an earlier session or noise cannot be glued to this one.
        self.link.write(b"\x03")  # type: ignore[union-attr]
        try:
            self._repl().send_code(data, ACK_TIMEOUT, should_stop)
        except PasteStalled:
            raise  # the board took part of it, then stopped: said, not retried blindly
        except BoardTimeout:
            self._resync_and_say()
            self._repl().send_code(data, ACK_TIMEOUT, should_stop)
        except ResetDuringExec as reset:
            if reset.while_sending:
                raise
            # A reboot instead of OK: the board reset between cells and the program never
            # started (no OK), so it is safe to report the reset and send the cell again.
            self._report_reset(reset)
            self._repl().send_code(data, ACK_TIMEOUT, should_stop)

    def free_resident(self) -> None:
        """Remove the helpers listed in `resident` from the board, giving their RAM back."""
        names, self.resident = self.resident, ()
        self.forget(names)

    def forget(self, names: tuple[str, ...]) -> None:
        """Remove these globals from the board where they exist, and collect the garbage."""
        # As any program is sent (a reset since the last one is caught and reported), so the
        # program that follows, a cell, runs as it would have without them.
        self.exec(forget_program(names) + "del __p\n__import__('gc').collect()", timeout=5.0,
                  interruptible=False)

    def interrupt(self) -> None:
        """Ask the running exec to stop. Safe from a signal handler or another thread."""
        self._interrupts += 1

    def start_cell(self) -> None:
        """Forget interrupts that belonged to earlier cells."""
        self._cell_mark = self._interrupts

    @property
    def interrupt_requested(self) -> bool:
        """An interrupt arrived during the current cell."""
        return self._interrupts > self._cell_mark

    @property
    def exec_interrupted(self) -> bool:
        """An interrupt arrived while the current exec ran (what the ladder acts on)."""
        return self._interrupts > self._exec_mark

    def ensure_ready(self) -> None:
        """Connect, reattach, or resync as needed; report a reset that happened between cells."""
        if self.link is None:
            if self.caps.version:
                self.reattach(self.reattach_wait)
            else:
                self.note(self.connect() + "\n")
            return
        try:
            self._ready_on_open_link()
        except LinkLost:
            # The port vanished between cells (cable pulled, re-enumeration): find it again.
            self.drop_link()
            self.reattach(self.reattach_wait)

    def _ready_on_open_link(self) -> None:
        pending = self._repl().take_pending()
        at = find_reset(bytearray(pending)) if pending else -1
        if at >= 0:
            self._report_reset(self._repl().finish_reset(pending[at:]))
        elif pending or self.busy_reason:
            # Unasked bytes that are not a reboot (stale output), or a board left busy: make
            # sure we are in sync.
            self._resync_and_say()

    def _resync_and_say(self) -> None:
        """Resync; tell the cell what was stopped, and whether the variables are gone."""
        had_session = bool(self._session)
        stopped = self._sync()
        if had_session and not self.session_survived:
            # No reboot text was seen (it went by unread), but the marker is gone: a reset.
            self.note("The board reset since the last cell; its variables are gone.\n")
        if stopped:
            self.note(stopped + "\n")

    def _report_reset(self, reset: ResetDuringExec) -> None:
        err = self._after_reset(reset, during="since the last cell")
        if isinstance(err, BoardReset):
            self.note(report(err) + "\n")
        # Otherwise only a banner (something switched the REPL mode): in sync again.

    def reset_error(self, reset: ResetDuringExec, what: str) -> MpkernelError:
        """The error to raise for a reboot seen by a caller that drives the raw REPL itself
        (the files layer's streaming programs): the board is caught at a prompt again first.
        `what` names the step, e.g. "a file transfer step"."""
        during = (f"while {what} was being sent (none of it ran)" if reset.while_sending
                  else f"during {what}")
        return self._after_reset(reset, during=during)

    def _after_reset(self, reset: ResetDuringExec, during: str) -> MpkernelError:
        boot = _boot_text(reset)
        self.busy_reason = "reset"
        try:
            stopped = self._sync()
        except MpkernelError as err:
            stopped = f"(It did not come back to a prompt: {err.user_text()})"
        else:
            if self.session_survived:
                # Output that looked like a reboot (a NUL, a banner line), but the variables
                # are all there: say what really happened.
                return MpkernelError(
                    "The output looked like the board rebooting, so mpkernel stopped the cell "
                    "to check: the board did not reset, and its variables are kept."
                    + (f"\n{stopped}" if stopped else ""),
                    "Run the cell again.",
                )
        extra = f"\n{stopped}" if stopped else ""
        return BoardReset(
            f"The board reset {during}; its variables are gone.{extra}",
            "The next cell runs normally on the freshly booted board.",
            boot_output=boot,
        )

    # -- resets -----------------------------------------------------------------------------
    def soft_reset(self) -> str:
        """Ctrl-D at an empty raw prompt: variables cleared, main.py not run."""
        self.ensure_ready()
        repl = self._repl()
        self.link.write(b"\x04")  # type: ignore[union-attr]
        repl.read_until(b"raw REPL; CTRL-B to exit\r\n>", 10.0)
        self._sync()
        return "Soft reset done: the board's variables are gone (main.py was not run)."

    def hard_reset(self) -> str:
        """Reset as the button does, through the best means the link has; then catch the board."""
        how = self._pulse_reset()
        # The boot text goes to the catch, which reports what main.py printed before it
        # was stopped.
        stopped = self._sync()
        text = f"Hard reset ({how}) done: the board rebooted and its variables are gone."
        return f"{text}\n{stopped}" if stopped else text

    def open_port(self) -> None:
        """Open the port (starting the emulator for "sim" or "sim:NAME") without talking to
        the board."""
        if self.connected:
            return
        if (self.port == "sim" or self.port.startswith("sim:")) and self.simulator is None:
            from mpkernel.sim import start_simulator

            self.simulator = start_simulator(self.port.partition(":")[2])
            self.url = self.simulator.pty_path
        self._open()

    def resync(self) -> str:
        """Reach a verified raw prompt again (probing the firmware if never done)."""
        return self._sync(first=not self.caps.version)

    def pulse_hard_reset(self) -> str:
        """Reset through the hardware only (the emulator's line, or DTR/RTS); say how."""
        if self.simulator is not None:
            self.simulator.hard_reset()
            return "the emulator's reset line"
        if self.link is None:
            raise LinkLost("Not connected.", "Connect first with %connect.")
        self.link.pulse_reset()
        return "EN pulsed through RTS"

    def file_exists(self, name: str) -> bool:
        out = self._run_quiet(
            "def __mpk_f():\n try:\n  import os\n except ImportError:\n  import uos as os\n"
            f" print({name!r} in os.listdir())\n__mpk_f()\ndel __mpk_f"
        )
        return out.strip().endswith("True")

    def _pulse_reset(self) -> str:
        try:
            return self.pulse_hard_reset()
        except ResetUnsupported:
            if self.busy_reason:
                raise
        # No modem lines, but the REPL answers: ask the firmware to reset itself.
        self._repl().send_code(_SOFTWARE_RESET, ACK_TIMEOUT)
        return "the firmware's own reset()"

    # -- losing and finding the board ------------------------------------------------------
    def drop_link(self) -> None:
        if self.link is not None:
            self.link.close()
        self.link = None
        self.repl = None

    def lost_link_while_running(self, stop: bytes) -> None:
        """The link went while a program of ours with Ctrl-C off ran (a file transfer): drop
        it, and once reattach finds the board send `stop` (what makes that program end) before
        any Ctrl-C, which such a program reads as data. It also ends by itself after ~2 s
        without a good frame, but a board that is slow to see 2 s pass (an emulator paused
        again and again by a busy host, counting only the time it ran) outlasted the 3 s in
        which the resync catches a busy board, and the next command said the board ignores
        Ctrl-C (seen in the seeded soak)."""
        self._stop_first = stop
        self.drop_link()

    def _find_again(self) -> str | None:
        if self.identity is not None and self.identity.serial_number:
            from mpkernel.board.ports import find_by_identity

            return find_by_identity(self.identity, lister=self.lister)
        from mpkernel.platform_support import port_exists  # COM3 is no file on Windows

        if port_exists(self.url, self.lister):
            return self.url
        return None

    def reattach(self, wait: float, note: Note | None = None) -> str:
        """Find the same board again (by USB identity, else by path) and resync with it.

        Waits up to `wait` s, saying so once through `note`; returns where it was found, or
        raises LinkLost. For callers that released the port (flashing) or lost it.
        """
        note = note or self.note
        deadline = time.monotonic() + wait
        said_waiting = False
        last_error: Exception | None = None
        while True:
            where = self._find_again()
            if where is not None:
                try:
                    self.url = where
                    self._open()
                    if self._stop_first:
                        # Harmless at a prompt: the resync's Ctrl-C clears a half-typed line.
                        self._repl().link.write(self._stop_first)
                        self._stop_first = b""
                    stopped = self._sync()
                    if said_waiting:
                        note(f"The board is back on {where}.\n")
                    if stopped:
                        note(stopped + "\n")
                    return where
                except (PortError, LinkLost, BoardTimeout) as err:
                    last_error = err
                    self.drop_link()
            if time.monotonic() >= deadline:
                break
            if not said_waiting:
                note(f"Waiting for the board to come back on {self.url} (up to {wait:.0f} s)...\n")
                said_waiting = True
            # The OS shows a re-enumerated port within ~a second; look again shortly.
            time.sleep(0.2)
        raise LinkLost(
            f"The board did not come back on {self.url} within {wait:.0f} s"
            + (f" ({last_error})." if last_error else "."),
            "Plug it in (or press reset) and run the cell again; %ports lists the ports.",
        )

    @contextmanager
    def released(self, note: Note = print, wait: float = 30.0) -> Iterator[str]:
        """Free the port for another program (esptool, doctor), then find the board again."""
        path = self.url
        self.drop_link()
        note(f"Released {path}.\n")
        try:
            yield path
        finally:
            where = self.reattach(wait, note)
            note(f"Reconnected on {where}: {self.caps.firmware}.\n")

    def close(self) -> None:
        if self.resident and self.link is not None and not self.running:
            # Another tool, or this kernel restarted, gets the board's RAM whole.
            with suppress(MpkernelError):
                self.free_resident()
        self.drop_link()
        if self.simulator is not None:
            self.simulator.stop()
            self.simulator = None


def forget_program(names: tuple[str, ...]) -> str:
    """Board code removing these globals where they exist (it leaves `__p` defined)."""
    return f"for __p in {names!r}:\n globals().pop(__p,None)\n"


def _boot_text(reset: ResetDuringExec) -> str:
    return reset.boot_output.replace(b"\x00", b"").decode(errors="replace").strip()


def garbled_in_transit(stderr: bytes, data: bytes) -> bool:
    """The board could not compile a program the host parses: bytes were probably lost."""
    if not cells.is_compile_error(stderr.decode(errors="replace")):
        return False  # it ran (or failed for another reason): never sent again
    try:
        ast.parse(data.decode("utf-8"))
    except (SyntaxError, ValueError, UnicodeDecodeError):
        return False  # the code itself is wrong: the board said so truthfully
    return True


def report(err: MpkernelError) -> str:
    """An error as status lines for a cell, laid out as error messages show it."""
    return "\n".join(report_lines(err))
