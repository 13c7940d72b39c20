"""The kernel's config names the emulated micro:bit's firmware: MicroPythonKernel.microbit_firmware
(in a config file, or `--MicroPythonKernel.microbit_firmware=PATH` in a kernelspec's argv),
the traitlets equivalent of $MPKERNEL_MICROBIT_FIRMWARE, which wins over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from host_kernel import Notebook, board_name_fixture, notebook  # noqa: F401

from mpkernel.sim import SimulatorMissing
from mpkernel.sim._qemu import find_qemu
from mpkernel.sim.microbit import (
    FIRMWARE_CONFIG,
    FIRMWARE_ENV,
    FIRMWARE_HEX,
    Firmware,
    configure_firmware,
    find_firmware,
)


@pytest.fixture
def configured() -> Iterator[None]:
    yield
    configure_firmware("")  # this process's emulated micro:bits look their firmware up again


def test_a_configured_firmware_is_used_and_named_and_the_environment_wins(
        tmp_path: Path, configured: None) -> None:
    mine, theirs, debian = (tmp_path / name for name in ("mine.hex", "theirs.hex", "deb.hex"))
    for path in (mine, theirs, debian):
        path.write_text(":00000001FF\n")
    configure_firmware(str(mine))
    assert find_firmware({}, (debian,)) == Firmware(mine, FIRMWARE_CONFIG)
    assert find_firmware({FIRMWARE_ENV: str(theirs)}, (debian,)) == Firmware(theirs,
                                                                             FIRMWARE_ENV)
    configure_firmware("")  # empty: the usual lookup
    assert find_firmware({}, (debian,)).path == debian


def test_a_configured_firmware_that_does_not_exist_is_an_error_naming_it(
        tmp_path: Path, configured: None) -> None:
    debian = tmp_path / "deb.hex"
    debian.write_text(":00000001FF\n")  # an installed firmware is not taken instead
    configure_firmware(str(tmp_path / "typo.hex"))
    with pytest.raises(SimulatorMissing) as info:
        find_firmware({}, (debian,))
    assert str(info.value) == (f"The emulated micro:bit cannot start: {FIRMWARE_CONFIG} names "
                               f"{tmp_path / 'typo.hex'}, which does not exist.")
    assert info.value.hint.startswith(f"Point {FIRMWARE_CONFIG} at a micro:bit V1")


def configured_notebook(tmp_path: Path, firmware: Path) -> Iterator[Notebook]:
    """A kernel for the emulated micro:bit whose config file names `firmware` (the
    environment's firmware variable emptied: it would win)."""
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_kernel_config.py").write_text(
        f"c.MicroPythonKernel.microbit_firmware = {str(firmware)!r}\n")
    return notebook(tmp_path, port="sim", extra_env={FIRMWARE_ENV: ""}, connect=False)


def test_a_kernel_configured_with_a_missing_firmware_says_which(tmp_path: Path) -> None:
    # Without QEMU the kernel names QEMU as missing first; the test bed installs it, and a
    # missing emulator is a failure here as everywhere (tests/harness/fixtures.py).
    find_qemu("")
    missing = tmp_path / "no-such" / "firmware.hex"
    with configured_notebook(tmp_path, missing) as nb:
        cell = nb.run("print(1)")
        assert cell.error["ename"] == "SimulatorMissing", cell.messages
        assert cell.error["evalue"] == (f"The emulated micro:bit cannot start: {FIRMWARE_CONFIG} "
                                        f"names {missing}, which does not exist.")
        assert cell.stdout.startswith(f"Point {FIRMWARE_CONFIG} at a micro:bit V1"), cell.stdout
        # The kernel lives on: a host cell still runs.
        assert nb.run("%%host\nprint(6 * 7)").stdout == "42\n"


@pytest.mark.device
@pytest.mark.boards("microbit")
def test_a_kernel_configured_with_the_installed_firmware_connects_and_names_it(
        sim: str, tmp_path: Path) -> None:
    # `sim` only names the board (host_kernel): the kernel starts its own emulated micro:bit.
    assert FIRMWARE_HEX.is_file(), f"{FIRMWARE_HEX} is not installed (bootstrap --test does it)"
    with configured_notebook(tmp_path, FIRMWARE_HEX) as nb:
        cell = nb.run("print(6 * 7)")
        assert cell.ok, (cell.error, cell.stdout)
        assert cell.stdout.endswith("42\n")
        assert f"Firmware: {FIRMWARE_CONFIG} ({FIRMWARE_HEX})." in cell.stdout, cell.stdout
