"""Build the modern emulated board's firmware: `python -m mpkernel.sim.build`.

Fetches MicroPython's source from Debian's `micropython` source package (trixie has 1.25.0;
on an older release it comes through a private apt configuration, leaving the system's
sources untouched), builds mpy-cross and the qemu port with our board folder (boards/qemu),
and keeps the image in ~/.cache/mpkernel/firmware/<version>-<board hash>/firmware.elf. A
change to the board folder gives a new hash, hence a new build; an unchanged one is found at
once. Needs make, gcc-arm-none-eabi and libnewlib-arm-none-eabi.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mpkernel.errors import MpkernelError
from mpkernel.sim.cache import BOARD_DIR, board_hash, cache_root, find_firmware

SOURCE_PACKAGE = "micropython"
SOURCE_SUITE = "trixie"  # the Debian release whose source package has MicroPython 1.25
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

Say = Callable[[str], None]


class BuildError(MpkernelError):
    """The firmware could not be fetched or built."""


def _run(cmd: list[str], cwd: Path | None = None, log: Path | None = None) -> str:
    """Run a build step; on failure, raise with the end of its output."""
    proc = subprocess.run(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "LC_ALL": "C"},
    )
    if log is not None:
        with open(log, "a") as out:
            out.write(f"$ {' '.join(cmd)}\n{proc.stdout}\n")
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise BuildError(f"Build step failed: {' '.join(cmd[:3])} ...\n{tail}")
    return proc.stdout


def check_toolchain() -> None:
    missing = [tool for tool in ("make", "arm-none-eabi-gcc") if shutil.which(tool) is None]
    if not missing:
        # newlib's headers: the compiler is there without them when only gcc was installed.
        probe = subprocess.run(
            ["arm-none-eabi-gcc", "-print-file-name=libc.a"], capture_output=True, text=True
        )
        if probe.stdout.strip() in ("", "libc.a"):
            missing.append("newlib")
    if missing:
        raise BuildError(
            f"Cannot build the modern emulated board: missing {', '.join(missing)}.",
            "Install the toolchain: sudo apt-get install make gcc-arm-none-eabi "
            "libnewlib-arm-none-eabi",
        )


def _mirror() -> str:
    """The machine's own Debian mirror, so the fetch goes where its packages come from."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        found = re.search(r"^URIs:\s*(\S+/debian)/?\s*$", path.read_text(), re.M)
        if found:
            return found.group(1)
    sources = Path("/etc/apt/sources.list")
    if sources.exists():
        found = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s", sources.read_text(), re.M)
        if found:
            return found.group(1)
    return DEFAULT_MIRROR


def fetch_source(dest: Path, say: Say) -> tuple[Path, str]:
    """Download and unpack Debian's micropython source into `dest`; return (tree, version)."""
    dest.mkdir(parents=True, exist_ok=True)
    # A tree fetched before serves again (a board-folder change needs no new download).
    trees = sorted(dest.glob(f"{SOURCE_PACKAGE}-*/ports/qemu/Makefile"))
    if trees:
        tree = trees[-1].parents[2]
        return tree, tree.name[len(SOURCE_PACKAGE) + 1 :]
    apt = dest / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "parts"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    mirror = _mirror()
    (apt / "sources.list").write_text(
        f"deb-src [signed-by={DEBIAN_KEYRING}] {mirror} {SOURCE_SUITE} main\n"
    )
    # Our own sources list, lists and cache folders: the system's apt state is not touched.
    private = [
        "-o", f"Dir::Etc::SourceList={apt / 'sources.list'}",
        "-o", f"Dir::Etc::SourceParts={apt / 'parts'}",
        "-o", f"Dir::State::Lists={apt / 'lists'}",
        "-o", f"Dir::Cache={apt / 'cache'}",
        "-o", "APT::Sandbox::User=root" if os.geteuid() == 0 else "Debug::NoLocking=1",
    ]
    say(f"Fetching Debian's {SOURCE_PACKAGE} source ({SOURCE_SUITE}, {mirror}) ...")
    _run(["apt-get", *private, "-qq", "update"])
    download = dest / "download"
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir()
    _run(["apt-get", *private, "-qq", "source", "--download-only", SOURCE_PACKAGE], cwd=download)
    dsc = next(download.glob(f"{SOURCE_PACKAGE}_*.dsc"), None)
    orig = next(download.glob(f"{SOURCE_PACKAGE}_*.orig.tar.*"), None)
    if dsc is None or orig is None:
        raise BuildError(f"apt-get source did not deliver {SOURCE_PACKAGE}'s .dsc and tarball")
    version = dsc.name[len(SOURCE_PACKAGE) + 1 : -len(".dsc")]
    tree = dest / f"{SOURCE_PACKAGE}-{version}"
    if not tree.exists():
        unpack = Path(tempfile.mkdtemp(dir=dest))
        _run(["tar", "-xf", str(orig), "-C", str(unpack)])
        top = next(p for p in unpack.iterdir() if p.is_dir())
        top.rename(tree)
        shutil.rmtree(unpack, ignore_errors=True)
    shutil.rmtree(download, ignore_errors=True)
    return tree, version


def build(
    source: Path | None = None, force: bool = False, say: Say = print, jobs: int | None = None
) -> Path:
    """Build (or find) the firmware for the current board folder; return the .elf path."""
    found = find_firmware()
    if found is not None and found.exists() and not force:
        say(f"The modern emulated board is built: {found}")
        return found
    check_toolchain()
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    # Two builds at once (CI jobs, two notebooks) would share the source tree: one at a time.
    with open(root / "build.lock", "wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = find_firmware()
        if found is not None and found.exists() and not force:
            return found
        started = time.monotonic()
        if source is None:
            source, version = fetch_source(root / "src", say)
        else:
            version = "local"
        elf = _compile(source, version, root, say, jobs or os.cpu_count() or 2)
        say(f"Built {elf} ({elf.stat().st_size // 1024} KB) in {time.monotonic() - started:.0f} s")
        return elf


def _compile(source: Path, version: str, root: Path, say: Say, jobs: int) -> Path:
    port = source / "ports" / "qemu"
    if not (port / "Makefile").exists():
        raise BuildError(f"{source} is not a MicroPython source tree (no ports/qemu/Makefile)")
    out_dir = root / "firmware" / f"{version}-{board_hash()}"
    log = root / "build.log"
    log.write_text("")
    say(f"Building mpy-cross and the firmware (log: {log}) ...")
    _run(["make", "-C", str(source / "mpy-cross"), f"-j{jobs}"], log=log)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        _run([
            "make", "-C", str(port), f"-j{jobs}",
            f"BOARD_DIR={BOARD_DIR}",
            # Debian's source leaves micropython-lib out; the build only checks that the
            # folder has a README.md, and this board freezes nothing from it.
            f"MPY_LIB_DIR={BOARD_DIR}",
            f"BUILD={tmp}/build",
        ], log=log)
        out_dir.mkdir(parents=True, exist_ok=True)
        staged = out_dir / "firmware.elf.part"
        shutil.copyfile(Path(tmp) / "build" / "firmware.elf", staged)
        staged.rename(out_dir / "firmware.elf")  # atomic: a reader never sees half an image
    return out_dir / "firmware.elf"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mpkernel.sim.build", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--force", action="store_true", help="build even if already built")
    parser.add_argument("--source", type=Path, help="an unpacked MicroPython source tree to use")
    args = parser.parse_args(argv)
    try:
        build(source=args.source, force=args.force)
    except MpkernelError as err:
        print(f"mpkernel: {err.user_text()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
