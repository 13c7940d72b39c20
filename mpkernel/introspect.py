"""Editor help from the board: Tab completion and inspection (shift-Tab, `obj?`).

Each request costs at most one short exec on the board, which answers in milliseconds. Only
dotted identifiers are ever evaluated there, never arbitrary expressions, so completing
`f().x` cannot call `f`. A board that is absent, busy running a cell, or failing gives no
board names rather than an error: completion must never get in the user's way.
"""

from __future__ import annotations

import ast
import keyword
import re
import weakref
from typing import Any, Protocol

from mpkernel import docs
from mpkernel.errors import MpkernelError

# Internal names mpkernel leaves on the board (session marker, result holder).
HIDDEN_PREFIX = "__mpk_"
EXEC_TIMEOUT = 3.0

# Used when the firmware cannot list its modules (no help('modules')).
COMMON_MODULES = (
    "array", "binascii", "builtins", "collections", "errno", "framebuf", "gc", "hashlib",
    "io", "json", "machine", "math", "micropython", "network", "os", "random", "re", "select",
    "socket", "struct", "sys", "time", "uasyncio", "asyncio", "ubinascii", "ucollections",
    "uhashlib", "uio", "ujson", "uos", "urandom", "ure", "uselect", "usocket", "ustruct",
    "utime", "microbit", "music", "neopixel", "radio", "speech", "esp", "esp32", "rp2",
)

_DOTTED = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
_NAME_AT_END = re.compile(r"((?:[A-Za-z_]\w*\.)*)(\w*)$")
_IMPORT = re.compile(r"^\s*import\s+(?:[\w.]+\s*,\s*)*(\w*)$")
_FROM = re.compile(r"^\s*from\s+(\w*)$")
_FROM_IMPORT = re.compile(r"^\s*from\s+([A-Za-z_]\w*)\s+import\s+(?:\w+\s*,\s*)*(\w*)$")
_MAGIC = re.compile(r"^\s*(%%?[\w-]*)$")

# Module names parsed from help('modules'), once per connection: a new connection opens a
# new Link object, so keying on it forgets the list when the board (or firmware) changes.
_module_cache: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()


class BoardLike(Protocol):
    connected: bool
    running: bool

    def exec(self, code: str, *args: Any, **kwargs: Any) -> str: ...


def _usable(board: BoardLike | None) -> bool:
    return board is not None and bool(board.connected) and not board.running


def _ask(board: BoardLike, code: str) -> str | None:
    """Run a short program; None on any board-side failure (the caller shows nothing)."""
    try:
        # Not interruptible: an interrupt left over from the last cell must not make every
        # completion fail until the next cell starts.
        return board.exec(code, timeout=EXEC_TIMEOUT, interruptible=False)
    except MpkernelError:
        return None


def _literal(text: str | None) -> Any:
    """The last printed line of a board answer, parsed as a Python literal (None if not)."""
    if not text or not text.strip():
        return None
    try:
        return ast.literal_eval(text.strip().splitlines()[0])
    except (ValueError, SyntaxError):
        return None


def _visible(names: list[str], prefix: str) -> list[str]:
    """Drop mpkernel's own names; show _private names only when the user typed `_`."""
    out = {
        n for n in names
        if isinstance(n, str) and n.startswith(prefix) and not n.startswith(HIDDEN_PREFIX)
        and (prefix.startswith("_") or not n.startswith("_"))
    }
    return sorted(out)


# -- what the board knows ----------------------------------------------------------------------
def board_names(board: BoardLike, prefix: str) -> list[str]:
    """Globals and builtins starting with `prefix`."""
    code = (
        "def __mpk_c(p):\n"
        " try:\n"
        "  import builtins;b=dir(builtins)\n"
        " except ImportError:\n"
        "  b=[]\n"
        " print(repr([n for n in list(globals())+b if n.startswith(p)]))\n"
        f"__mpk_c({prefix!r})\n"
        "del __mpk_c\n"
    )
    found = _literal(_ask(board, code))
    return _visible(found, prefix) if isinstance(found, list) else []


