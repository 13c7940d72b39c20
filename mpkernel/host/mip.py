"""micropython-lib packages installed with the computer doing the download (`%mip install`).

The index is mip's own format (docs.micropython.org, "Package management"):
`{index}/package/{mpy}/{name}/{version}.json` lists `hashes` ([path, short sha256] pairs,
each file at `{index}/file/{hash[:2]}/{hash}`), optional `urls` ([path, URL] pairs) and
`deps` ([name, version] pairs). `{mpy}` is the board's .mpy format (6 for MicroPython 1.19
and later) or `py` for source. The board needs no network: the host downloads, checks every
file against its hash, and only then writes the files through the verified FileSystem.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mpkernel.errors import MpkernelError

if TYPE_CHECKING:
    from mpkernel.files.api import FileSystem
    from mpkernel.magics import MagicContext

DEFAULT_INDEX = "https://micropython.org/pi/v2"
TIMEOUT = 15.0  # seconds per request: an index that does not answer by then is "offline"
MAX_PACKAGES = 40  # a dependency chain longer than this is a broken index, not a package
SMALL_RAM = 32 * 1024  # below this much free RAM, say that a soft reset may be needed


class MipError(MpkernelError):
    """A package could not be found, downloaded or checked; nothing was written."""


Fetch = Callable[[str], bytes]


def fetch_url(url: str) -> bytes:
    """GET a URL with a deadline; MipError in plain words when the host is offline."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.read()
    except urllib.error.HTTPError as err:
        raise MipError(f"The package index answered {err.code} ({err.reason}) for {url}.",
                       "") from None
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise MipError(
            f"Could not reach the package index for {url} ({reason}). This computer "
            "downloads the packages (the board needs no network), so it must be online.",
            "Check this computer's network or proxy, or use a mirror with --index URL.",
        ) from None


@dataclass
class PackageFile:
    path: str  # relative to the install folder, e.g. "umqtt/simple.mpy"
    data: bytes
    package: str


