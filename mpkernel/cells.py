"""Host-side preparation of a cell before anything reaches the board (pure functions).

- `parse_cell`: split a cell into line magics, a cell magic, an inspection request or code.
- `refuse_control_bytes`: a raw 0x03/0x04 would break the raw REPL's framing.
- `show_trailing_expression`: make a final expression print its repr behind a marker, so the
  kernel can show it as `Out[n]` the way IPython does, without a second round trip.
- `parse_traceback`: turn the board's traceback text into ename/evalue/lines.
- `is_compile_error`: whether an error proves that none of the program ran.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from mpkernel.errors import CellRefused

# The board prints this byte before the repr of a cell's trailing expression. repr() escapes
# control characters, so it cannot appear inside the value itself.
RESULT_MARK = "\x1e"


@dataclass
class Cell:
    """A cell, split: line magics first, then either a cell magic, an inspection, or code."""

    line_magics: list[tuple[str, str]] = field(default_factory=list)  # (name, argument line)
    cell_magic: tuple[str, str, str] | None = None  # (name, argument line, body)
    inspect: tuple[str, int] | None = None  # (expression, detail level 0/1) for `obj?`
    code: str = ""


_MAGIC_LINE = re.compile(r"^%(?P<name>[A-Za-z_][\w-]*)(?:[ \t]+(?P<args>.*))?$")
_CELL_MAGIC = re.compile(r"^%%(?P<name>[A-Za-z_][\w-]*)(?:[ \t]+(?P<args>.*))?$")
_INSPECT = re.compile(
    r"^(?P<expr>[A-Za-z_][\w.]*)(?P<q>\?{1,2})$|^(?P<q2>\?{1,2})(?P<expr2>[A-Za-z_][\w.]*)$"
)


def parse_cell(text: str) -> Cell:
    """Split a cell. Line magics may stand on the first lines; code follows them."""
    text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    cell = Cell()
    first = 0
    while first < len(lines) and not lines[first].strip():
        first += 1
    if first < len(lines):
        head = lines[first].strip()
        m = _CELL_MAGIC.match(head)
        if m:
            body = "\n".join(lines[first + 1 :])
            cell.cell_magic = (m["name"], m["args"] or "", body)
            return cell
    index = first
    while index < len(lines):
        stripped = lines[index].strip()
        if not stripped or stripped.startswith("#"):
            index += 1
            continue
        m = _MAGIC_LINE.match(stripped)
        if not m:
            break
        cell.line_magics.append((m["name"], m["args"] or ""))
        index += 1
    rest_lines = lines[index:]
    rest = "\n".join(rest_lines)
    stripped_rest = rest.strip()
    m = _INSPECT.match(stripped_rest)
    if m and "\n" not in stripped_rest:
        expr = m["expr"] or m["expr2"]
        marks = m["q"] or m["q2"]
        cell.inspect = (expr, len(marks) - 1)
        return cell
    # Keep the code's line numbers equal to the cell's: magic lines become blank lines.
    cell.code = "\n" * index + rest if stripped_rest else ""
    return cell


def refuse_control_bytes(code: str) -> None:
    """Raise CellRefused naming the line of a raw Ctrl-C (0x03) or Ctrl-D (0x04) byte."""
    for number, line in enumerate(code.split("\n"), start=1):
        for byte, name, escape in (("\x03", "Ctrl-C (0x03)", "\\x03"),
                                   ("\x04", "Ctrl-D (0x04)", "\\x04")):
            col = line.find(byte)
            if col >= 0:
                raise CellRefused(
                    f"Line {number}, column {col + 1} contains a raw {name} byte, which would "
                    "cut the board's REPL protocol short; nothing was sent.",
                    f"Write it as an escape in a string instead ('{escape}').",
                )


def show_trailing_expression(code: str) -> tuple[str, bool]:
    """If the cell ends in an expression, rewrite it to print RESULT_MARK + repr(value).

    Returns (code, rewritten). Line numbers of everything else are unchanged, so the board's
    tracebacks still match the cell. A trailing `;` suppresses the result, as in IPython. Code
    that the host's parser rejects is sent unchanged: MicroPython reports its own errors.
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return code, False
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return code, False
    node = tree.body[-1]
    if (
        isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == "print"
    ):
        # print() returns None: nothing to show, and on a 115200-baud line the ~70 bytes of
        # the rewrite would cost ~6 ms on the commonest cell of all.
        return code, False
    lines = code.split("\n")
    end_line = node.end_lineno or node.lineno
    after = lines[end_line - 1][node.end_col_offset or 0 :]
    if after.strip().startswith(";"):
        return code, False
    if node.col_offset != 0 or ";" in lines[node.lineno - 1][: node.col_offset]:
        return code, False  # `a = 1; b` on one line: leave it alone
    head = lines[: node.lineno - 1]
    expr_lines = lines[node.lineno - 1 : end_line]
    expr_lines[-1] = expr_lines[-1][: node.end_col_offset]
    # 29 bytes in all, wrapped in place so the expression keeps its line; a None result
    # prints 'None', which the host drops, as IPython shows nothing for None.
    expr_lines[0] = "print('\\x1e'+repr((" + expr_lines[0]
    expr_lines[-1] = expr_lines[-1] + ")),end='')"
    return "\n".join(head + expr_lines), True


