"""A real mpkernel on an emulated board, driven like a notebook, for the host-side tests
(host cells, %%plot, %mip, timing): every IOPub message of a cell is kept, in order."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from mpkernel.cli import spec_dir_with_argv
from mpkernel.sim import SimulatorMissing, check_installed

PORTS = {"microbit": "sim", "qemu": "sim:qemu"}


@pytest.fixture(scope="module", name="sim", params=list(PORTS))
def board_name_fixture(request: pytest.FixtureRequest) -> str:
    """The board a kernel test runs on, named as tests/conftest.py expects of `sim`, so that
    MPK_BOARDS and the boards(...) marker select these tests like the other device tests.
    Here it is only a name: the kernel starts its own emulated board (see `notebook`)."""
    return request.param


class Cell:
    """One executed cell: its reply and the IOPub messages it caused."""

    def __init__(self, reply: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        self.reply = reply
        self.messages = messages

    @property
    def ok(self) -> bool:
        return self.reply["status"] == "ok"

    @property
    def stdout(self) -> str:
        return "".join(m["content"]["text"] for m in self.messages
                       if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")

    @property
    def shown_lines(self) -> list[str]:
        """stdout as the notebook shows it: a `\\r` redraws its line (progress lines)."""
        return [line.rsplit("\r", 1)[-1] for line in self.stdout.split("\n")][:-1]

    @property
    def error(self) -> dict[str, Any] | None:
        errors = [m["content"] for m in self.messages if m["msg_type"] == "error"]
        return errors[0] if errors else None

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["msg_type"] == kind]

    @property
    def result(self) -> str | None:
        found = self.of_type("execute_result")
        return found[0]["content"]["data"]["text/plain"] if found else None


class Notebook:
    def __init__(self, km: KernelManager, kc: Any) -> None:
        self.km = km
        self.kc = kc

    def run(self, code: str, timeout: float = 60, interrupt_after: float | None = None,
            interrupt_when: Callable[[list[dict[str, Any]]], bool] | None = None) -> Cell:
        """Execute a cell; interrupt it `interrupt_after` s after it starts, or as soon as
        `interrupt_when(messages so far)` is true."""
        msg_id = self.kc.execute(code)
        messages: list[dict[str, Any]] = []
        started = time.monotonic()
        deadline = started + timeout
        interrupted = False
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"cell did not finish within {timeout} s: {messages}")
            if not interrupted and (
                (interrupt_after is not None and time.monotonic() - started >= interrupt_after)
                or (interrupt_when is not None and interrupt_when(messages))
            ):
                self.km.interrupt_kernel()
                interrupted = True
            try:
                msg = self.kc.get_iopub_msg(timeout=0.1)
            except Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status":
                if msg["content"]["execution_state"] == "idle":
                    break
                continue
            messages.append(msg)
        while True:
            reply = self.kc.get_shell_msg(timeout=10)
            if reply["parent_header"].get("msg_id") == msg_id:
                return Cell(reply["content"], messages)


@contextmanager
def notebook(tmp_path: Path, port: str = "sim", extra_env: dict[str, str] | None = None,
             connect: bool = True) -> Iterator[Notebook]:
    """A kernel on `port` (`sim` or `sim:qemu`; the modern board on a flash file of its own),
    connected by a first cell unless connect=False."""
    try:
        check_installed()
    except SimulatorMissing as err:
        pytest.fail(str(err.user_text()), pytrace=False)
    spec_dir_with_argv(tmp_path / "kernels" / "mpkernel")
    env = {**os.environ, "MPKERNEL_PORT": port, "IPYTHONDIR": str(tmp_path / "ipython"),
           "MPKERNEL_QEMU_FLASH": str(tmp_path / "flash.bin"), "MPLBACKEND": "Agg",
           **(extra_env or {})}
    km = KernelManager(
        kernel_name="mpkernel",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]),
    )
    km.start_kernel(env=env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        nb = Notebook(km, kc)
        if connect:
            first = nb.run("print('ready')", timeout=60)  # boots the board, connects
            assert first.ok and first.stdout.endswith("ready\n"), (port, first.error,
                                                                    first.stdout)
        yield nb
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def serve_directory(root: Path) -> tuple[str, Callable[[], None]]:
    """Serve `root` over HTTP on loopback from a thread; returns (base URL, stop)."""
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return f"http://127.0.0.1:{server.server_address[1]}", stop
