"""Port magics: `%ports` lists serial ports, `%doctor` explains a failing connection."""

from __future__ import annotations

from typing import Any

from mpkernel import platform_support as plat
from mpkernel.board import doctor as doctorlib
from mpkernel.board import ports as portlib
from mpkernel.errors import MpkernelError
from mpkernel.magics import MagicContext, arg, magic


@magic("ports")
def ports(ctx: MagicContext, args: Any) -> None:
    """List serial ports and what each one probably is (from its USB VID/PID).

    Likely boards come first. Connect to one with %connect PORT, or %connect sim for the
    emulated micro:bit (%connect sim:qemu for the emulated MicroPython 1.25 board). With no
    board listed, it also says whether a USB-serial chip is plugged in without its driver
    (Windows, macOS).
    """
    found = portlib.list_ports()
    ctx.write(portlib.format_ports(found) + "\n")
    if not any(p.is_likely_board for p in found):
        # A board whose USB-serial chip has no driver gets no port at all (Windows, macOS).
        drivers = doctorlib.check_drivers()
        if drivers is not None:
            ctx.write(f"{drivers.summary}\n{drivers.next_step}\n")


def _same_port(a: str, b: str) -> bool:
    return a == b or plat.same_port(a, b)


@magic(
    "doctor",
    arg("port", nargs="?", default=None,
        help="device path, pyserial URL or 'sim' (default: the kernel's port)"),
    arg("--baud", type=int, default=None, help="baud rate to try first (default: the kernel's)"),
)
def doctor(ctx: MagicContext, args: Any) -> None:
    """Explain in plain words why a board does not answer, and what to do.

    Checks, each with a time limit: the port exists (on Windows and macOS also whether a
    USB-serial chip lacks its driver), permission, another program holding it, what arrives
    when listening, what answers Ctrl-C / Ctrl-B, the common baud rates, an ESP ROM
    bootloader, CircuitPython or other firmware. If the kernel is connected to that port, it
    lets go for the check and reconnects afterwards.
    """
    port = args.port
    if port is None:
        if ctx.resolve_port is None:
            raise MpkernelError("%doctor: no port given and the kernel has none configured.",
                                "Use %doctor PORT; %ports lists them.")
        try:
            port = ctx.resolve_port()
        except MpkernelError as err:
            # No port can be chosen: that is the diagnosis, unless a chip lacks its driver.
            ctx.write(err.user_text() + "\n")
            drivers = doctorlib.check_drivers()
            if drivers is not None:
                ctx.write(drivers.text() + "\n")
            return
    board = ctx.peek_board()
    baud = args.baud or (board.baudrate if board is not None else 115200)
    if board is not None and (_same_port(port, board.port) or _same_port(port, board.url)):
        # The kernel holds this port exclusively; the doctor needs it to itself.
        with board.released(note=ctx.write) as path:
            diag = doctorlib.diagnose(path, baud)
            if diag.ok:
                diag.next_step = "The kernel reconnects to it now."
            ctx.write(diag.text() + "\n")
        return
    ctx.write(doctorlib.diagnose(port, baud).text() + "\n")
