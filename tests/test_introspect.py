"""Completion and inspection: token handling with a fake board, then the real firmware."""

from __future__ import annotations

from typing import Any

import pytest

from mpkernel import introspect
from mpkernel.board.board import Board
from mpkernel.errors import DeviceError
from mpkernel.magics import registry

GLOBALS = ["__name__", "__mpk_session", "x", "print_count", "display", "os"]
BUILTINS = ["print", "pow", "property", "len", "__import__"]
HELP_MODULES = (
    "__main__          love              os                time\n"
    "array             math              radio             utime\n"
    "microbit          micropython       struct\n"
    "Plus any modules on the filesystem\n"
)


class FakeBoard:
    """Answers the few programs introspect sends, the way the board's Python would."""

    def __init__(self, *, connected: bool = True, running: bool = False) -> None:
        self.connected = connected
        self.running = running
        self.sent: list[str] = []
        self.files = ["main.py", "mylib.py", "data.txt"]
        self.attrs = {"os": ["__name__", "listdir", "remove", "uname"], "x": ["bit_length"],
                      "display": ["scroll", "show", "clear"]}

    def exec(self, code: str, *args: Any, **kwargs: Any) -> str:
        self.sent.append(code)
        if "__mpk_c(" in code:  # globals + builtins
            prefix = code.split("__mpk_c(")[2].split(")")[0].strip("'")
            return repr([n for n in GLOBALS + BUILTINS if n.startswith(prefix)]) + "\r\n"
        if "__mpk_m" in code:  # modules
            files = [f[:-3] for f in self.files if f.endswith(".py")]
            return repr(files) + "\r\n" + (HELP_MODULES if "help('modules')" in code else "")
        if "__mpk_i" in code:  # inspection
            expr = code.split("o=")[1].split("\n")[0]
            if expr == "display.scroll":
                return repr(("<class 'bound_method'>", "<bound_method>", None, None,
                             "<class 'MicroBitDisplay'>")) + "\r\n"
            if expr == "x":
                return repr(("<class 'int'>", "42", None, None, None)) + "\r\n"
            return "None\r\n"
        if code.startswith("print(repr([n for n in dir("):
            owner = code[len("print(repr([n for n in dir("):].split(")")[0]
            prefix = code.split("startswith(")[1].split(")")[0].strip("'")
            if owner not in self.attrs:
                raise DeviceError("NameError", f"name '{owner}' isn't defined", [])
            return repr([n for n in self.attrs[owner] if n.startswith(prefix)]) + "\r\n"
        raise AssertionError(f"unexpected program: {code!r}")


def complete(board: Any, code: str, cursor: int | None = None) -> dict[str, Any]:
    return introspect.complete(board, code, len(code) if cursor is None else cursor)


