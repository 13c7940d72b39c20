"""Cell preparation on the host: magics, inspection, control bytes, trailing expressions."""

from __future__ import annotations

import pytest

from mpkernel import cells
from mpkernel.errors import CellRefused


def test_line_magics_then_code_keep_line_numbers() -> None:
    cell = cells.parse_cell("%ls -l\n%cat a.txt\nprint(1)\n1/0")
    assert cell.line_magics == [("ls", "-l"), ("cat", "a.txt")]
    # The code keeps its lines where they were, so the board's traceback line 4 is cell line 4.
    assert cell.code.split("\n")[3] == "1/0"


def test_cell_magic_takes_the_whole_body() -> None:
    cell = cells.parse_cell("%%writefile main.py --run\nimport time\n%not a magic here")
    assert cell.cell_magic == ("writefile", "main.py --run", "import time\n%not a magic here")
    assert cell.code == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [("print?", ("print", 0)), ("os.listdir??", ("os.listdir", 1)), ("?len", ("len", 0))],
)
def test_question_mark_is_an_inspection(text: str, expected: tuple[str, int]) -> None:
    assert cells.parse_cell(text).inspect == expected


def test_a_question_mark_inside_code_is_code() -> None:
    cell = cells.parse_cell("x = 1\ny = '?'")
    assert cell.inspect is None and "y = '?'" in cell.code


@pytest.mark.parametrize("byte", ["\x03", "\x04"])
def test_raw_control_bytes_are_refused_with_their_line(byte: str) -> None:
    with pytest.raises(CellRefused) as info:
        cells.refuse_control_bytes(f"x = 1\ns = 'a{byte}b'")
    assert "Line 2, column 7" in str(info.value)
    assert "nothing was sent" in str(info.value)
    assert "\\x0" in info.value.hint


def test_escaped_control_bytes_are_fine() -> None:
    cells.refuse_control_bytes("s = '\\x03\\x04'")


def test_trailing_expression_prints_behind_the_mark_and_keeps_lines() -> None:
    code, rewritten = cells.show_trailing_expression("x = 6\n(x *\n 7)")
    assert rewritten
    lines = code.split("\n")
    assert lines[0] == "x = 6"
    assert lines[1].startswith("print('\\x1e'+repr((")  # the expression still starts on line 2
    assert len(lines) == 3  # and nothing is added after it
    # The rewritten code is valid Python with the same meaning.
    printed: list[str] = []
    exec(code, {"print": lambda *a, **k: printed.append("".join(a))})
    assert printed == ["\x1e42"]


def test_the_rewrite_is_small() -> None:
    # Every byte costs ~87 us on a 115200-baud line, on every cell that ends in an expression.
    code, _ = cells.show_trailing_expression("x")
    assert len(code) - 1 <= 30


@pytest.mark.parametrize(
    "code", ["x = 5", "x;", "for i in range(2):\n    i", "a = 1; a", "", "print(1)"]
)
def test_no_result_for_statements_semicolons_and_nested_expressions(code: str) -> None:
    assert cells.show_trailing_expression(code) == (code, False)


def test_code_the_host_cannot_parse_is_sent_unchanged() -> None:
    code = "print 'py2'"
    assert cells.show_trailing_expression(code) == (code, False)


def test_a_none_result_prints_the_bare_word_the_kernel_drops() -> None:
    # The kernel shows no Out[n] for exactly "None"; the string 'None' keeps its quotes.
    for expr, printed_as in (("None", "\x1eNone"), ("'None'", "\x1e'None'")):
        code, _ = cells.show_trailing_expression(expr)
        printed: list[str] = []
        exec(code, {"print": lambda *a, out=printed, **k: out.append("".join(a))})
        assert printed == [printed_as]


def test_parse_traceback_names_exception_and_value() -> None:
    text = (
        'Traceback (most recent call last):\r\n  File "<stdin>", line 3, in <module>\r\n'
        "ZeroDivisionError: division by zero\r\n"
    )
    ename, evalue, lines = cells.parse_traceback(text)
    assert (ename, evalue) == ("ZeroDivisionError", "division by zero")
    assert lines[1] == '  File "<stdin>", line 3, in <module>'


def test_parse_traceback_without_value() -> None:
    assert cells.parse_traceback("Traceback...\r\nKeyboardInterrupt: \r\n")[:2] == (
        "KeyboardInterrupt", ""
    )


# Tracebacks exactly as the micro:bit's MicroPython 1.9.2 prints them (raw REPL stderr).
COMPILE_ERRORS = [
    'Traceback (most recent call last):\r\n  File "<stdin>", line 1\r\n'
    "SyntaxError: invalid syntax\r\n",
    'Traceback (most recent call last):\r\n  File "<stdin>", line 1\r\n'
    "IndentationError: unexpected indent\r\n",
    'Traceback (most recent call last):\r\n  File "<stdin>", line 1\r\n'
    "SyntaxError: cannot mix bytes and nonbytes literals\r\n",
]
RAN_THEN_FAILED = [
    # exec('1 +') on line 2 of a cell
    'Traceback (most recent call last):\r\n  File "<stdin>", line 2, in <module>\r\n'
    '  File "<string>", line 2\r\nSyntaxError: invalid syntax\r\n',
    # import of a module with a syntax error
    'Traceback (most recent call last):\r\n  File "<stdin>", line 1, in <module>\r\n'
    '  File "brk.py", line 1\r\nSyntaxError: invalid syntax\r\n',
    # raise SyntaxError('mine'), inside a function and at top level
    'Traceback (most recent call last):\r\n  File "<stdin>", line 3, in <module>\r\n'
    '  File "<stdin>", line 2, in g\r\nSyntaxError: mine\r\n',
    'Traceback (most recent call last):\r\n  File "<stdin>", line 1, in <module>\r\n'
    "SyntaxError: mine\r\n",
    # not a syntax error at all
    'Traceback (most recent call last):\r\n  File "<stdin>", line 1, in <module>\r\n'
    "ZeroDivisionError: division by zero\r\n",
    "",
]


@pytest.mark.parametrize("stderr", COMPILE_ERRORS)
def test_a_compile_error_of_the_program_itself_proves_nothing_ran(stderr: str) -> None:
    assert cells.is_compile_error(stderr) is True


@pytest.mark.parametrize("stderr", RAN_THEN_FAILED)
def test_an_error_raised_while_running_is_not_a_compile_error(stderr: str) -> None:
    assert cells.is_compile_error(stderr) is False
