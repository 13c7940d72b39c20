"""Jupyter protocol conformance of the kernel against the emulated micro:bit.

One kernel (one QEMU boot) serves the whole class. The kernelspec lives in a temporary
JUPYTER_PATH entry so the test needs nothing installed; IPYTHONDIR is temporary too, so the
history tests see only this session and never touch the user's history database.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty
from typing import Any

import jupyter_kernel_test
import pytest
from harness.fixtures import default_boards
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from mpkernel.cli import spec_dir_with_argv
from mpkernel.sim import SimulatorMissing, check_installed

pytestmark = pytest.mark.device

KERNEL_NAME = "mpkernel-test"
FIRST_CELL_TIMEOUT = 30  # the first cell boots QEMU and probes the board


def _write_kernelspec(root: Path, name: str, port: str) -> None:
    spec_dir = root / "kernels" / name
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "mpkernel", "kernel", "-f", "{connection_file}"],
        "display_name": f"MicroPython (test, {port})",
        "language": "python",
        "interrupt_mode": "signal",
        # The modern board's flash file is locked by the QEMU using it: this kernel's own.
        "env": {"MPKERNEL_PORT": port, "IPYTHONDIR": str(root / "ipython"),
                "MPKERNEL_QEMU_FLASH": str(root / "flash.bin")},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))


# Subclassing through the module keeps pytest from collecting KernelTests itself.
class MicroPythonKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = KERNEL_NAME
    port = "sim"
    language_name = "python"
    file_extension = ".py"

    code_hello_world = "print('hello, world')"
    # The board's raw REPL has one output stream (the micro:bit firmware has no sys.stderr;
    # tracebacks become error messages). stderr, rich display and clear_output reach the
    # notebook from %%host cells, which run on the host's IPython inside this kernel.
    code_stderr = "%%host\nimport sys\nprint('oops', file=sys.stderr)"
    code_display_data = [
        {"code": "%%host\nfrom IPython.display import HTML, display\ndisplay(HTML('<b>hi</b>'))",
         "mime": "text/html"},
    ]
    code_clear_output = "%%host\nfrom IPython.display import clear_output\nclear_output()"
    completion_samples = [
        {"text": "pri", "matches": {"print"}},
        {"text": "import neo", "matches": {"neopixel"}},
        {"text": "%hel", "matches": {"%help"}},
    ]
    complete_code_samples = ["x = 1", "print('hi')", "%help", "for i in range(3):\n    pass\n"]
    incomplete_code_samples = ["for i in range(3):", "def f(x):\n    return x", "print(1,"]
    invalid_code_samples = ["x = )"]
    code_inspect_sample = "print"
    code_page_something = "print?"
    code_generate_error = "1/0"
    code_execute_result = [{"code": "6*7", "result": "42"}, {"code": "'a' + 'b'", "result": "'ab'"}]
    supported_history_operations = ("tail", "range", "search")
    code_history_pattern = "6[*]7"  # a glob: `[*]` is a literal star

    @classmethod
    def setUpClass(cls) -> None:
        try:
            check_installed()
        except SimulatorMissing as err:
            # A missing emulator is a broken set-up, not a pass: the README's test command
            # installs it (as tests/harness/fixtures.py says for the sim fixture).
            pytest.fail(str(err.user_text()), pytrace=False)
        cls._tmp = tempfile.TemporaryDirectory(prefix="mpkernel-kt-")
        root = Path(cls._tmp.name)
        _write_kernelspec(root, cls.kernel_name, cls.port)
        cls._old_path = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(root), cls._old_path]))
        super().setUpClass()
        # Connect now, so the tests' first cells do not carry the "Connected to..." line.
        cls.kc.execute_interactive("__kt_marker = 7", timeout=FIRST_CELL_TIMEOUT)

    @classmethod
    def tearDownClass(cls) -> None:
        super().tearDownClass()
        if cls._old_path is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = cls._old_path
        cls._tmp.cleanup()

    # -- helpers ------------------------------------------------------------------------------
    def _outputs(self, msg_id: str, timeout: float = 15) -> list[tuple[float, dict[str, Any]]]:
        """IOPub messages of one request until it goes idle, with their arrival times."""
        out: list[tuple[float, dict[str, Any]]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.5)
            except Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            out.append((time.monotonic(), msg))
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return out
        raise AssertionError(f"no idle status within {timeout} s; got {out}")

    def _reply(self, msg_id: str, timeout: float = 15) -> dict[str, Any]:
        while True:
            reply = self.kc.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply

    # -- beyond jupyter_kernel_test's own checks ----------------------------------------------
    def test_error_names_device_exception(self) -> None:
        self.flush_channels()
        reply, outputs = self.execute_helper("1/0")
        self.assertEqual(reply["content"]["ename"], "ZeroDivisionError")
        self.assertEqual(outputs[0]["content"]["ename"], "ZeroDivisionError")

    # A name the board has at its prompt, its documented signature, and an attribute prefix.
    inspect_name, inspect_signature = "display.scroll", "display.scroll(text"
    attribute_prefix, attribute_match = "display.sc", "scroll"
    sleep_module = "utime"

    def test_inspect_text_has_signature(self) -> None:
        self.flush_channels()
        msg_id = self.kc.inspect(self.inspect_name, cursor_pos=len(self.inspect_name))
        content = self._reply(msg_id)["content"]
        self.assertTrue(content["found"])
        self.assertIn(self.inspect_signature, content["data"]["text/plain"])

    def test_complete_attribute_and_hidden_names(self) -> None:
        self.flush_channels()
        msg_id = self.kc.complete(self.attribute_prefix)
        content = self._reply(msg_id)["content"]
        self.assertEqual(content["matches"], [self.attribute_match])
        self.assertEqual(content["cursor_start"], self.attribute_prefix.rindex(".") + 1)
        msg_id = self.kc.complete("__")
        matches = self._reply(msg_id)["content"]["matches"]
        self.assertFalse([m for m in matches if m.startswith("__mpk_")], matches)

    def test_interrupt_keeps_variables(self) -> None:
        self.flush_channels()
        self.execute_helper("kept = 1234")
        msg_id = self.kc.execute("print('looping')\nwhile True:\n    pass")
        deadline = time.monotonic() + 15
        started = False
        while not started and time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.5)
            except Empty:
                continue
            started = msg["msg_type"] == "stream" and "looping" in msg["content"]["text"]
        self.assertTrue(started, "the loop never printed its first line")
        self.km.interrupt_kernel()
        reply = self._reply(msg_id)
        self.assertEqual(reply["content"]["status"], "error")
        self.assertEqual(reply["content"]["ename"], "KeyboardInterrupt")
        self._outputs(msg_id)
        reply, outputs = self.execute_helper("kept + 1")
        results = [m for m in outputs if m["msg_type"] == "execute_result"]
        self.assertEqual(results[0]["content"]["data"]["text/plain"], "1235")

    def test_raw_control_byte_refused(self) -> None:
        self.flush_channels()
        reply, outputs = self.execute_helper("refused_name = 'a\x03b'")
        self.assertEqual(reply["content"]["status"], "error")
        self.assertIn("Ctrl-C (0x03)", reply["content"]["evalue"])
        # Nothing reached the board: the name was never assigned.
        _, outputs = self.execute_helper("'refused_name' in globals()")
        results = [m for m in outputs if m["msg_type"] == "execute_result"]
        self.assertEqual(results[0]["content"]["data"]["text/plain"], "False")

    def test_output_streams_while_cell_runs(self) -> None:
        self.flush_channels()
        code = (f"import {self.sleep_module} as t\nfor i in range(5):\n    print('tick', i)\n"
                "    t.sleep_ms(200)")
        msg_id = self.kc.execute(code)
        # When each complete line reached us: a chunk may split a line, so rebuild the text.
        text = ""
        line_arrivals = []
        for t, m in self._outputs(msg_id):
            if m["msg_type"] == "stream":
                text += m["content"]["text"]
                line_arrivals += [t] * (text.count("\n") - len(line_arrivals))
        self._reply(msg_id)
        self.assertEqual(text, "".join(f"tick {i}\n" for i in range(5)))
        arrivals = line_arrivals
        # Five lines 200 ms apart: the first and last arrive ~800 ms apart if streamed live.
        self.assertGreater(arrivals[-1] - arrivals[0], 0.5)

    def test_history_keeps_magics_and_multiline(self) -> None:
        self.flush_channels()
        multi = "total = 0\nfor i in range(3):\n    total += i"
        self.execute_helper(multi)
        self.execute_helper("%help")
        msg_id = self.kc.history(hist_access_type="tail", n=2, raw=True, output=False)
        history = self._reply(msg_id)["content"]["history"]
        self.assertEqual([h[2] for h in history], [multi, "%help"])


if "qemu" in default_boards():

    class ModernBoardKernelTests(MicroPythonKernelTests):
        """The same conformance suite on the modern emulated board (MPK_BOARDS names qemu)."""

        kernel_name = KERNEL_NAME + "-qemu"
        port = "sim:qemu"
        completion_samples = [
            {"text": "pri", "matches": {"print"}},
            {"text": "import hashl", "matches": {"hashlib"}},
            {"text": "%hel", "matches": {"%help"}},
        ]
        inspect_name, inspect_signature = "time.sleep_ms", "time.sleep_ms(ms)"
        attribute_prefix, attribute_match = "time.sleep_m", "sleep_ms"
        sleep_module = "time"

        @classmethod
        def setUpClass(cls) -> None:
            super().setUpClass()
            cls.kc.execute_interactive("import time", timeout=FIRST_CELL_TIMEOUT)


# -- a fresh kernel: Tab before the first cell ---------------------------------------------------
def _fresh_kernel(tmp_path: Path, port: str) -> tuple[KernelManager, Any]:
    spec_dir_with_argv(tmp_path / "kernels" / "mpkernel")
    km = KernelManager(
        kernel_name="mpkernel",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]),
    )
    km.start_kernel(env={**os.environ, "MPKERNEL_PORT": port,
                         "IPYTHONDIR": str(tmp_path / "ipython")})
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return km, kc


def _complete(kc: Any, code: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The complete_reply content and every IOPub message the request caused."""
    msg_id = kc.complete(code, len(code))
    while True:
        reply = kc.get_shell_msg(timeout=15)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    said = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=15)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return reply["content"], said
        if msg["msg_type"] != "status":
            said.append(msg)
    raise AssertionError("the complete request never went idle")