_EXC_LINE = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)(?::\s?(?P<value>.*))?$")


def parse_traceback(text: str) -> tuple[str, str, list[str]]:
    """Split the board's stderr into (ename, evalue, traceback lines)."""
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines:
        return "Error", "", []
    last = lines[-1].strip()
    m = _EXC_LINE.match(last)
    if m:
        ename, evalue = m["name"], (m["value"] or "").strip()
    else:
        ename, evalue = "Error", last
    return ename, evalue, lines


_FRAME = re.compile(r'^\s*File "(?P<file>[^"]*)", line \d+(?P<rest>.*)$')


def is_compile_error(traceback: str) -> bool:
    """True if the board's stderr is its compile error of the program it was sent.

    MicroPython compiles a whole program before it runs any of it, and such an error has
    exactly one frame, `File "<stdin>", line N`, with no `, in <module>`. An error raised
    while the program ran, a SyntaxError from exec() or from importing a broken module
    included, starts with a `File "<stdin>", line N, in <module>` frame. Both shapes were
    checked on the micro:bit's MicroPython 1.9.2 and on 1.25 (the modern emulated board).
    """
    ename, _, lines = parse_traceback(traceback)
    return ename in ("SyntaxError", "IndentationError") and failed_to_compile(lines)


def failed_to_compile(lines: list[str]) -> bool:
    """True if a parsed traceback (DeviceError.traceback) has the one frame of an error
    raised while compiling the program (a SyntaxError, or the parser's MemoryError "parser
    could not allocate enough memory"): none of the program ran."""
    if len(lines) != 3:
        return False
    frame = _FRAME.match(lines[1])
    return (
        lines[0].strip() == "Traceback (most recent call last):"
        and frame is not None
        and frame["file"] == "<stdin>"
        and not frame["rest"].strip()
    )


_SCOPES = {"<lambda>": ast.Lambda, "<listcomp>": ast.ListComp, "<dictcomp>": ast.DictComp,
           "<setcomp>": ast.SetComp, "<genexpr>": ast.GeneratorExp}


def defines_scope(code: str, name: str, line: int) -> bool:
    """Whether `code` has a function, class, lambda or comprehension called `name` (as the
    board names it in a traceback frame) that spans line `line`. A function defined by an
    earlier cell is also `<stdin>` on the board, with that cell's line numbers: only a scope
    of this very cell may be shown as one of its lines."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    kind = _SCOPES.get(name)
    for node in ast.walk(tree):
        if kind is not None:
            hit = isinstance(node, kind)
        else:
            hit = (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                   and node.name == name)
        if hit and node.lineno <= line <= (getattr(node, "end_lineno", None) or node.lineno):
            return True
    return False
