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

from mpkernel.sim import SimulatorMissing, check_installed

pytestmark = pytest.mark.device

KERNEL_NAME = "mpkernel-test"
FIRST_CELL_TIMEOUT = 30  # the first cell boots QEMU and probes the board


def _write_kernelspec(root: Path) -> None:
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "mpkernel", "kernel", "-f", "{connection_file}"],
        "display_name": "MicroPython (test, emulated micro:bit)",
        "language": "python",
        "interrupt_mode": "signal",
        "env": {"MPKERNEL_PORT": "sim", "IPYTHONDIR": str(root / "ipython")},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))


# Subclassing through the module keeps pytest from collecting KernelTests itself.
class MicroPythonKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = KERNEL_NAME
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
            raise pytest.skip.Exception(str(err), allow_module_level=True) from None
        cls._tmp = tempfile.TemporaryDirectory(prefix="mpkernel-kt-")
        root = Path(cls._tmp.name)
        _write_kernelspec(root)
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

    def test_inspect_text_has_signature(self) -> None:
        self.flush_channels()
        msg_id = self.kc.inspect("display.scroll", cursor_pos=len("display.scroll"))
        content = self._reply(msg_id)["content"]
        self.assertTrue(content["found"])
        self.assertIn("display.scroll(text", content["data"]["text/plain"])

    def test_complete_attribute_and_hidden_names(self) -> None:
        self.flush_channels()
        msg_id = self.kc.complete("display.sc")
        content = self._reply(msg_id)["content"]
        self.assertEqual(content["matches"], ["scroll"])
        self.assertEqual(content["cursor_start"], len("display."))
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
        code = "import utime\nfor i in range(5):\n    print('tick', i)\n    utime.sleep_ms(200)"
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
