"""Connection magics: %connect, %disconnect, %reset, %rescue, %help, and %%host."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mpkernel.errors import MpkernelError
from mpkernel.magics import MagicContext, arg, magic, registry

if TYPE_CHECKING:
    from mpkernel.board import Board


@magic(
    "connect",
    arg("port", nargs="?", help="device path, pyserial URL, `sim`, or a number from the list"),
    arg("--baud", type=int, default=None, help="baud rate (default 115200)"),
    arg("--rescue", action="store_true", help="recover a board whose program ignores Ctrl-C"),
)
def connect(ctx: MagicContext, args: argparse.Namespace) -> None:
    """Connect to a board: `%connect /dev/ttyUSB0`, `%connect rfc2217://host:2217`,
    `%connect sim` (the emulated micro:bit), or `%connect` alone to choose from a list.

    Without a port, the serial ports are listed with what they probably are: a dropdown where
    widgets render, a numbered list otherwise (then `%connect 2` picks the second).
    """
    from mpkernel.ports import format_ports, list_ports

    kernel = ctx.kernel
    if args.baud is not None and kernel is not None:
        kernel.baudrate = args.baud
    port = args.port
    if port is None:
        found = list_ports()
        ctx.state["listed_ports"] = [p.device for p in found]
        if ctx.widgets_ok:
            from mpkernel.widgets import port_picker

            ctx.display(port_picker(found, on_connect=_attach_and_say(ctx)))
            return
        listing = format_ports(found) if found else "No serial ports found."
        ctx.write(
            f"{listing}\nChoose one with %connect N (a number above), %connect PORT, "
            "or %connect sim for the emulated micro:bit.\n"
        )
        return
    if port.isdigit():
        listed = ctx.state.get("listed_ports") or [p.device for p in list_ports()]
        index = int(port) - 1
        if not 0 <= index < len(listed):
            raise MpkernelError(
                f"There is no port number {port} in the list.",
                "Run %connect alone to list the ports again.",
            )
        port = listed[index]
    if args.rescue:
        _rescue_on(ctx, port)
        return
    _attach_and_say(ctx)(port)


def _attach_and_say(ctx: MagicContext):  # noqa: ANN202 - a callback for the picker too
    def attach(port: str) -> None:
        if ctx.attach is None:
            raise MpkernelError("This context cannot connect to a board.")
        ctx.attach(port)

    return attach


def unopened_board(ctx: MagicContext, port: str) -> Board:
    """A Board on `port`, not connected yet, for magics that open the port their own way
    (rescue resets the board before talking to it; flash frees the port for esptool).

    With a kernel it becomes the kernel's board, replacing any other; without one (a test's
    context) the caller owns it.
    """
    if ctx.attach is not None:
        board = ctx.attach(port, connect=False)
    else:
        from mpkernel.connect import new_board

        board = new_board(port)
    board.note = ctx.write
    return board


def _rescue_on(ctx: MagicContext, port: str) -> None:
    from mpkernel.rescue import rescue

    board = unopened_board(ctx, port)
    ctx.write(rescue(board, ctx.write, ctx.confirm) + "\n")
    ctx.write(board.summary() + "\n")


@magic("disconnect")
def disconnect(ctx: MagicContext, args: argparse.Namespace) -> None:
    """Close the board's port so other programs can use it (the next cell reconnects)."""
    kernel = ctx.kernel
    board = ctx.peek_board()
    if kernel is not None and kernel.board is not None:
        kernel.board.close()
        kernel.board = None
    ctx.write("Disconnected.\n" if board is not None else "No board was connected.\n")


@magic(
    "reset",
    arg("--soft", action="store_true", help="soft reset (default): clear variables"),
    arg("--hard", action="store_true", help="hard reset, like the reset button"),
)
def reset(ctx: MagicContext, args: argparse.Namespace) -> None:
    """Reset the board. `--soft` (the default) clears its variables without running main.py;
    `--hard` reboots it like the reset button (boot.py and main.py run, and mpkernel stops
    main.py if it is still running, to give you the prompt)."""
    if args.soft and args.hard:
        raise MpkernelError("Choose one of --soft and --hard.", "%reset --soft or %reset --hard")
    board = ctx.board
    ctx.write((board.hard_reset() if args.hard else board.soft_reset()) + "\n")


@magic("rescue")
def rescue_magic(ctx: MagicContext, args: argparse.Namespace) -> None:
    """Recover a board whose program ignores Ctrl-C: hard reset (DTR/RTS where the hardware
    allows, or you press the reset button), Ctrl-C from the first moment of boot, then an
    offer to rename main.py so the next boot is quiet. Files are kept."""
    from mpkernel.rescue import rescue

    # Not ctx.board: connecting first would stop at the very program that needs rescuing.
    board = ctx.peek_board()
    if board is None:
        if ctx.resolve_port is None:
            raise MpkernelError("No board to rescue.", "Run %connect --rescue PORT.")
        board = unopened_board(ctx, ctx.resolve_port())
    board.note = ctx.write
    ctx.write(rescue(board, ctx.write, ctx.confirm) + "\n")


@magic("help", arg("name", nargs="?", help="a magic's name, with or without %"))
def help_magic(ctx: MagicContext, args: argparse.Namespace) -> None:
    """List the magics, or explain one: `%help put`."""
    magics = registry()
    if args.name:
        name = args.name.lstrip("%")
        found = [m for key, m in magics.items() if key.lstrip("%") == name]
        if not found:
            raise MpkernelError(f"No magic named {args.name}.", "%help lists them all.")
        for m in found:
            ctx.write(m.parser().format_help() + "\n")
        return
    lines = ["Magics (run %help NAME for one; `obj?` shows help on a name):"]
    for key in sorted(magics):
        lines.append(f"  {key:<14} {first_sentence(magics[key].help)}")
    ctx.write("\n".join(lines) + "\n")


def first_sentence(doc: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line."""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    end = paragraph.find(". ")
    return paragraph if end < 0 else paragraph[: end + 1]


@magic("host", cell=True)
def host(ctx: MagicContext, args: argparse.Namespace, body: str) -> None:
    """Run the cell on this computer's Python (IPython), not on the board: for plotting data
    pulled with %get, preparing files, or anything the board cannot do."""
    raise MpkernelError("%%host cells are run by the kernel itself.")
