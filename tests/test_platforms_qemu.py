"""The emulated board's QEMU on Windows, macOS and Linux, with the OS faked at its one boundary
(`platform_support.PLATFORM`, Win32 calls from fakes shaped like kernel32): a QEMU that ends
with its kernel however the kernel ends, and a missing QEMU explained the way that OS installs it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from mpkernel import platform_support

# --- the emulated board's QEMU: lifetime and installation ---------------------------------


class FakeJobKernel32:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def CreateJobObjectW(self, attributes, name) -> int:  # noqa: N802
        self.calls.append(("create",))
        return 77

    def SetInformationJobObject(self, job, info_class, info, size) -> int:  # noqa: N802
        limits = info._obj  # what ctypes.byref points at
        self.calls.append(("limits", job, info_class, limits.LimitFlags, size))
        return 1

    def AssignProcessToJobObject(self, job, process) -> int:  # noqa: N802
        self.calls.append(("assign", job, process))
        return 1

    def CloseHandle(self, handle) -> int:  # noqa: N802
        self.calls.append(("close", handle))
        return 1


def test_windows_qemu_goes_into_a_kill_on_close_job(on) -> None:
    on("win32")
    options = platform_support.child_popen_options()
    assert "preexec_fn" not in options  # Popen refuses preexec_fn on Windows
    assert options["creationflags"] == 0x200  # CREATE_NEW_PROCESS_GROUP: Ctrl-C stays ours
    k32 = FakeJobKernel32()
    tie = platform_support.tie_to_this_process(SimpleNamespace(_handle=1234, pid=9), k32)
    size = ctypes.sizeof(platform_support._ExtendedLimits)
    assert size == (144 if ctypes.sizeof(ctypes.c_void_p) == 8 else 112)
    assert k32.calls == [("create",), ("limits", 77, 9, 0x2000, size), ("assign", 77, 1234)]
    tie.release()
    tie.release()
    assert k32.calls[-1] == ("close", 77) and k32.calls.count(("close", 77)) == 1


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    # An orphan that nobody reaped yet (PID 1 in a container may not) is dead all the same.
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def _start_tied_sleeper(release: bool, platform: str = "darwin") -> tuple[subprocess.Popen[str],
                                                                         int]:
    code = (
        "import subprocess, sys, time\n"
        "from mpkernel import platform_support as p\n"
        f"p.PLATFORM = {platform!r}\n"
        "child = subprocess.Popen(['sleep', '60'], **p.child_popen_options())\n"
        "tie = p.tie_to_this_process(child)\n"
        f"if {release}: tie.release()\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    kernel = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert kernel.stdout is not None
    return kernel, int(kernel.stdout.readline())


def _assert_child_ends(child: int) -> None:
    """The tied child is gone within 10 s of its kernel's death (killed here if not)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _gone(child):
        time.sleep(0.1)
    if not _gone(child):
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the child outlived the process that started it")


def test_macos_watchdog_ends_the_child_when_the_kernel_is_killed(on) -> None:
    # The watchdog is plain POSIX (a pipe and a helper process), so it runs here for real.
    kernel, child = _start_tied_sleeper(release=False)
    os.kill(kernel.pid, signal.SIGKILL)  # what Jupyter does on restart: no atexit runs
    kernel.wait()
    _assert_child_ends(child)


def test_macos_watchdog_released_leaves_the_child_alone(on) -> None:
    kernel, child = _start_tied_sleeper(release=True)
    try:
        os.kill(kernel.pid, signal.SIGKILL)
        kernel.wait()
        time.sleep(1.5)  # longer than the watchdog's poll
        assert not _gone(child)
    finally:
        os.kill(child, signal.SIGKILL)


def test_linux_qemu_keeps_the_parent_death_signal(on) -> None:
    on("linux")
    options = platform_support.child_popen_options()
    assert options["start_new_session"] is True
    assert options["preexec_fn"] is platform_support._die_with_parent


def test_linux_parent_death_signal_ends_the_child_when_the_kernel_is_killed(on) -> None:
    # The real prctl(PR_SET_PDEATHSIG): no watchdog, no job; the kernel's SIGKILL ends it.
    kernel, child = _start_tied_sleeper(release=False, platform="linux")
    os.kill(kernel.pid, signal.SIGKILL)
    kernel.wait()
    _assert_child_ends(child)


def test_linux_and_macos_children_leave_the_kernels_process_group(on) -> None:
    # Jupyter's interrupt signals the kernel's process group: QEMU must not be in it.
    for name in ("linux", "darwin"):
        on(name)
        child = subprocess.Popen(["sleep", "30"], **platform_support.child_popen_options())
        try:
            assert os.getpgid(child.pid) == child.pid != os.getpgid(0)
        finally:
            child.kill()
            child.wait()


class FailingJobKernel32(FakeJobKernel32):
    def __init__(self, create: int = 77, assign: int = 1) -> None:
        super().__init__()
        self.create, self.assign = create, assign

    def CreateJobObjectW(self, attributes, name) -> int:  # noqa: N802
        super().CreateJobObjectW(attributes, name)
        return self.create

    def AssignProcessToJobObject(self, job, process) -> int:  # noqa: N802
        super().AssignProcessToJobObject(job, process)
        return self.assign


