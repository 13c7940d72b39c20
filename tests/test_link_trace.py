"""MPKERNEL_TRACE: a Link logs what it sends and reads, for bug reports and failed tests."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mpkernel.board.link import TRACE_VARIABLE, Link


def test_every_byte_sent_and_read_is_in_the_trace(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    trace = tmp_path / "line.trace"
    monkeypatch.setenv(TRACE_VARIABLE, str(trace))
    with Link("loop://") as link:
        link.write(b"\x01print(1)\x04")
        got = link.read(1.0)
        got += link.pending()
    assert got == b"\x01print(1)\x04"
    lines = trace.read_text().splitlines()
    assert lines[0].endswith("-- opened loop://") and lines[-1].endswith("-- closed")
    sent = [line.split(" > ", 1)[1] for line in lines if " > " in line]
    read = [line.split(" < ", 1)[1] for line in lines if " < " in line]
    assert sent == [repr(b"\x01print(1)\x04")]
    assert b"".join(ast.literal_eval(r) for r in read) == b"\x01print(1)\x04"


def test_no_trace_without_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRACE_VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)
    with Link("loop://") as link:
        link.write(b"x")
        assert link.read(1.0) == b"x"
    assert list(tmp_path.iterdir()) == []