def test_tab_before_the_first_cell_completes_builtins_without_connecting(
    tmp_path: Path,
) -> None:
    km, kc = _fresh_kernel(tmp_path, "sim")
    try:
        started = time.monotonic()
        content, said = _complete(kc, "pri")
        assert content["matches"] == ["print"]
        assert (content["cursor_start"], content["cursor_end"]) == (0, 3)
        content, said_too = _complete(kc, "import neo")
        assert content["matches"] == ["neopixel"]
        assert said + said_too == []  # no stream, no error: nothing to alarm anyone
        assert time.monotonic() - started < 5  # no emulator was booted for a Tab
        # The first cell is the one that connects: its output carries the connection line.
        msg_id = kc.execute("print('first')")
        text = ""
        deadline = time.monotonic() + FIRST_CELL_TIMEOUT
        while time.monotonic() < deadline:
            msg = kc.get_iopub_msg(timeout=FIRST_CELL_TIMEOUT)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                text += msg["content"]["text"]
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        assert text.startswith("Connected to ") and text.endswith("first\n"), text
        # ...after which Tab asks the board, which knows the cell's names.
        kc.execute_interactive("printed_already = 1", timeout=15)
        assert _complete(kc, "printed_a")[0]["matches"] == ["printed_already"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_tab_with_no_board_there_says_nothing_alarming(tmp_path: Path) -> None:
    km, kc = _fresh_kernel(tmp_path, str(tmp_path / "ttyUSB-not-plugged-in"))
    try:
        content, said = _complete(kc, "pri")
        assert content["status"] == "ok" and content["matches"] == ["print"]
        content, said_too = _complete(kc, "time.sleep_m")
        assert content["matches"] == ["sleep_ms"]
        assert said + said_too == []
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