def attribute_names(board: BoardLike, owner: str, prefix: str) -> list[str]:
    """Attributes of the object named by the dotted identifier `owner`."""
    if not _DOTTED.match(owner):
        return []
    code = f"print(repr([n for n in dir({owner}) if n.startswith({prefix!r})]))"
    found = _literal(_ask(board, code))
    return _visible(found, prefix) if isinstance(found, list) else []


def module_names(board: BoardLike) -> list[str]:
    """Importable modules: built-in ones (cached per connection) and .py files on the board."""
    key = getattr(board, "link", None) or board
    cached = _module_cache.get(key)
    listing = "" if cached is not None else " try:\n  help('modules')\n except Exception:\n  pass\n"
    code = (
        "def __mpk_m():\n"
        " try:\n"
        "  import os\n"
        " except ImportError:\n"
        "  import uos as os\n"
        " print(repr([f[:-3] for f in os.listdir() if f.endswith('.py')]))\n"
        + listing
        + "__mpk_m()\ndel __mpk_m\n"
    )
    answer = _ask(board, code)
    files = _literal(answer)
    if cached is None:
        cached = parse_help_modules("\n".join((answer or "").splitlines()[1:]))
        if answer is not None:
            try:
                _module_cache[key] = cached
            except TypeError:  # a key that cannot be weakly referenced: just don't cache
                pass
    return sorted(set(cached) | set(files if isinstance(files, list) else []))


def parse_help_modules(text: str) -> list[str]:
    """Module names from help('modules') output (columns of names, then a 'Plus any' line);
    the common MicroPython modules if the firmware printed none."""
    names: list[str] = []
    for line in text.splitlines():
        if line.strip().lower().startswith("plus any"):
            break
        names.extend(w for w in line.split() if re.fullmatch(r"[A-Za-z_][\w.]*", w))
    return names or list(COMMON_MODULES)


# -- completion -----------------------------------------------------------------------------
def _reply(matches: list[str], start: int, end: int) -> dict[str, Any]:
    return {
        "status": "ok", "matches": matches, "cursor_start": start, "cursor_end": end,
        "metadata": {},
    }


# -- without a board --------------------------------------------------------------------------
# Builtin exceptions every MicroPython has; the other builtins come from the docs table.
_EXCEPTIONS = (
    "AssertionError", "AttributeError", "Exception", "ImportError", "IndexError",
    "KeyError", "KeyboardInterrupt", "MemoryError", "NameError", "NotImplementedError",
    "OSError", "RuntimeError", "StopIteration", "SyntaxError", "SystemExit", "TypeError",
    "ValueError", "ZeroDivisionError",
)


def static_names(prefix: str) -> list[str]:
    """Builtins starting with `prefix`, from the host's table (no board needed)."""
    builtins = [k for k, (sig, _) in docs.DOCS.items()
                if "." not in k and not sig.startswith("module ")]
    return _visible(builtins + list(_EXCEPTIONS), prefix)


def static_attributes(owner: str, prefix: str) -> list[str]:
    """Documented members of the module (or module member) `owner`: `utime`, `os`,
    `microbit.display` (module aliases such as utime -> time included)."""
    head, _, rest = owner.partition(".")
    lead = ".".join(filter(None, [docs.MODULE_ALIASES.get(head, head), rest])) + "."
    return _visible([k[len(lead):] for k in docs.DOCS
                     if k.startswith(lead) and "." not in k[len(lead):]], prefix)


