"""The Jupyter kernel: protocol glue only. Cells run on the board through Board.

Subclassing IPythonKernel gives comms (ipywidgets), history, is_complete and a host-side
IPython for `%%host` cells; cells themselves never reach the host Python.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ipykernel.ipkernel import IPythonKernel
from traitlets import Bool, Enum, Float, Integer, Unicode, observe

from mpkernel import __version__, cells, display, output_filters, platform_support
from mpkernel.board.board import Board
from mpkernel.board.connect import BoardSettings, new_board, replace_board
from mpkernel.errors import DeviceError, MpkernelError
from mpkernel.magics import HelpRequested, MagicContext, registry

EXIT_WORDS = ("exit", "quit", "exit()", "quit()")


class MicroPythonKernel(IPythonKernel):
    implementation = "mpkernel"
    implementation_version = __version__
    language_info = {
        "name": "python",
        "version": "3",
        "mimetype": "text/x-python",
        "file_extension": ".py",
        "pygments_lexer": "python3",
        "codemirror_mode": {"name": "python", "version": 3},
        "nbconvert_exporter": "python",
    }
    banner = "mpkernel " + __version__ + ": cells run on a MicroPython board (%help for magics)"
    help_links = [{"text": "MicroPython docs", "url": "https://docs.micropython.org/"}]

    port = Unicode(
        "", help="Port of the board: a device path, a pyserial URL, or 'sim' (emulated board)."
    ).tag(config=True)
    baudrate = Integer(115200, help="Baud rate of the board's serial port.").tag(config=True)
    reattach_wait = Float(
        10.0, help="Seconds to wait for a vanished board to come back before giving up."
    ).tag(config=True)
    fallback_to_sim = Bool(
        True, help="With no port configured and no board found, use the emulated micro:bit."
    ).tag(config=True)
    microbit_firmware = Unicode(
        "", help="The firmware .hex the emulated micro:bit boots; empty looks one up "
        "(Debian's package, then uflash's). $MPKERNEL_MICROBIT_FIRMWARE wins over it.",
    ).tag(config=True)
    widgets = Enum(
        ["auto", "on", "off"], "auto",
        help="Progress bars and pickers as ipywidgets: on, off, or auto (when the frontend "
        "has a widget manager).",
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.board: Board | None = None
        self.chosen_port = ""  # set by %connect; wins over everything else
        self.magic_state: dict[str, Any] = {}
        self._frontend_has_widgets = False
        # Host code taking part in board cells (see output_filters), by feature name.
        self.cell_filters: dict[str, output_filters.FilterFactory] = {}
        # While a magic runs: its cell and the cell line it stands on, so a magic that runs
        # the cell's code (%time, %%time) can show the board's errors as `Cell In[n], line M`.
        self.magic_place: display.CellPlace | None = None
        self._use_microbit_firmware()

    @observe("microbit_firmware")
    def _use_microbit_firmware(self, change: Any = None) -> None:
        # The emulated micro:bit is started below the Board (Board.open_port), which takes no
        # settings, so the firmware is named for this kernel's process (one kernel each).
        from mpkernel.sim.microbit import configure_firmware

        configure_firmware(self.microbit_firmware)

    # -- where the board is -----------------------------------------------------------------
    def resolve_port(self) -> str:
        """%connect, then MPKERNEL_PORT, then config, then the one board found, then `sim`."""
        chosen = self.chosen_port or os.environ.get("MPKERNEL_PORT", "") or self.port
        if chosen:
            return chosen
        from mpkernel.board.ports import list_ports, pick_port
        from mpkernel.errors import PortError

        try:
            return pick_port()
        except PortError:
            # Several boards: the user must choose. None: the emulated board is the embedded
            # default, so a newcomer without hardware still gets a working notebook.
            if not self.fallback_to_sim or any(p.is_likely_board for p in list_ports()):
                raise
            from mpkernel import sim

            sim.check_installed()  # SimulatorMissing names what to install
            self._write(
                "No board found on the serial ports, so mpkernel uses the emulated "
                "micro:bit. Plug in a board and run %connect to use it instead.\n"
            )
            return "sim"

    def get_board(self) -> Board:
        if self.board is None:
            self.board = new_board(self.resolve_port(), self._board_settings())
        self.board.note = self._write
        if not self.board.connected and not self.board.caps.version:
            self.board.ensure_ready()
        return self.board

    def attach(self, port: str, connect: bool = True) -> Board:
        """Make a Board on `port` the kernel's board (closing any other); connect if asked."""
        self.board = replace_board(self.board, port, self._board_settings(), self._write)
        self.chosen_port = port
        return self.get_board() if connect else self.board

    def _board_settings(self) -> BoardSettings:
        return BoardSettings(self.baudrate, self.reattach_wait)

    # -- output ---------------------------------------------------------------------------
    def _write(self, text: str, name: str = "stdout") -> None:
        if text:
            self.send_response(self.iopub_socket, "stream", {"name": name, "text": text})

    def _show(self, obj: Any) -> Any:
        # IPython's display() goes through the shell's display publisher, which knows the
        # current cell (parent header) and handles widgets' mimebundles. The handle lets a
        # widget's output be replaced by text when its job is done (widgets.py).
        from IPython.display import display as ipython_display

        return ipython_display(obj, display_id=True)

    def _widgets_ok(self) -> bool:
        if self.widgets == "auto":
            return self._frontend_has_widgets
        return self.widgets == "on"

    async def comm_info_request(self, stream: Any, ident: Any, parent: Any) -> None:
        # JupyterLab and Notebook's widget managers ask about the widget comm target when
        # they start; a console never does. That is the best sign that widgets will render.
        target = parent.get("content", {}).get("target_name") or ""
        if target.startswith("jupyter.widget"):
            self._frontend_has_widgets = True
        await super().comm_info_request(stream, ident, parent)

    def _progress(self, label: str, total: int) -> display.Progress:
        if self._widgets_ok():
            from mpkernel.widgets import WidgetProgress

            return WidgetProgress(label, total, show=self._show)
        return display.TextProgress(label, total, self._write)

    def magic_context(self, allow_stdin: bool) -> MagicContext:
        return MagicContext(
            get_board=self.get_board,
            write=self._write,
            make_progress=self._progress,
            ask=self.raw_input if allow_stdin else None,
            show=self._show,
            state=self.magic_state,
            widgets_ok=self._widgets_ok(),
            kernel=self,
            resolve_port=self.resolve_port,
            peek_board=lambda: self.board if self.board and self.board.connected else None,
            attach=self.attach,
        )

    # -- executing --------------------------------------------------------------------------
    def _send_interrupt_children(self) -> None:
        # ipykernel drops message-mode interrupts on Windows; platform_support delivers them.
        if not platform_support.deliver_interrupt_message():
            super()._send_interrupt_children()

    @contextmanager
    def _interrupts_to_board(self) -> Iterator[None]:
        # Both kernelspec interrupt modes arrive as SIGINT in this thread. Turning it into a
        # request keeps KeyboardInterrupt from landing in the middle of a serial write; the
        # board's ladder acts on the request within one read tick.
        def on_sigint(signum: int, frame: Any) -> None:
            if self.board is not None:
                self.board.interrupt()

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    async def do_execute(  # type: ignore[override]
        self,
        code: str,
        silent: bool,
        store_history: bool = True,
        user_expressions: dict | None = None,
        allow_stdin: bool = False,
        *,
        cell_meta: Any = None,
        cell_id: Any = None,
    ) -> dict[str, Any]:
        cell = cells.parse_cell(code)
        if cell.cell_magic and cell.cell_magic[0] == "host":
            # %%host runs on this computer's Python, with IPython's own machinery.
            from mpkernel.host import prepare_host_cell
            from mpkernel.host.proxy import notes_after

            prepare_host_cell(self)  # the `board` object of host cells
            done = await super().do_execute(
                cell.cell_magic[2], silent, store_history, user_expressions, allow_stdin
            )
            if not silent:
                # A board error's hint follows IPython's error message, as in board cells.
                self._write(notes_after(self.shell))
            return done
        shell = self.shell
        assert shell is not None
        count = shell.execution_count
        if store_history:
            shell.history_manager.store_inputs(count, code)
            shell.execution_count += 1
        reply: dict[str, Any] = {
            "status": "ok", "execution_count": count, "payload": [], "user_expressions": {},
        }
        if code.strip() in EXIT_WORDS:
            # As in IPython: `exit` leaves jupyter console (the ask_exit payload); sent to the
            # board it would only be a NameError. Frontends without a way to exit ignore it.
            reply["payload"].append({"source": "ask_exit", "keepkernel": False})
            return reply
        if self.board is not None:
            self.board.start_cell()
        with self._interrupts_to_board():
            try:
                self._run_cell(cell, code, count, silent, allow_stdin, reply)
            except HelpRequested as shown:
                self._write(str(shown))
            except Exception as err:  # every failure becomes one readable error message
                content, notes = display.error_parts(err)
                if not silent:
                    self.send_response(self.iopub_socket, "error", content)
                    # What to do (a hint, an interrupt's note) follows the error as plain
                    # output: the red error holds only what went wrong (display.error_parts).
                    self._write("".join(note + "\n" for note in notes))
                reply.update(status="error", **content)
                if not isinstance(err, MpkernelError):
                    self.log.exception("unexpected error in a cell")
        return reply

    def _run_cell(
        self, cell: cells.Cell, typed: str, count: int, silent: bool, allow_stdin: bool,
        reply: dict,
    ) -> None:
        magics = registry()
        ctx = self.magic_context(allow_stdin)
        at = _magic_lines(typed)
        for index, (name, line) in enumerate(cell.line_magics):
            place = display.CellPlace(count, at[index])
            self._run_magic(magics, "%" + name, ctx, line, None, place)
        if cell.cell_magic:
            name, line, body = cell.cell_magic
            self._run_magic(magics, "%%" + name, ctx, line, body, display.CellPlace(count, at[0]))
            return
        if cell.inspect:
            expr, level = cell.inspect
            from mpkernel.introspect import inspect_text

            text = inspect_text(self.get_board(), expr, level)
            reply["payload"].append({"source": "page", "data": {"text/plain": text}, "start": 0})
            return
        if cell.code.strip():
            self._run_code(cell.code, count, silent)

    def _run_magic(
        self, magics: dict, key: str, ctx: MagicContext, line: str, body: str | None,
        place: display.CellPlace | None = None,
    ) -> None:
        magic = magics.get(key)
        if magic is None:
            known = ", ".join(sorted(magics))
            raise MpkernelError(
                f"Unknown magic {key}.", f"Known magics: {known}. %help NAME explains one."
            )
        args = magic.parse(line)
        self.magic_place = place
        try:
            if body is None:
                magic.handler(ctx, args)
            else:
                magic.handler(ctx, args, body)
        finally:
            self.magic_place = None

    def _run_code(self, code: str, count: int, silent: bool) -> None:
        cells.refuse_control_bytes(code)
        typed = code
        code, has_result = cells.show_trailing_expression(code)
        # No start_cell() here: do_execute marked the cell's start, and an interrupt during a
        # line magic above this code must still stop it. A board created just now has no
        # interrupts to forget.
        board = self.get_board()
        out = display.CellOutput(self._write, board, self.cell_filters, has_result=has_result,
                                 show=not silent)
        try:
            with out:
                board.exec(code, on_output=out.feed, on_idle=out.idle)
        except DeviceError as err:  # the cell's own frames as `Cell In[n], line M`
            err.traceback = display.cell_traceback(err.traceback, typed, count)
            raise
        # The board prints repr(None) for a None result; IPython shows nothing for None.
        if out.result not in (None, "None") and not silent:
            self.send_response(
                self.iopub_socket,
                "execute_result",
                {"execution_count": count, "data": {"text/plain": out.result}, "metadata": {}},
            )

    # -- editor help ------------------------------------------------------------------------
    def do_complete(self, code: str, cursor_pos: int | None) -> dict[str, Any]:  # type: ignore[override]
        from mpkernel.introspect import complete

        return complete(self.board, code, len(code) if cursor_pos is None else cursor_pos)

    def do_inspect(  # type: ignore[override]
        self, code: str, cursor_pos: int | None, detail_level: int = 0, omit_sections: Any = ()
    ) -> dict[str, Any]:
        from mpkernel.introspect import inspect_reply

        return inspect_reply(
            self.board, code, len(code) if cursor_pos is None else cursor_pos, detail_level
        )

    def do_history(self, hist_access_type: str, output: bool, raw: bool,  # type: ignore[override]
                   session: int = 0, start: int = 0, stop: int | None = None,
                   n: int | None = None, pattern: str | None = None,
                   unique: bool = False) -> dict[str, Any]:
        reply = super().do_history(hist_access_type, output, raw, session, start, stop, n,
                                   pattern, unique)
        # IPython numbers the running session 0 in range replies but by its real number in
        # tail/search replies; use the real one so a client can ask again for what it was given.
        if hist_access_type == "range" and self.shell is not None:
            real = self.shell.history_manager.session_number
            reply["history"] = [(s or real, line, entry) for s, line, entry in reply["history"]]
        return reply

    def do_shutdown(self, restart: bool) -> dict[str, Any]:  # type: ignore[override]
        if self.board is not None:
            self.board.close()
            self.board = None
        return super().do_shutdown(restart)


def _magic_lines(code: str) -> list[int]:
    """The cell lines (from 1) of a cell's magics as cells.parse_cell finds them: the cell
    magic's line first, or the leading line magics' lines in order (blank and comment lines
    between them skipped)."""
    numbers: list[int] = []
    for number, line in enumerate(code.replace("\r\n", "\n").split("\n"), start=1):
        text = line.strip()
        if text.startswith("%"):
            numbers.append(number)
        elif text and not text.startswith("#"):
            break
    return numbers
