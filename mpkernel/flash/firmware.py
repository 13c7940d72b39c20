"""Which firmware file to flash: a local file, a URL, or a board name resolved on micropython.org.

`resolve("ESP32_GENERIC_S3@1.24.1")` reads https://micropython.org/download/ESP32_GENERIC_S3/,
picks the link to that release's image and keeps the download in the cache
(`$MPKERNEL_CACHE`, else ~/.cache/mpkernel/firmware), so a second flash of the same release
needs no network and an offline classroom with a cached image works.

The cache is keyed by URL, not by file name: two servers' `firmware.bin` are different files.
Each download lives in `CACHE/<first 16 hex digits of sha256(url)>/<upstream name>`, with the
URL beside it in `url`, so a release can also be found again offline by its board and version.

Downloads are https. Links read from a page are upgraded to https and a redirect from https to
plain http is refused; only a URL the user typed as `http://` is fetched in plain http.

The download page lists each release as links to `/resources/firmware/BOARD-YYYYMMDD-vX.Y.Z.ext`
(.bin for ESP chips, .uf2 for RP2040, .hex/.dfu/.zip for others, plus .app-bin/.elf/.map
extras); preview builds look like `-v1.25.0-preview.123.gabcdef0`. Variants (SPIRAM, OTA...)
share the page and are named `BOARD-VARIANT-...`, so `ESP32_GENERIC-SPIRAM@1.24.1` works too.
The fetcher is injectable so tests run on a saved page without a network.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpkernel.errors import MpkernelError

BASE_URL = "https://micropython.org"
# Image kinds we can put on a board, in order of preference per board page.
IMAGE_EXTS = (".bin", ".uf2", ".hex")
# The MicroPython board a bare "latest" means for each chip esptool detects.
DEFAULT_BOARDS = {
    "esp32": "ESP32_GENERIC",
    "esp32s2": "ESP32_GENERIC_S2",
    "esp32s3": "ESP32_GENERIC_S3",
    "esp32c3": "ESP32_GENERIC_C3",
    "esp32c6": "ESP32_GENERIC_C6",
    "esp8266": "ESP8266_GENERIC",
}

Fetcher = Callable[[str], bytes]


class FirmwareError(MpkernelError):
    """The firmware cannot be found, downloaded or read."""


def cache_dir() -> Path:
    env = os.environ.get("MPKERNEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mpkernel" / "firmware"


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    """Follow redirects, except from https to anything that is not https."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        if req.full_url.startswith("https://") and not newurl.startswith("https://"):
            raise urllib.error.URLError(
                f"{req.full_url} redirected to {newurl}, which is not https: not followed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def urllib_fetch(url: str, timeout: float = 30.0) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "mpkernel"})
    opener = urllib.request.build_opener(_NoDowngrade)
    with opener.open(request, timeout=timeout) as response:
        return response.read()


def https(url: str) -> str:
    """A link found on a page, as https (`//host/x`, `/x` and `http://` links included)."""
    if url.startswith("//"):
        return "https:" + url
    if url.startswith("/"):
        return BASE_URL + url
    if url.startswith("http://"):
        return "https://" + url[len("http://"):]
    return url


def cache_path(url: str, directory: Path | None = None) -> Path:
    """Where the download of `url` is kept: a folder per URL, the upstream file name inside."""
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "firmware.bin"
    return (directory or cache_dir()) / key / name


@dataclass(frozen=True)
class Release:
    board: str          # as in the file name, variant included (ESP32_GENERIC-SPIRAM)
    date: str           # YYYYMMDD
    version: str        # 1.24.1 or 1.25.0-preview.123.gabcdef0
    ext: str            # .bin / .uf2 / .hex
    url: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def preview(self) -> bool:
        return "preview" in self.version

    def sort_key(self) -> tuple:
        nums = tuple(int(n) for n in re.findall(r"\d+", self.version.split("-")[0]))
        return (nums, not self.preview, self.date)


@dataclass(frozen=True)
class Spec:
    """What the user asked for: a board (maybe with a variant) and a version or "latest"."""

    board: str | None   # None: the default board of the chip that will be detected
    version: str        # "latest" or "1.24.1"

    @property
    def page(self) -> str:
        # Variants live on their base board's page: ESP32_GENERIC-SPIRAM -> ESP32_GENERIC
        assert self.board is not None
        return self.board.split("-", 1)[0]

    def describe(self) -> str:
        return f"{self.board or 'the default board'} {self.version}"


def parse_spec(text: str) -> Spec:
    """`ESP32_GENERIC`, `ESP32_GENERIC_S3@1.24.1`, `latest`, `latest@1.24.1`."""
    board, _, version = text.partition("@")
    version = version.lstrip("v") or "latest"
    if board.lower() in ("", "latest"):
        return Spec(None, version)
    if not re.fullmatch(r"[A-Za-z0-9_]+(-[A-Za-z0-9_]+)?", board):
        raise FirmwareError(f"{text!r} is not a file, a URL or a board name.",
                            "Give a .bin/.uf2/.hex path, an https:// URL, or a board name "
                            "from micropython.org/download such as ESP32_GENERIC@1.24.1.")
    return Spec(board.upper(), version)


def parse_download_page(html: str, board: str) -> list[Release]:
    """Every image of `board` (variant included) linked from a micropython.org download page."""
    pattern = re.compile(
        r'href="(?P<url>[^"]*/resources/firmware/' + re.escape(board)
        + r'-(?P<date>\d{8})-v(?P<version>[0-9][0-9A-Za-z.\-]*?)(?P<ext>\.bin|\.uf2|\.hex))"'
    )
    found: dict[str, Release] = {}
    for m in pattern.finditer(html):
        url = https(m.group("url"))
        found[url] = Release(board, m.group("date"), m.group("version"), m.group("ext"), url)
    return list(found.values())


def pick(releases: list[Release], version: str) -> Release | None:
    """The release asked for: an exact version, or the newest stable one for "latest"."""
    if version == "latest":
        stable = [r for r in releases if not r.preview] or releases
        candidates = stable
    else:
        candidates = [r for r in releases if r.version == version]
    if not candidates:
        return None
    best = max(candidates, key=Release.sort_key)
    same = [r for r in candidates if r.version == best.version and r.date == best.date]
    return min(same, key=lambda r: IMAGE_EXTS.index(r.ext))


def _cached(spec: Spec, directory: Path) -> Path | None:
    """The newest cached micropython.org image of this board (and version, unless "latest")."""
    assert spec.board is not None
    prefix = f"{BASE_URL}/resources/firmware/"
    releases = []
    for url_file in directory.glob("*/url"):
        try:
            url = url_file.read_text().strip()
        except OSError:
            continue
        m = re.fullmatch(re.escape(prefix + spec.board) + r"-(\d{8})-v(.+?)(\.bin|\.uf2|\.hex)",
                         url)
        if m and cache_path(url, directory).is_file():
            releases.append(Release(spec.board, m.group(1), m.group(2), m.group(3), url))
    chosen = pick(releases, spec.version)
    return cache_path(chosen.url, directory) if chosen else None


def _store(target: Path, url: str, data: bytes) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(data)
    (target.parent / "url").write_text(url + "\n")
    partial.replace(target)  # a half download never looks like a cached image
    return target


def download(url: str, fetch: Fetcher = urllib_fetch, directory: Path | None = None,
             note: Callable[[str], None] = lambda s: None) -> Path:
    """The image at `url`, from the cache if this URL was fetched before."""
    target = cache_path(url, directory)
    if target.is_file():
        note(f"Using {target}, downloaded earlier from {url}\n")
        return target
    plain = "" if url.startswith("https://") else " (plain http, as given: not encrypted)"
    note(f"Downloading {url}{plain}\n")
    try:
        data = fetch(url)
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise FirmwareError(f"Could not download {url}: {err}",
                            "Check the network, or download it yourself and pass the "
                            "file's path.") from None
    return _store(target, url, data)


def resolve(firmware: str, chip: str | None = None, fetch: Fetcher = urllib_fetch,
            directory: Path | None = None,
            note: Callable[[str], None] = lambda s: None) -> Path:
    """A local path to the image `firmware` names (a path, a URL or a board spec).

    `chip` (as esptool names it, e.g. "esp32s3") picks the board when the spec has none.
    """
    directory = directory or cache_dir()
    path = Path(firmware).expanduser()
    if path.suffix.lower() in IMAGE_EXTS and path.exists():
        return path
    if re.match(r"https?://", firmware):
        return download(firmware, fetch, directory, note)
    if path.suffix.lower() in IMAGE_EXTS or os.sep in firmware:
        raise FirmwareError(f"No firmware file at {path}.",
                            "Check the path, or give a board name such as ESP32_GENERIC.")
    spec = parse_spec(firmware)
    if spec.board is None:
        if chip is None or chip not in DEFAULT_BOARDS:
            raise FirmwareError(
                f"Cannot tell which board {firmware!r} means for chip {chip or 'unknown'}.",
                "Name the board, e.g. %flash ESP32_GENERIC_S3@1.24.1 "
                "(see https://micropython.org/download/).")
        spec = Spec(DEFAULT_BOARDS[chip], spec.version)
    if spec.version != "latest":
        hit = _cached(spec, directory)
        if hit is not None:
            note(f"Using {hit}, downloaded earlier\n")
            return hit
    page_url = f"{BASE_URL}/download/{spec.page}/"
    try:
        html = fetch(page_url).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError) as err:
        hit = _cached(spec, directory)
        if hit is not None:
            note(f"micropython.org is unreachable ({err}); using {hit}, downloaded earlier\n")
            return hit
        raise FirmwareError(
            f"Cannot reach micropython.org to find {spec.describe()}, and no copy is cached "
            f"in {directory}.",
            f"Download the image from {page_url} on a connected machine and pass its path: "
            f"%flash /path/to/{spec.board}-DATE-vX.Y.Z.bin",
        ) from None
    releases = parse_download_page(html, spec.board)
    chosen = pick(releases, spec.version)
    if chosen is None:
        known = sorted({r.version for r in releases if not r.preview}, reverse=True)[:8]
        raise FirmwareError(
            f"No {spec.describe()} image on {page_url}.",
            ("Versions there: " + ", ".join(known)) if known else
            "Check the board name at https://micropython.org/download/.")
    return download(chosen.url, fetch, directory, note)
