"""%mip install from a package index served on loopback, built from PyPI's micropython-lib
sdists (tests/mip_index.py); then the packages are imported on the emulated boards."""

from __future__ import annotations

import hashlib
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from host_kernel import Notebook, notebook, serve_directory
from mip_index import build_index

from mpkernel.host.mip import MipError, resolve

# The emulated boards have no network stack; umqtt.simple imports usocket at its top, so a
# stand-in lets the import itself (what %mip is responsible for) be checked.
USOCKET_STAND_IN = "%%host\nboard.put(b'def getaddrinfo(*a):\\n    return []\\n', 'usocket.py')"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, stop = serve_directory(build_index(tmp_path_factory.mktemp("index")))
    try:
        yield url
    finally:
        stop()


@pytest.fixture(scope="module")
def modern(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Notebook]:
    with notebook(tmp_path_factory.mktemp("mipq"), port="sim:qemu") as running:
        yield running


@pytest.fixture(scope="module")
def microbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Notebook]:
    with notebook(tmp_path_factory.mktemp("mipm")) as running:
        yield running


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens


@pytest.mark.device
def test_modern_board_gets_mpy_files_and_deps_in_lib_and_imports_them(
        index: str, modern: Notebook) -> None:
    cell = modern.run(f"%mip install umqtt.simple --source --index {index}")
    first = cell.shown_lines
    assert first[0].startswith("Wrote /lib/umqtt/simple.py (6411 bytes) in "), first
    assert first[1] == ("Installed umqtt.simple 1.3.4 (1 file, 6411 bytes, source) into /lib; "
                        "import umqtt.simple.")
    cell = modern.run(f"%mip install umqtt.robust --index {index}")
    assert cell.ok, (cell.error, cell.stdout)
    lines = cell.shown_lines
    assert lines[0].startswith("Wrote /lib/umqtt/robust.mpy (")
    assert lines[1].startswith("Wrote /lib/umqtt/simple.mpy (")
    # MicroPython would import the older simple.py before simple.mpy: it is removed.
    assert lines[2] == "Removed /lib/umqtt/simple.py, an older copy that would be imported instead."
    assert lines[3].startswith("Installed umqtt.robust 1.0, umqtt.simple 1.3.4 (2 files, ")
    assert lines[3].endswith(" bytes, .mpy) into /lib; import umqtt.robust.")
    # The qemu port, unlike ESP32 or rp2 firmware, starts without /lib on sys.path.
    assert lines[4] == ("/lib is not on this board's sys.path ['', '.frozen']: run `import sys; "
                        "sys.path.append('/lib')` before importing (boot.py is a good place).")
    assert modern.run(USOCKET_STAND_IN).ok
    cell = modern.run("import sys\nsys.path.append('/lib')\n"
                      "from umqtt.robust import MQTTClient\nimport umqtt.simple\n"
                      "print(issubclass(MQTTClient, umqtt.simple.MQTTClient), "
                      "umqtt.simple.__file__)")
    assert cell.stdout == "True /lib/umqtt/simple.mpy\n", cell.error


@pytest.mark.device
def test_source_only_package_falls_back_to_py_and_a_version_is_honoured(
        index: str, modern: Notebook) -> None:
    cell = modern.run(f"%mip install bisect@3.3.3 --index {index}")
    assert cell.ok, (cell.error, cell.stdout)
    assert cell.shown_lines[1:3] == [
        "bisect: no .mpy build for this board's format 6; installed the source.",
        "Installed bisect 3.3.3 (1 file, 2595 bytes, source) into /lib; import bisect.",
    ]
    assert modern.run("import bisect\nprint(bisect.bisect([1, 3, 5], 4))").stdout == "2\n"
    cell = modern.run(f"%mip install umqtt.simple@9.9 --index {index}")
    assert cell.error["evalue"] == (f"The package index {index} has no package umqtt.simple "
                                    "(version 9.9).")


@pytest.mark.device
def test_offline_index_says_so_and_the_board_is_untouched(modern: Notebook) -> None:
    port = _closed_port()
    cell = modern.run(f"%mip install nothing.here --index http://127.0.0.1:{port}")
    text = cell.error["evalue"]
    assert text.startswith(f"Could not reach the package index for http://127.0.0.1:{port}/"
                           "package/6/nothing.here/latest.json (")
    assert "This computer downloads the packages (the board needs no network)" in text
    # What to do is the line after the error, not part of it.
    assert "--index URL" in cell.stdout
    assert "--index URL" not in "\n".join(cell.error["traceback"])
    assert modern.run("print(6 * 7)").stdout == "42\n"


@pytest.mark.device
def test_microbit_refuses_folders_and_installs_top_level_modules(
        index: str, microbit: Notebook) -> None:
    before = microbit.run("import os\nprint(sorted(os.listdir()))").stdout
    cell = microbit.run(f"%mip install umqtt.simple --index {index}")
    assert cell.error["evalue"] == (
        "umqtt.simple needs folders (umqtt/simple.py), and this board's filesystem is flat "
        "(no folders); nothing was written."), cell.error
    assert microbit.run("import os\nprint(sorted(os.listdir()))").stdout == before
    cell = microbit.run(f"%mip install bisect --index {index}")
    assert cell.ok, (cell.error, cell.stdout)
    assert cell.shown_lines[-2] == (
        "Installed bisect 3.3.3 (1 file, 2595 bytes, source) into the top level; "
        "import bisect.")
    # The transfer leaves the micro:bit's 16 KB of RAM fragmented; %mip says so, and a soft
    # reset before the import is the way it names.
    advice = re.fullmatch(r"This board has little RAM \(about (\d+) KB free\), and the "
                          r"transfer fragments it: run %reset --soft before importing what "
                          r"was installed \(it clears the board's variables\)\.",
                          cell.shown_lines[-1])
    assert advice and int(advice[1]) < 16, cell.shown_lines
    assert microbit.run("%reset --soft").ok
    cell = microbit.run("import bisect\nprint(bisect.bisect([1, 3, 5], 4))")
    assert cell.stdout == "2\n", cell.error


def test_a_file_that_does_not_match_its_hash_is_refused() -> None:
    good = b"x = 1\n"
    short = hashlib.sha256(good).hexdigest()[:8]
    served = {
        "I/package/py/p/latest.json": json.dumps({"hashes": [["p.py", short]],
                                                   "version": "1"}).encode(),
        f"I/file/{short[:2]}/{short}": b"x = 2\n",  # tampered in transit
    }
    with pytest.raises(MipError, match=r"^p's file p.py does not match its hash"):
        resolve("p", "I", "py", fetch=served.__getitem__)


def test_a_path_outside_the_install_folder_is_refused() -> None:
    data = b""
    short = hashlib.sha256(data).hexdigest()[:8]
    served = {
        "I/package/py/p/latest.json": json.dumps({"hashes": [["../boot.py", short]]}).encode(),
        f"I/file/{short[:2]}/{short}": data,
    }
    with pytest.raises(MipError, match=r"^p wants to write '../boot.py', outside"):
        resolve("p", "I", "py", fetch=served.__getitem__)


def test_index_layout_is_what_mip_reads(tmp_path: Path) -> None:
    root = build_index(tmp_path / "i")
    meta = json.loads((root / "package/6/umqtt.simple/1.3.4.json").read_text())
    ((path, short),) = meta["hashes"]
    assert path == "umqtt/simple.mpy"
    data = (root / "file" / short[:2] / short).read_bytes()
    assert data[:2] == b"M\x06"  # an .mpy header, format 6