@dataclass
class Plan:
    """Everything to install, downloaded and checked: packages (name, version) and files."""

    packages: list[tuple[str, str]] = field(default_factory=list)
    files: list[PackageFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def split_spec(spec: str) -> tuple[str, str]:
    """`umqtt.simple@1.3.4` -> ("umqtt.simple", "1.3.4"); no version means "latest"."""
    name, _, version = spec.partition("@")
    name = name.strip()
    if not name or "/" in name or ":" in name:
        raise MipError(f"{spec!r} is not a package name.",
                       "Give a micropython-lib name, e.g. %mip install umqtt.simple@1.3.4.")
    return name, version.strip() or "latest"


def resolve(spec: str, index: str, mpy: str, fetch: Fetch = fetch_url) -> Plan:
    """Download a package and its dependencies (breadth first, each once) and check every
    file against the short sha256 the index gives for it."""
    index = index.rstrip("/")
    plan = Plan()
    queue = [split_spec(spec)]
    seen: set[str] = set()
    while queue:
        name, version = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        if len(seen) > MAX_PACKAGES:
            raise MipError(f"{spec} pulls in more than {MAX_PACKAGES} packages; the index "
                           "looks broken.", "Try another --index.")
        meta, used = _package_json(name, version, index, mpy, fetch, plan.notes)
        plan.packages.append((name, str(meta.get("version", version))))
        for path, short in meta.get("hashes", ()):
            data = fetch(f"{index}/file/{short[:2]}/{short}")
            if not hashlib.sha256(data).hexdigest().startswith(short):
                raise MipError(f"{name}'s file {path} does not match its hash {short} in the "
                               "index; nothing was written.",
                               "Try again; if it persists, the index or a proxy is corrupt.")
            plan.files.append(PackageFile(_safe_path(path, name), data, name))
        for path, url in meta.get("urls", ()):
            if not url.startswith(("http://", "https://")):
                raise MipError(f"{name} lists its file {path} at {url}, which %mip cannot "
                               "download (only http and https).", "")
            plan.files.append(PackageFile(_safe_path(path, name), fetch(url), name))
        for dep, dep_version in meta.get("deps", ()):
            queue.append((dep, dep_version or "latest"))
    return plan


def _package_json(name: str, version: str, index: str, mpy: str, fetch: Fetch,
                  notes: list[str]) -> tuple[dict, str]:
    kinds = [mpy, "py"] if mpy != "py" else ["py"]
    for kind in kinds:
        url = f"{index}/package/{kind}/{name}/{version}.json"
        try:
            return json.loads(fetch(url)), kind
        except MipError as err:
            if "answered 404" not in str(err):
                raise
        except ValueError:
            raise MipError(f"The index's description of {name} ({url}) is not JSON.",
                           "Check --index: it should be a mip index (…/pi/v2).") from None
        if kind != "py":
            notes.append(f"{name}: no .mpy build for this board's format {mpy}; installed "
                         "the source.")
    where = f"version {version}" if version != "latest" else "any version"
    raise MipError(f"The package index {index} has no package {name} ({where}).",
                   "Check the name (micropython-lib's names, e.g. umqtt.simple, aioble) and "
                   "the version.")


def _safe_path(path: str, package: str) -> str:
    parts = path.replace("\\", "/").split("/")
    if path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise MipError(f"{package} wants to write {path!r}, outside its install folder; "
                       "nothing was written.", "The index is not trustworthy.")
    return "/".join(parts)


# One exec: the board's .mpy format and its sys.path.
BOARD_FACTS = """\
import sys as __mpk_s
print(repr((getattr(__mpk_s.implementation,'_mpy',0)&0xff,getattr(__mpk_s,'path',[]))))
del __mpk_s
"""


def mpy_kind(mpy_number: int) -> str:
    """The index's folder for a board's sys.implementation._mpy (low byte); py if none."""
    return str(mpy_number) if mpy_number else "py"


Upload = Callable[[bytes, str, str], object]  # (data, path on the board, progress label)


def run_install(ctx: MagicContext, args: argparse.Namespace, fs: FileSystem,
                upload: Upload) -> None:
    """%mip install: resolve and check everything on the host, then write each file with
    `upload` (the file magics' verified put, with its progress line)."""
    index = args.index or os.environ.get("MPKERNEL_MIP_INDEX") or DEFAULT_INDEX
    board = ctx.board
    mpy_number, path = ast.literal_eval(board.exec(BOARD_FACTS).strip().splitlines()[-1])
    libs = [p for p in path if p.endswith("/lib")]
    kind = "py" if args.source else mpy_kind(mpy_number)
    flat = fs.info().flat
    target = (args.target if args.target is not None
              else "" if flat else libs[0] if libs else "/lib")
    target = target.rstrip("/")
    if flat and target:
        raise MipError(f"This board's filesystem is flat, so there is no {target}/ folder to "
                       "install into.", "Leave out --target: modules go to the top level.")
    for spec in args.packages:
        plan = resolve(spec, index, kind)
        nested = [f.path for f in plan.files if "/" in f.path]
        if flat and nested:
            raise MipError(
                f"{spec} needs folders ({', '.join(nested)}), and this board's filesystem "
                "is flat (no folders); nothing was written.",
                "Packages made of top-level modules install here; this one needs a board "
                "with folders.")
        made: set[str] = set()
        for item in plan.files:
            remote = f"{target}/{item.path}" if target else item.path
            _make_parents(fs, remote, made)
            upload(item.data, remote, f"{item.package}: {remote}")
            _remove_shadow(ctx, fs, remote)
        for note in plan.notes:
            ctx.write(note + "\n")
        size = sum(len(f.data) for f in plan.files)
        names = ", ".join(f"{n} {v}" for n, v in plan.packages)
        form = "source" if all(f.path.endswith(".py") for f in plan.files) else ".mpy"
        ctx.write(f"Installed {names} ({len(plan.files)} file{'s' * (len(plan.files) != 1)}, "
                  f"{size} bytes, {form}) into {target or 'the top level'}; "
                  f"import {plan.packages[0][0]}.\n")
    free = board.caps.mem_free
    if 0 < free < SMALL_RAM:
        # Measured on the micro:bit: importing a 2.6 KB module right after its upload failed
        # with MemoryError in 2 of 6 runs; after a soft reset it worked in 13 of 13.
        ctx.write(f"This board has little RAM (about {free // 1024} KB free), and the "
                  "transfer fragments it: run %reset --soft before importing what was "
                  "installed (it clears the board's variables).\n")
    if target and target not in path:
        # MicroPython's qemu and unix ports, among others, start without /lib on sys.path.
        ctx.write(f"{target} is not on this board's sys.path {path}: run `import sys; "
                  f"sys.path.append({target!r})` before importing (boot.py is a good place).\n")


def _remove_shadow(ctx: MagicContext, fs: FileSystem, remote: str) -> None:
    """Remove X.py beside a new X.mpy (and X.mpy beside a new X.py): MicroPython imports
    X.py first, so an older source copy would be imported instead of the new build."""
    stem, dot, suffix = remote.rpartition(".")
    if suffix not in ("py", "mpy") or not dot:
        return
    other = f"{stem}.{'mpy' if suffix == 'py' else 'py'}"
    if fs.kind(other) == "file":
        fs.rm(other)
        ctx.write(f"Removed {other}, an older copy that would be imported instead.\n")


def _make_parents(fs: FileSystem, remote: str, made: set[str]) -> None:
    parts = remote.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        folder = "/".join(parts[:depth])
        if not folder or folder in made:
            continue
        kind = fs.kind(folder)
        if kind is None:
            fs.mkdir(folder)
        elif kind != "dir":
            raise MipError(f"{folder} on the board is a file, where the package needs a "
                           "folder.", f"Remove or rename it (%rm {folder}), then try again.")
        made.add(folder)