def complete(board: BoardLike | None, code: str, cursor_pos: int) -> dict[str, Any]:
    """A complete_reply content for `code` with the cursor at `cursor_pos`.

    Magics and keywords come from the host. Names, attributes and modules come from an idle
    connected board; without one (before the first cell, or while the board is away) from
    the host's tables of builtins, common modules and their documented members. Completion
    never connects: that could stop a program running on the board just for a Tab.
    """
    cursor_pos = max(0, min(cursor_pos, len(code)))
    line = code[:cursor_pos].rsplit("\n", 1)[-1]
    m = _MAGIC.match(line)
    if m:
        token = m.group(1)
        from mpkernel.magics import registry

        names = sorted(k for k in registry() if k.startswith(token))
        return _reply(names, cursor_pos - len(token), cursor_pos)
    ok = _usable(board)
    for pattern in (_IMPORT, _FROM):
        m = pattern.match(line)
        if m:
            token = m.group(1)
            found = module_names(board) if ok else list(COMMON_MODULES)  # type: ignore[arg-type]
            return _reply(_visible(found, token), cursor_pos - len(token), cursor_pos)
    m = _FROM_IMPORT.match(line)
    if m:
        module, token = m.group(1), m.group(2)
        names: list[str] = []
        if ok:
            answer = _ask(board, f"print(repr([n for n in dir(__import__({module!r})) "  # type: ignore[arg-type]
                          f"if n.startswith({token!r})]))")
            found = _literal(answer)
            names = _visible(found, token) if isinstance(found, list) else []
        else:
            names = static_attributes(module, token)
        return _reply(names, cursor_pos - len(token), cursor_pos)
    m = _NAME_AT_END.search(line)
    owner, token = (m.group(1), m.group(2)) if m else ("", "")
    start = cursor_pos - len(token)
    before = line[: len(line) - len(owner) - len(token)]
    # Attribute of something that is not a plain name (`"a".up`, `f().x`, `1.5`): evaluating
    # it could run code, so offer nothing.
    if (before.endswith(".") or (token[:1].isdigit() and not owner)
            or (before[-1:].isalnum() or before[-1:] == "_")):
        return _reply([], start, cursor_pos)
    if owner:
        if ok:
            names = attribute_names(board, owner[:-1], token)  # type: ignore[arg-type]
        else:
            names = static_attributes(owner[:-1], token)
        return _reply(names, start, cursor_pos)
    if not token:
        return _reply([], start, cursor_pos)  # Tab on nothing: don't dump every name
    names = board_names(board, token) if ok else static_names(token)  # type: ignore[arg-type]
    words = [k for k in keyword.kwlist if k.startswith(token)]
    return _reply(sorted(set(names) | set(words)), start, cursor_pos)


# -- inspection -----------------------------------------------------------------------------
def expression_at(code: str, cursor_pos: int) -> str:
    """The dotted name under the cursor, or the function whose call the cursor is inside."""
    cursor_pos = max(0, min(cursor_pos, len(code)))
    left, right = code[:cursor_pos], code[cursor_pos:]
    m = re.search(r"[A-Za-z_][\w.]*$", left)
    tail = re.match(r"\w*", right)
    word = (m.group(0) if m else "") + (tail.group(0) if tail and m else "")
    word = word.strip(".")
    if word and _DOTTED.match(word):
        return word
    # Inside a call: `print(1, |` inspects print, as shift-Tab in IPython does.
    depth = 0
    for i in range(len(left) - 1, -1, -1):
        ch = left[i]
        if ch in ")]}":
            depth += 1
        elif ch in "([{":
            if depth == 0:
                if ch != "(":
                    return ""
                m = re.search(r"[A-Za-z_][\w.]*$", left[:i])
                return m.group(0) if m and _DOTTED.match(m.group(0)) else ""
            depth -= 1
    return ""


