"""A mip package index built from micropython-lib packages as PyPI distributes them.

The sdists are fetched once through the package index pip is configured with (PEP 691 JSON;
`pip download` itself refuses these sdists: they have no setup.py), checked against pinned
sha256 digests, and cached. The index is laid out the way mip reads it: package/{mpy}/{name}/
{version}.json with [path, short sha256] pairs, and file/{hash[:2]}/{hash}; .mpy builds for
the modern board's format (6) are compiled with mpy-cross 1.25, the board's own version.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

import pytest

# (PyPI project, version, sha256 of the sdist)
SDISTS = {
    "umqtt.simple": ("micropython-umqtt.simple", "1.3.4",
                     "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f"),
    "umqtt.robust": ("micropython-umqtt.robust", "1.0",
                     "22a1b8c8e1128281efb13b3020927d07e33c5b747869da2cd77d37983a9ea002"),
    "bisect": ("micropython-bisect", "3.3.3",
               "b8d09d0bb4b2add706078dfa3f306e22fad1f4b5340b87d13f2c852507d720c8"),
}
# As in micropython-lib: umqtt.robust builds on umqtt.simple.
DEPS = {"umqtt.robust": [["umqtt.simple", "latest"]]}
MPY_BUILDS = ("umqtt.simple", "umqtt.robust")  # bisect stays source-only: the fallback case


def _simple_index() -> str:
    found = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                           capture_output=True, text=True, timeout=30)
    if found.returncode == 0 and found.stdout.strip():
        return found.stdout.strip()
    from pip._internal.models.index import PyPI  # pip's own default, not a guess of ours

    return os.environ.get("PIP_INDEX_URL") or PyPI.simple_url


def sdist(project: str, version: str, sha256: str) -> bytes:
    cache = Path.home() / ".cache" / "mpkernel" / "test-sdists"
    cached = cache / f"{project}-{version}.tar.gz"
    if cached.exists() and hashlib.sha256(cached.read_bytes()).hexdigest() == sha256:
        return cached.read_bytes()
    listing_url = _simple_index().rstrip("/") + "/" + project.replace(".", "-") + "/"
    request = urllib.request.Request(
        listing_url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            files = json.load(response)["files"]
        (entry,) = [f for f in files if f["filename"] == f"{project}-{version}.tar.gz"]
        with urllib.request.urlopen(entry["url"], timeout=60) as response:
            data = response.read()
    except (OSError, ValueError) as err:
        # Not a skip: the set-up is broken, as it would be for `pip install` in bootstrap.
        pytest.fail(f"Could not fetch {project} {version} from the package index "
                    f"{listing_url} ({err}); these tests build their mip index from it and "
                    f"cache it in {cache}.", pytrace=False)
    assert hashlib.sha256(data).hexdigest() == sha256, f"{project} {version}: wrong digest"
    cache.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(data)
    return data


def sources(name: str) -> dict[str, bytes]:
    """The package's .py files (regular files only: robust's sdist links simple.py in)."""
    project, version, sha = SDISTS[name]
    out = {}
    with tarfile.open(fileobj=io.BytesIO(sdist(project, version, sha))) as tar:
        for member in tar.getmembers():
            path = member.name.split("/", 1)[1] if "/" in member.name else ""
            if member.isfile() and path.endswith(".py") and path != "setup.py":
                out[path] = tar.extractfile(member).read()  # type: ignore[union-attr]
    return out


def compile_mpy(source: bytes, path: str, work: Path) -> bytes:
    src = work / path.replace("/", "_")
    src.write_bytes(source)
    out = src.with_suffix(".mpy")
    mpy_cross = Path(sys.executable).with_name("mpy-cross")
    subprocess.run([str(mpy_cross), "-s", path, "-o", str(out), str(src)], check=True,
                   timeout=60)
    return out.read_bytes()


def build_index(root: Path) -> Path:
    """Write the index under root; returns root."""
    work = root / "_work"
    work.mkdir(parents=True)
    for name, (_, version, _) in SDISTS.items():
        files = sources(name)
        kinds = {"py": files}
        if name in MPY_BUILDS:
            kinds["6"] = {p[:-3] + ".mpy": compile_mpy(d, p, work) for p, d in files.items()}
        for kind, content in kinds.items():
            hashes = []
            for path, data in sorted(content.items()):
                short = hashlib.sha256(data).hexdigest()[:8]
                target = root / "file" / short[:2] / short
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                hashes.append([path, short])
            meta = json.dumps({"hashes": hashes, "deps": DEPS.get(name, []),
                               "version": version})
            folder = root / "package" / kind / name
            folder.mkdir(parents=True, exist_ok=True)
            for label in ("latest", version):
                (folder / f"{label}.json").write_text(meta)
    return root