def test_windows_without_a_job_the_child_still_starts_and_stops(on) -> None:
    on("win32")
    proc = SimpleNamespace(_handle=1234, pid=9)
    no_job = FailingJobKernel32(create=0)
    tie = platform_support.tie_to_this_process(proc, no_job)
    assert no_job.calls == [("create",)]
    tie.release()  # nothing to close
    assert no_job.calls == [("create",)]
    refused = FailingJobKernel32(assign=0)  # e.g. the kernel itself runs in a job that forbids it
    tie = platform_support.tie_to_this_process(proc, refused)
    assert refused.calls[-2:] == [("assign", 77, 1234), ("close", 77)]  # the job is not leaked
    tie.release()
    assert refused.calls.count(("close", 77)) == 1


@pytest.mark.device
def test_windows_emulated_board_is_put_in_the_job_and_released_at_stop(on, monkeypatch) -> None:
    # The whole Windows start (TCP UART and monitor) under Debian's QEMU, with kernel32 faked:
    # the QEMU process goes into the kill-on-close job, and a deliberate stop closes the job
    # (which on Windows ends QEMU) before terminating it.
    from mpkernel.sim import Simulator

    on("win32")
    monkeypatch.setattr(platform_support, "child_popen_options", lambda: {
        "start_new_session": True, "preexec_fn": platform_support._die_with_parent})
    k32 = FakeJobKernel32()
    monkeypatch.setattr(platform_support, "_kernel32", lambda: k32)
    closed_while_running = []
    real_close = k32.CloseHandle

    def close(handle) -> int:
        closed_while_running.append(emulator._proc is None or emulator._proc.poll() is None)
        return real_close(handle)

    k32.CloseHandle = close  # type: ignore[method-assign]
    with Simulator() as emulator:
        assert emulator.address.startswith("socket://127.0.0.1:")
        popen = emulator._proc
        assert [call[0] for call in k32.calls] == ["create", "limits", "assign"]
        assert k32.calls[2] == ("assign", 77, getattr(popen, "_handle", None))
    assert k32.calls[-1] == ("close", 77) and closed_while_running == [True]


@pytest.mark.device
def test_macos_emulated_board_ends_when_its_kernel_is_killed() -> None:
    # The macOS chain with the real QEMU: a session of its own, no parent-death signal, and
    # the watchdog as the only thing that ends it.
    code = (
        "import time\n"
        "from mpkernel import platform_support as p\n"
        "p.PLATFORM = 'darwin'\n"
        "from mpkernel.sim import Simulator\n"
        "s = Simulator().start()\n"
        "print(s.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    kernel = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert kernel.stdout is not None
    qemu = int(kernel.stdout.readline())
    assert "preexec_fn" not in _options_on("darwin")
    os.kill(kernel.pid, signal.SIGKILL)
    kernel.wait()
    _assert_child_ends(qemu)  # the macOS path: the watchdog ends QEMU


def _options_on(name: str) -> dict:
    before = platform_support.PLATFORM
    platform_support.PLATFORM = name
    try:
        return platform_support.child_popen_options()
    finally:
        platform_support.PLATFORM = before


def test_qemu_is_found_where_installers_put_it_and_missing_is_explained(on) -> None:
    on("darwin")
    at = "/opt/homebrew/bin/qemu-system-arm"
    assert platform_support.find_qemu_binary(lambda name: None, {at}.__contains__) == at
    assert platform_support.find_qemu_binary(lambda name: None, lambda p: False) is None
    assert "brew install qemu" in platform_support.qemu_install_hint("apt-get ...")
    on("win32")
    exe = r"C:\Program Files\qemu\qemu-system-arm.exe"
    assert platform_support.find_qemu_binary(lambda name: None, {exe}.__contains__) == exe
    assert "QEMU for Windows" in platform_support.qemu_install_hint("apt-get ...")
    on("linux")
    assert platform_support.qemu_install_hint("sudo apt-get install x") == (
        "sudo apt-get install x")


def test_missing_qemu_message_says_how_to_get_it_on_macos(on, monkeypatch) -> None:
    from mpkernel.sim import SimulatorMissing
    from mpkernel.sim._qemu import find_qemu

    on("darwin")
    monkeypatch.setattr(platform_support, "find_qemu_binary", lambda: None)
    with pytest.raises(SimulatorMissing) as caught:
        find_qemu("sudo apt-get install qemu-system-arm")
    assert "brew install qemu" in caught.value.hint and "apt-get" not in caught.value.hint


def test_default_emulated_board_says_how_to_get_qemu_on_windows(on, monkeypatch,
                                                              tmp_path) -> None:
    from mpkernel.sim import SimulatorMissing, check_installed

    on("win32")
    monkeypatch.setattr(platform_support, "find_qemu_binary", lambda: None)
    with pytest.raises(SimulatorMissing) as caught:
        check_installed(tmp_path / "firmware.hex")
    assert "missing qemu-system-arm" in str(caught.value)
    assert "QEMU for Windows" in caught.value.hint and "apt-get" not in caught.value.hint