# -- completion ---------------------------------------------------------------------------------
def test_bare_name_completes_globals_and_builtins() -> None:
    reply = complete(FakeBoard(), "pri")
    assert reply["status"] == "ok"
    assert reply["matches"] == ["print", "print_count"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (0, 3)


def test_name_in_the_middle_of_a_line_and_a_cell() -> None:
    code = "y = 1\nz = pri + 2"
    cursor = code.index("pri") + 3
    reply = complete(FakeBoard(), code, cursor)
    assert reply["matches"] == ["print", "print_count"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (cursor - 3, cursor)


def test_attribute_after_dot() -> None:
    reply = complete(FakeBoard(), "os.li")
    assert reply["matches"] == ["listdir"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (3, 5)
    assert complete(FakeBoard(), "os.")["matches"] == ["listdir", "remove", "uname"]


def test_attribute_of_unknown_name_gives_nothing() -> None:
    assert complete(FakeBoard(), "nosuch.a")["matches"] == []


def test_only_dotted_names_are_evaluated() -> None:
    board = FakeBoard()
    for code in ("f().x", "'abc'.up", "a[0].b", "1.2"):
        assert complete(board, code)["matches"] == [], code
    assert board.sent == []


def test_mpkernel_names_are_hidden_and_private_only_on_underscore() -> None:
    assert "__mpk_session" not in complete(FakeBoard(), "__")["matches"]
    assert complete(FakeBoard(), "__")["matches"] == ["__import__", "__name__"]
    assert complete(FakeBoard(), "os.")["matches"] == ["listdir", "remove", "uname"]


def test_import_completes_modules_and_py_files() -> None:
    reply = complete(FakeBoard(), "import mi")
    assert reply["matches"] == ["microbit", "micropython"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (7, 9)
    assert complete(FakeBoard(), "import my")["matches"] == ["mylib"]
    assert complete(FakeBoard(), "import os, ut")["matches"] == ["utime"]


def test_from_completes_modules() -> None:
    reply = complete(FakeBoard(), "from micro")
    assert reply["matches"] == ["microbit", "micropython"]
    assert reply["cursor_start"] == 5


def test_module_list_is_asked_once_per_connection() -> None:
    board = FakeBoard()
    complete(board, "import mi")
    complete(board, "import ra")
    asked = [code for code in board.sent if "help('modules')" in code]
    assert len(asked) == 1


def test_help_modules_parsing_and_fallback() -> None:
    names = introspect.parse_help_modules(HELP_MODULES)
    assert {"microbit", "utime", "__main__", "struct"} <= set(names)
    assert "Plus" not in names
    assert "machine" in introspect.parse_help_modules("")  # no listing: the common modules


def test_magics_complete_from_the_registry_without_a_board() -> None:
    reply = complete(None, "%l")
    assert reply["matches"] == sorted(k for k in registry() if k.startswith("%l"))
    reply = complete(None, "%he")
    assert reply["matches"] == ["%help"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (0, 3)
    assert complete(None, "%%h")["matches"] == ["%%host"]


def test_keywords_complete_without_a_board() -> None:
    assert "import" in complete(None, "im")["matches"]
    assert complete(None, "whi")["matches"] == ["while"]


def test_without_an_idle_board_names_come_from_the_host_tables() -> None:
    # Before the first cell, while a cell runs, or with the board away: builtins, common
    # modules and documented members, and nothing is sent to the board.
    for board in (None, FakeBoard(connected=False), FakeBoard(running=True)):
        assert complete(board, "pri")["matches"] == ["print"]
        assert complete(board, "Val")["matches"] == ["ValueError"]
        assert complete(board, "os.li")["matches"] == ["listdir"]
        assert complete(board, "utime.sleep_")["matches"] == ["sleep_ms", "sleep_us"]
        assert complete(board, "microbit.display.sc")["matches"] == ["scroll"]
        assert complete(board, "import mi")["matches"] == ["microbit", "micropython"]
        assert complete(board, "from time import ticks_m")["matches"] == ["ticks_ms"]
        assert complete(board, "my_var.bi")["matches"] == []  # unknown object: nothing
        assert complete(board, "json")["matches"] == []  # a module is not a builtin name
        if board is not None:
            assert board.sent == []


def test_board_failure_gives_no_matches() -> None:
    class Failing(FakeBoard):
        def exec(self, code: str, *args: Any, **kwargs: Any) -> str:
            raise DeviceError("MemoryError", "", [])

    reply = complete(Failing(), "pri")
    assert reply["status"] == "ok" and reply["matches"] == []


# -- inspection ---------------------------------------------------------------------------------
def test_expression_at_cursor_or_enclosing_call() -> None:
    assert introspect.expression_at("print", 5) == "print"
    assert introspect.expression_at("x = os.listdir()", 9) == "os.listdir"
    assert introspect.expression_at("print(1, ", 9) == "print"
    assert introspect.expression_at("display.scroll('hi', ", 21) == "display.scroll"
    assert introspect.expression_at("print([1, 2], ", 14) == "print"
    assert introspect.expression_at("1 + ", 4) == ""


def test_builtin_documented_without_a_board() -> None:
    reply = introspect.inspect_reply(None, "print", 5)
    assert reply["found"] is True
    assert "print(*objects" in reply["data"]["text/plain"]


def test_method_found_through_its_owner_type() -> None:
    text = introspect.inspect_text(FakeBoard(), "display.scroll", 0)
    assert "display.scroll(text, delay=150" in text
    assert "bound_method" in text


def test_u_module_alias_is_documented() -> None:
    assert "time.sleep_ms(ms)" in introspect.inspect_text(None, "utime.sleep_ms", 0)


def test_board_value_without_docs() -> None:
    text = introspect.inspect_text(FakeBoard(), "x", 0)
    assert "int" in text and "42" in text


def test_unknown_name_not_found() -> None:
    reply = introspect.inspect_reply(FakeBoard(), "nosuch_thing", 12)
    assert reply == {"status": "ok", "found": False, "data": {}, "metadata": {}}
    assert "not found" in introspect.inspect_text(FakeBoard(), "nosuch_thing", 0)


# -- the real firmware (emulated micro:bit) ---------------------------------------------------
@pytest.mark.device
@pytest.mark.boards("microbit", reason="completes the micro:bit's own modules (microbit.display)")
def test_device_completion(board: Board) -> None:
    board.exec("import os\nfrom microbit import display\nmy_value = 3")
    assert "print" in complete(board, "pri")["matches"]
    assert complete(board, "my_v")["matches"] == ["my_value"]
    assert complete(board, "os.li")["matches"] == ["listdir"]
    assert complete(board, "display.sc")["matches"] == ["scroll"]
    assert {"microbit", "micropython"} <= set(complete(board, "import mi")["matches"])
    assert complete(board, "from microbit import dis")["matches"] == ["display"]
    assert not [m for m in complete(board, "__")["matches"] if m.startswith("__mpk_")]


@pytest.mark.device
def test_device_completion_leaves_no_names_behind(board: Board) -> None:
    before = board.exec("print(sorted(globals()))")
    complete(board, "pri")
    complete(board, "import mi")
    introspect.inspect_text(board, "display.scroll", 0)
    assert board.exec("print(sorted(globals()))") == before


@pytest.mark.device
@pytest.mark.boards("microbit", reason="documents the micro:bit's own modules (button_a, microbit)")
def test_device_inspection(board: Board) -> None:
    text = introspect.inspect_text(board, "button_a.was_pressed", 0)
    assert "button.was_pressed()" in text
    board.exec("import microbit")
    text = introspect.inspect_text(board, "microbit", 0)
    assert "Type:      module" in text and "Members:" in text and "running_time" in text
    board.exec("class Robot:\n def go(self): pass")
    text = introspect.inspect_text(board, "Robot", 0)
    assert "Members:   go" in text
    assert introspect.inspect_reply(board, "no_such_name", 12)["found"] is False
