"""Where the emulated micro:bit's firmware comes from on each OS (issue 12).

Debian ships MicroPython for the micro:bit V1 as a package; Windows and macOS have no such
package, so the firmware is also taken from $MPKERNEL_MICROBIT_FIRMWARE or from the runtime the
`uflash` package carries (a universal hex, cut down to its V1 part). The OS is faked at
platform_support's boundary (PLATFORM); the lookup order, the hex surgery and the messages are
checked here, and the uflash runtime boots under QEMU's `-M microbit` for real.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from mpkernel import platform_support, sim
from mpkernel.board.board import Board
from mpkernel.sim import microbit
from mpkernel.sim.microbit import FIRMWARE_ENV, Firmware, find_firmware, v1_hex

ELA = ":020000040000FA"  # extended linear address 0
V1_DATA = ":10000000004000202D8E01005D8E01005F8E0100C9"
V2_DATA = ":1000000D00000420D9010000010200000302000080"
EOF = ":00000001FF"
UNIVERSAL = "\n".join([
    ELA, ":0400000A9900C0DEBB", V1_DATA, ":0C00000CFFFFFFFFFFFFFFFFFFFFFFFFF4",
    ":0600000BFFFFFFFFFFFFF5",
    ELA, ":0400000A9903C0DEB8", V2_DATA, ":0300000BFFFFFFF5", EOF,
]) + "\n"


@pytest.fixture
def on(monkeypatch: pytest.MonkeyPatch):
    def set_platform(name: str) -> None:
        monkeypatch.setattr(platform_support, "PLATFORM", name)

    return set_platform


# --- the V1 part of a universal hex -------------------------------------------------------


def test_a_universal_hex_is_cut_to_plain_intel_hex_for_the_v1() -> None:
    text = v1_hex(UNIVERSAL)
    assert text is not None
    assert text.split() == [ELA, V1_DATA, EOF]  # QEMU's loader knows only these record types


def test_a_plain_hex_is_kept_and_what_is_not_v1_is_refused() -> None:
    plain = f"{ELA}\n{V1_DATA}\n{EOF}\n"
    assert v1_hex(plain) == plain
    v2_only = "\n".join([ELA, ":0400000A9903C0DEB8", V2_DATA, ":0300000BFFFFFFF5", EOF])
    assert v1_hex(v2_only) is None
    assert v1_hex("not a hex file") is None
    assert v1_hex("") is None


def test_uflash_runtime_is_written_to_the_cache_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    fake = SimpleNamespace(_RUNTIME=UNIVERSAL, _VERSION=(2, 0, 0), MICROPYTHON_V1_VERSION="1.0.1")
    monkeypatch.setitem(sys.modules, "uflash", fake)
    found = microbit.uflash_firmware(tmp_path)
    assert found is not None
    assert found.path == tmp_path / "uflash-2.0.0-v1.hex"
    assert found.path.read_text().split() == [ELA, V1_DATA, EOF]
    assert found.source == "uflash 2.0.0's micro:bit V1 runtime 1.0.1"
    before = found.path.stat().st_mtime_ns
    assert microbit.uflash_firmware(tmp_path) == found
    assert found.path.stat().st_mtime_ns == before  # not rewritten for every kernel
    assert list(tmp_path.iterdir()) == [found.path]  # no partial file left behind


def test_without_uflash_there_is_no_bundled_firmware(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "uflash", None)  # what `import` sees when it is absent
    assert microbit.uflash_firmware(tmp_path) is None


# --- the lookup order, OS by OS ------------------------------------------------------------


def _bundled(tmp_path: Path) -> Firmware:
    path = tmp_path / "uflash.hex"
    path.write_text("x")
    return Firmware(path, "uflash 2.0.0's micro:bit V1 runtime 1.0.1")


def test_the_setting_comes_first_then_debian_then_uflash(on, tmp_path: Path) -> None:
    mine = tmp_path / "mine.hex"
    mine.write_text("x")
    debian = tmp_path / "debian.hex"
    debian.write_text("x")
    bundled = _bundled(tmp_path)
    on("linux")
    env = {FIRMWARE_ENV: str(mine)}
    assert find_firmware(env, (debian,), lambda: bundled) == Firmware(mine, FIRMWARE_ENV)
    assert find_firmware({}, (debian,), lambda: bundled).path == debian
    assert find_firmware({}, (tmp_path / "absent.hex",), lambda: bundled) == bundled


def test_a_setting_naming_a_missing_file_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    debian = tmp_path / "debian.hex"
    debian.write_text("x")
    with pytest.raises(sim.SimulatorMissing) as caught:
        find_firmware({FIRMWARE_ENV: str(tmp_path / "typo.hex")}, (debian,))
    assert f"{FIRMWARE_ENV} names {tmp_path / 'typo.hex'}, which does not exist" in str(
        caught.value)


@pytest.mark.parametrize("platform", ["win32", "darwin"])
def test_windows_and_macos_look_in_no_debian_folder_and_take_uflash(
    on, tmp_path: Path, platform: str,
) -> None:
    on(platform)
    assert platform_support.microbit_firmware_places() == ()
    bundled = _bundled(tmp_path)
    assert find_firmware({}, None, lambda: bundled) == bundled


def test_linux_looks_in_debians_folder(on) -> None:
    on("linux")
    assert platform_support.microbit_firmware_places() == (microbit.FIRMWARE_HEX,)


def _missing_hint(tmp_path: Path) -> str:
    with pytest.raises(sim.SimulatorMissing) as caught:
        find_firmware({}, None, lambda: None)
    assert "missing the micro:bit firmware" in str(caught.value)
    return caught.value.hint


def test_windows_says_to_pip_install_uflash_or_set_the_variable(on, tmp_path: Path) -> None:
    on("win32")
    hint = _missing_hint(tmp_path)
    assert f"{sys.executable} -m pip install uflash" in hint
    assert f"set {FIRMWARE_ENV}=C:\\path\\to\\firmware.hex" in hint
    assert f'$env:{FIRMWARE_ENV}="C:\\path\\to\\firmware.hex"' in hint
    assert "apt-get" not in hint and "export" not in hint


def test_macos_says_to_pip_install_uflash_or_export_the_variable(on, tmp_path: Path) -> None:
    on("darwin")
    hint = _missing_hint(tmp_path)
    assert f"{sys.executable} -m pip install uflash" in hint
    assert f"export {FIRMWARE_ENV}=/path/to/firmware.hex" in hint
    assert "apt-get" not in hint and f"set {FIRMWARE_ENV}=" not in hint


def test_linux_names_the_debian_package_first(on, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    on("linux")
    monkeypatch.setattr(platform_support, "microbit_firmware_places", lambda: ())
    hint = _missing_hint(tmp_path)
    assert hint.startswith("Install it with: sudo apt-get install firmware-microbit-micropython")
    assert "pip install uflash" in hint


def test_an_interpreter_path_with_spaces_is_quoted(on) -> None:
    on("win32")
    hint = platform_support.microbit_firmware_hint(
        FIRMWARE_ENV, r"C:\Program Files\Python312\python.exe")
    assert r'"C:\Program Files\Python312\python.exe" -m pip install uflash' in hint


def test_qemu_and_firmware_both_missing_on_macos_says_both_ways(
    on, monkeypatch: pytest.MonkeyPatch,
) -> None:
    on("darwin")
    monkeypatch.setattr(platform_support, "find_qemu_binary", lambda: None)
    monkeypatch.setattr(microbit, "uflash_firmware", lambda: None)
    monkeypatch.delenv(FIRMWARE_ENV, raising=False)
    with pytest.raises(sim.SimulatorMissing) as caught:
        microbit.check_installed()
    assert "missing qemu-system-arm" in str(caught.value)
    assert "and the micro:bit firmware" in str(caught.value)
    assert "brew install qemu" in caught.value.hint
    assert "pip install uflash" in caught.value.hint and "apt-get" not in caught.value.hint


# --- the firmware boots, and the connect line names it -------------------------------------


def _connect_with(monkeypatch: pytest.MonkeyPatch, places: tuple[Path, ...]) -> tuple[str, str]:
    monkeypatch.delenv(FIRMWARE_ENV, raising=False)
    monkeypatch.setattr(platform_support, "microbit_firmware_places", lambda: places)
    board = Board("sim")
    try:
        said = board.connect()
        answer = board.exec(
            "f = open('t.txt', 'w')\nf.write('kept')\nf.close()\n"
            "print(6 * 7, open('t.txt').read())").strip()
        board.hard_reset()
        after = board.exec("print(open('t.txt').read())").strip()
    finally:
        board.close()
    return said, f"{answer} / {after}"


@pytest.mark.device
def test_uflash_runtime_boots_on_qemus_microbit_and_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    # The test extra installs uflash: this is the firmware Windows and macOS users get.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    said, answers = _connect_with(monkeypatch, ())
    assert "(the emulated micro:bit): micro:bit v1.0.1" in said
    assert "MicroPython v1.9.2" in said
    import uflash  # type: ignore[import-untyped]

    version = ".".join(map(str, uflash._VERSION))
    assert f"Firmware: uflash {version}'s micro:bit V1 runtime " in said
    assert str(tmp_path / "mpkernel" / "microbit" / f"uflash-{version}-v1.hex") in said
    assert answers == "42 kept / kept"


@pytest.mark.device
@pytest.mark.skipif(not microbit.FIRMWARE_HEX.exists(), reason="Debian's firmware not installed")
def test_debians_firmware_is_named_where_it_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    said, answers = _connect_with(monkeypatch, (microbit.FIRMWARE_HEX,))
    assert f"Firmware: Debian's firmware-microbit-micropython ({microbit.FIRMWARE_HEX})" in said
    assert answers == "42 kept / kept"


@pytest.mark.device
def test_the_setting_is_what_boots(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    found = microbit.uflash_firmware(tmp_path)
    assert found is not None, "uflash is part of the test extra"
    monkeypatch.setenv(FIRMWARE_ENV, str(found.path))
    monkeypatch.setattr(platform_support, "microbit_firmware_places",
                        lambda: (microbit.FIRMWARE_HEX,))
    with sim.Simulator() as emulator:
        assert emulator.firmware == found.path
        assert emulator.notice.endswith(f"Firmware: {FIRMWARE_ENV} ({found.path}).")
