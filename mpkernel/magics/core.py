"""Connection magics: %connect, %disconnect, %reset, %rescue, %help, and %%host."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable
from html import escape
from typing import TYPE_CHECKING

from mpkernel.errors import MpkernelError
from mpkernel.magics import Magic, MagicContext, arg, magic, registry

if TYPE_CHECKING:
    from mpkernel.board.board import Board
    from mpkernel.board.ports import PortInfo


@magic(
    "connect",
    arg("port", nargs="?",
        help="device path, pyserial URL, `sim` (micro:bit), `sim:qemu`, or a number from the list"),
    arg("--baud", type=int, default=None, help="baud rate (default 115200)"),
    arg("--rescue", action="store_true", help="recover a board whose program ignores Ctrl-C"),
)
def connect(ctx: MagicContext, args: argparse.Namespace) -> None:
    """Connect to a board: `%connect /dev/ttyUSB0`, `%connect rfc2217://host:2217`,
    `%connect sim` (the emulated micro:bit), `%connect sim:qemu` (the emulated MicroPython
    1.25 board), or `%connect` alone to choose from a list.

    Without a port, it says which board is connected now and lists the serial ports with what
    they probably are, and the emulated boards: a dropdown where widgets render (the board in
    use preselected), a numbered list otherwise (then `%connect 2` picks the second).
    Choosing the board already connected keeps it as it is, variables included.
    """
    from mpkernel.board.ports import list_ports

    kernel = ctx.kernel
    if args.baud is not None and kernel is not None:
        kernel.baudrate = args.baud
    port = args.port
    if port is None:
        _choose(ctx, list_ports())
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
    ctx.write(connect_to(ctx, port, ctx.write) + "\n")


def emulated_choices() -> list[tuple[str, str]]:
    """The emulated boards one can connect to here: the micro:bit, and the modern board once
    its firmware is built (`mpkernel sim --build`)."""
    from mpkernel.sim.cache import find_firmware
    from mpkernel.widgets import QEMU_LABEL, SIM_LABEL

    choices = [(SIM_LABEL, "sim")]
    if find_firmware() is not None:
        choices.append((QEMU_LABEL, "sim:qemu"))
    return choices


def _same_board(port: str, board: Board) -> bool:
    aliases = {"sim": "sim", "sim:microbit": "sim"}
    return aliases.get(port, port) in (aliases.get(board.port, board.port), board.url)


def _where(board: Board) -> str:
    # summary() is the "Connected to X: firmware" line; here only X and what follows.
    return board.summary().removeprefix("Connected to ")


def connect_to(ctx: MagicContext, port: str, say: Callable[[str], None]) -> str:
    """Make `port` the kernel's board and return the "Connected to ..." text. `say` gets what
    happens on the way (a busy program stopped). The board already connected stays as it is:
    reconnecting would quietly start a fresh emulated board (or reset a real one)."""
    current = ctx.peek_board()
    rate = getattr(ctx.kernel, "baudrate", None)
    # Only a board that answered (its firmware is known) at the rate asked for is kept: a
    # port left open by a failed attempt, or a new --baud, means connecting afresh.
    if (current is not None and _same_board(port, current) and current.caps.version
            and rate in (None, current.baudrate)):
        return (f"Already connected to {_where(current)}\nNothing changed: its variables are "
                "kept (%reset starts afresh).")
    if ctx.attach is None:
        raise MpkernelError("This context cannot connect to a board.")
    board = ctx.attach(port, connect=False)
    board.note = say
    return board.connect()


def _choose(ctx: MagicContext, found: list[PortInfo]) -> None:
    """%connect alone: what is connected now, then the ports and emulated boards to choose."""
    from mpkernel.board.ports import format_ports

    ctx.state["listed_ports"] = [p.device for p in found]
    current = ctx.peek_board()
    now = (f"Connected now to {_where(current)}" if current is not None
           else "No board is connected yet.")
    emulated = emulated_choices()
    listing = format_ports(found) if found else "No serial ports found."
    sims = ", ".join(f"%connect {value} ({label.partition(' - ')[2]})"
                     for label, value in emulated)
    text = (f"{now}\n{listing}\nChoose one with %connect N (a number above), %connect PORT, "
            f"or an emulated board: {sims}.")
    if not ctx.widgets_ok:
        ctx.write(text + "\n")
        return
    from mpkernel.widgets import port_choices, port_picker

    choices = port_choices(found, emulated)
    if current is not None and not any(_same_board(v, current) for _, v in choices):
        choices.insert(0, (f"{current.port} - connected now", current.port))
    in_use = next((v for _, v in choices if current is not None and _same_board(v, current)), "")
    likely = next((p.device for p in found if p.is_likely_board), "")
    # The board in use first; else a likely board; else the emulated micro:bit, which always
    # works, rather than the first serial port (on most PCs a built-in /dev/ttyS0).
    default = in_use or likely or "sim"
    port_picker(choices, default, lambda port, say: connect_to(ctx, port, say),
                heading=now, text=text, show=ctx.show)


def unopened_board(ctx: MagicContext, port: str) -> Board:
    """A Board on `port`, not connected yet, for magics that open the port their own way
    (rescue resets the board before talking to it; flash frees the port for esptool).

    With a kernel it becomes the kernel's board, replacing any other; without one (a test's
    context) the caller owns it.
    """
    if ctx.attach is not None:
        board = ctx.attach(port, connect=False)
    else:
        from mpkernel.board.connect import new_board

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
    """List the magics, or explain one: `%help put`.

    Shown as a table where the frontend renders HTML, as wrapped text otherwise.
    """
    from mpkernel.display import Rich

    magics = registry()
    if args.name:
        name = args.name.lstrip("%")
        found = [m for key, m in magics.items() if key.lstrip("%") == name]
        if not found:
            raise MpkernelError(f"No magic named {args.name}.", "%help lists them all.")
        for m in found:
            ctx.display(Rich(m.parser().format_help(), magic_html(m)))
        return
    rows = [(key, first_sentence(magics[key].help)) for key in sorted(magics)]
    title = "Magics (run %help NAME for one; `obj?` shows help on a name):"
    text = [title.replace("`", "")]
    for key, what in rows:
        # A hanging indent under the description: wrapped lines never start at column 0,
        # and no line is long enough for a frontend to break it inside a word.
        text.extend(textwrap.wrap(what, 78, initial_indent=f"  {key:<14} ",
                                  subsequent_indent=" " * 17, break_long_words=False))
    html_rows = "".join(f"<tr><td><code>{escape(k)}</code></td><td style='text-align:left'>"
                        f"{code_html(w)}</td></tr>" for k, w in rows)
    ctx.display(Rich("\n".join(text) + "\n",
                     f"<p>{code_html(title)}</p><table><thead><tr><th>magic</th>"
                     f"<th style='text-align:left'>what it does</th></tr></thead>"
                     f"<tbody>{html_rows}</tbody></table>"))


def code_html(text: str) -> str:
    """Escaped HTML where `backticked` words become <code>."""
    parts = escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def magic_html(m: Magic) -> str:
    """One magic's help as HTML: usage, its docstring's paragraphs, a table of arguments."""
    parser = m.parser()
    usage = " ".join(parser.format_usage().split()).removeprefix("usage: ")
    paragraphs = "".join(_paragraph_html(p) for p in m.help.split("\n\n") if p.strip())
    rows = []
    for action in parser._actions:
        if action.help is argparse.SUPPRESS:
            continue
        names = ", ".join(action.option_strings) or action.dest
        if action.option_strings and action.nargs != 0:
            names += " " + (action.metavar or action.dest.upper())
        rows.append(f"<tr><td><code>{escape(names)}</code></td>"
                    f"<td style='text-align:left'>{code_html(action.help or '')}</td></tr>")
    return (f"<p><code>{escape(usage)}</code></p>{paragraphs}"
            f"<table><tbody>{''.join(rows)}</tbody></table>")


def _paragraph_html(paragraph: str) -> str:
    lines = paragraph.strip().split("\n")
    if sum(line.startswith("%") for line in lines) > len(lines) / 2:
        # A block of examples, one per line: keep its lines and columns.
        return f"<pre>{escape(paragraph.strip())}</pre>"
    return f"<p>{code_html(' '.join(paragraph.split()))}</p>"


def first_sentence(doc: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line."""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    end = paragraph.find(". ")
    return paragraph if end < 0 else paragraph[: end + 1]


@magic("host", cell=True)
def host(ctx: MagicContext, args: argparse.Namespace, body: str) -> None:
    """Run the cell on this computer's Python (IPython), not on the board: for plotting data
    pulled with %get, preparing files, or anything the board cannot do.

    Its `board` object reaches the board: `board.exec(code)` (output streamed),
    `board.eval(expr)` (a Python value), `board.get(path)`, `board.put(data_or_file, path)`."""
    raise MpkernelError("%%host cells are run by the kernel itself.")
