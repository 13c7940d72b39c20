"""The magic registry: one small module per family, each handler registered by name.

A handler is `handler(ctx, args)` for a line magic or `handler(ctx, args, body)` for a cell
magic (`%%name`). Its docstring is its `%help` text. Arguments are declared with `arg(...)`
and parsed by a fresh argparse parser per call, so no parser lives as a global and a bad
argument becomes a `CellRefused` with the usage line instead of `SystemExit`.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mpkernel.errors import CellRefused

if TYPE_CHECKING:
    from mpkernel.board.board import Board
    from mpkernel.display import Progress

# Families are imported on first use of the registry, which fills it by side effect.
FAMILIES = ("core", "ports", "files", "flash", "host", "mqtt", "timing")


@dataclass(frozen=True)
class Arg:
    flags: tuple[str, ...]
    options: dict[str, Any]


def arg(*flags: str, **options: Any) -> Arg:
    """Declare one argparse argument of a magic, as `add_argument(*flags, **options)`."""
    return Arg(flags, options)


@dataclass(frozen=True)
class Magic:
    name: str
    handler: Callable[..., Any]
    args: tuple[Arg, ...]
    cell: bool
    raw: bool = False  # the handler gets the line as written (args.line): code, not words

    @property
    def help(self) -> str:
        return inspect.cleandoc(self.handler.__doc__ or "")

    def usage(self) -> str:
        return self.parser().format_usage().strip()

    def parser(self) -> argparse.ArgumentParser:
        prefix = "%%" if self.cell else "%"
        # Raw description: a docstring's own line breaks (a table of examples) are kept.
        parser = _RaisingParser(prog=prefix + self.name, description=self.help, add_help=True,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        for a in self.args:
            parser.add_argument(*a.flags, **a.options)
        return parser

    def parse(self, line: str) -> argparse.Namespace:
        if self.raw and line.strip() not in ("-h", "--help"):
            return argparse.Namespace(line=line)
        try:
            words = shlex.split(line, posix=True)
        except ValueError as err:
            raise CellRefused(f"%{self.name}: {err}", self.usage()) from None
        return self.parser().parse_args(words)


class HelpRequested(Exception):
    """`-h`/`--help` was given: the text is shown instead of running the magic."""


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise CellRefused(f"{self.prog}: {message}", self.format_usage().strip())

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise CellRefused(message or f"{self.prog}: bad arguments", self.format_usage().strip())

    def print_help(self, file: Any = None) -> None:
        raise HelpRequested(self.format_help())


_REGISTRY: dict[str, Magic] = {}


def magic(name: str, *args: Arg, cell: bool = False,
          raw: bool = False) -> Callable[[Callable[..., Any]], Callable]:
    """Register a handler as `%name` (or `%%name` with cell=True); raw=True passes the line
    unsplit as `args.line` (the args then only document it for %help)."""

    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        key = ("%%" if cell else "%") + name
        if key in _REGISTRY:
            raise RuntimeError(f"magic {key} registered twice")
        _REGISTRY[key] = Magic(name, handler, args, cell, raw)
        return handler

    return register


def registry() -> dict[str, Magic]:
    """All magics by their written form (`%ls`, `%%writefile`), loading the families once."""
    for family in FAMILIES:
        importlib.import_module(f"mpkernel.magics.{family}")
    return _REGISTRY


@dataclass
class MagicContext:
    """What a magic handler may use; the kernel builds one per cell, tests build their own.

    - `board`: the connected Board (connecting lazily on first use).
    - `write(text)`: stdout text to the notebook, streamed.
    - `progress(label, total)`: a Progress (widget bar or one updating text line).
    - `confirm(question)`: True only if the user answered yes; False where no stdin exists.
    - `display(obj)`: show a rich object (a widget, HTML).
    - `state`: per-kernel dict for magics that keep settings between cells.
    - `resolve_port()`: the port the kernel would use now (without opening it).
    - `peek_board()`: the Board if one is connected, else None (never connects).
    - `attach(port, connect=True)`: make a Board on `port` the kernel's board (closing any
      other), connected unless `connect=False`.
    """

    get_board: Callable[[], Board]
    write: Callable[[str], None]
    make_progress: Callable[[str, int], Progress]
    ask: Callable[[str], str] | None = None
    show: Callable[[Any], None] | None = None
    state: dict[str, Any] = field(default_factory=dict)
    widgets_ok: bool = False
    kernel: Any = None
    resolve_port: Callable[[], str] | None = None
    peek_board: Callable[[], Board | None] = lambda: None
    attach: Callable[..., Board] | None = None

    @property
    def board(self) -> Board:
        return self.get_board()

    def progress(self, label: str, total: int) -> Progress:
        return self.make_progress(label, total)

    def confirm(self, question: str) -> bool:
        if self.ask is None:
            self.write(f"{question}\n(no way to ask here: not confirmed; add --yes to proceed)\n")
            return False
        answer = self.ask(f"{question} [y/N] ")
        return answer.strip().lower() in ("y", "yes")

    def display(self, obj: Any) -> None:
        if self.show is not None:
            self.show(obj)
        else:
            self.write(f"{obj}\n")