def _describe(board: BoardLike, expr: str) -> tuple[str, str | None, list[str] | None, str | None,
                                                      str | None] | None:
    """Ask the board about `expr`: (type, repr, public members, head module, owner type)."""
    head = expr.split(".")[0]
    owner = expr.rsplit(".", 1)[0] if "." in expr else ""
    owner_type = f"repr(type({owner}))" if owner else "None"
    code = (
        "def __mpk_i():\n"
        " try:\n"
        f"  o={expr}\n"
        " except Exception:\n"
        "  print('None');return\n"
        " t=type(o);m=None;r=None\n"
        " try:\n"
        "  r=repr(o)\n"
        "  if len(r)>200:r=r[:200]+'...'\n"
        " except Exception:\n"
        "  pass\n"
        " if t is type or repr(t)==\"<class 'module'>\":\n"
        "  m=[k for k in dir(o) if k[0]!='_']\n"
        f" h={head}\n"
        " hm=getattr(h,'__name__',None) if repr(type(h))==\"<class 'module'>\" else None\n"
        f" print(repr((repr(t),r,m,hm,{owner_type})))\n"
        "__mpk_i()\n"
        "del __mpk_i\n"
    )
    found = _literal(_ask(board, code))
    if isinstance(found, tuple) and len(found) == 5:
        return found  # type: ignore[return-value]
    return None


def _type_name(type_repr: str | None) -> str:
    m = re.match(r"<class '([\w.]+)'>", type_repr or "")
    return m.group(1) if m else ""


def _doc_for(expr: str, facts: tuple | None, platform: str) -> tuple[str, str] | None:
    """Find the static help for `expr`, using what the board said to resolve aliases."""
    parts = expr.split(".")
    candidates = [expr]
    if facts is not None:
        type_repr, _, _, head_module, owner_type = facts
        if head_module:
            candidates.append(".".join([head_module, *parts[1:]]))
        prefix = docs.TYPE_PREFIX.get(_type_name(owner_type))
        if prefix and len(parts) > 1:
            candidates.append(f"{prefix}.{parts[-1]}")
        prefix = docs.TYPE_PREFIX.get(_type_name(type_repr))
        if prefix and len(parts) == 1 and _type_name(type_repr) not in ("str", "list", "dict"):
            candidates.append(prefix)
    if platform == "microbit" or facts is None:
        # The micro:bit REPL starts with `from microbit import *` already done.
        candidates.append("microbit." + expr)
    for key in candidates:
        found = docs.lookup(key)
        if found:
            return found
    return None


def _text(expr: str, level: int, board: BoardLike | None) -> str | None:
    facts = _describe(board, expr) if _usable(board) and _DOTTED.match(expr) else None  # type: ignore[arg-type]
    caps = getattr(board, "caps", None)
    platform = getattr(caps, "platform", "") if caps is not None else ""
    doc = _doc_for(expr, facts, platform)
    if facts is None and doc is None:
        return None
    lines: list[str] = []
    if doc:
        lines += [f"Signature: {doc[0]}", f"Docstring: {doc[1]}"]
    if facts is not None:
        type_repr, value, members, _, _ = facts
        kind = _type_name(type_repr) or type_repr
        lines.append(f"Type:      {kind} (on the board)")
        if value is not None and kind not in ("function", "bound_method", "module", "type"):
            lines.append(f"Value:     {value}")
        if members:
            shown = members if level > 0 else members[:40]
            more = f" ... (+{len(members) - len(shown)}; {expr}?? lists all)" \
                if len(shown) < len(members) else ""
            lines.append("Members:   " + ", ".join(shown) + more)
        if not doc:
            lines.append("Docstring: <none: the firmware keeps no docstrings>")
    if level > 0:
        lines.append("Source:    not available (the board holds only compiled bytecode)")
    return "\n".join(lines)


def inspect_text(board: BoardLike | None, expr: str, level: int) -> str:
    """Text for `expr?` (level 0) or `expr??` (level 1), shown in the pager."""
    text = _text(expr.strip(), level, board)
    if text is None:
        return f"Object `{expr}` not found."
    return text


def inspect_reply(
    board: BoardLike | None, code: str, cursor_pos: int, detail_level: int = 0
) -> dict[str, Any]:
    """An inspect_reply content for the name under (or the call around) the cursor."""
    expr = expression_at(code, cursor_pos)
    text = _text(expr, detail_level, board) if expr else None
    if text is None:
        return {"status": "ok", "found": False, "data": {}, "metadata": {}}
    return {"status": "ok", "found": True, "data": {"text/plain": text}, "metadata": {}}
