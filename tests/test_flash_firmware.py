"""Firmware resolution (micropython.org pages, cache, offline), image checks, drive copy."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
from esp_rom_emulator import make_app_image
from flash_facts import check_against_drive

from mpkernel.flash import firmware as fw
from mpkernel.flash.writers import FlashError, check_image, copy_to_drive, find_drive, image_chip

# Shaped like https://micropython.org/download/ESP32_GENERIC/: each release a bold .bin link
# followed by its extras, variants (SPIRAM) on the same page, preview builds first.
PAGE = """
<h2>Firmware</h2>
<h3>Preview builds</h3>
<a href="/resources/firmware/ESP32_GENERIC-20250301-v1.25.0-preview.321.g1a2b3c4d5.bin">
v1.25.0-preview.321.g1a2b3c4d5 (2025-03-01) .bin</a>
<h3>Releases</h3>
<strong><a href="/resources/firmware/ESP32_GENERIC-20241129-v1.24.1.bin"
>v1.24.1 (2024-11-29) .bin</a></strong>
 / <a href="/resources/firmware/ESP32_GENERIC-20241129-v1.24.1.app-bin">[.app-bin]</a>
 / <a href="/resources/firmware/ESP32_GENERIC-20241129-v1.24.1.elf">[.elf]</a>
<br><a href="/resources/firmware/ESP32_GENERIC-20241025-v1.24.0.bin">v1.24.0 (2024-10-25) .bin</a>
<br><a href="/resources/firmware/ESP32_GENERIC-20240602-v1.23.0.bin">v1.23.0 (2024-06-02) .bin</a>
<h2>Firmware (Support for SPIRAM / WROVER)</h2>
<a href="/resources/firmware/ESP32_GENERIC-SPIRAM-20241129-v1.24.1.bin"
>v1.24.1 (2024-11-29) .bin</a>
"""
SITE = "https://micropython.org"


class FakeNet:
    def __init__(self, pages: dict[str, bytes] | None = None, online: bool = True) -> None:
        self.pages = pages or {}
        self.online = online
        self.asked: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.asked.append(url)
        if not self.online:
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        if url in self.pages:
            return self.pages[url]
        if url.startswith(SITE + "/resources/firmware/"):
            return b"\xe9image:" + url.rsplit("/", 1)[-1].encode()
        raise urllib.error.HTTPError(url, 404, "Not Found", None, None)  # type: ignore[arg-type]


def net() -> FakeNet:
    return FakeNet({f"{SITE}/download/ESP32_GENERIC/": PAGE.encode()})


def test_the_page_parser_finds_releases_of_the_board_not_its_variants():
    releases = fw.parse_download_page(PAGE, "ESP32_GENERIC")
    assert {r.version for r in releases} == {
        "1.25.0-preview.321.g1a2b3c4d5", "1.24.1", "1.24.0", "1.23.0"}
    assert all(r.ext == ".bin" for r in releases)  # .app-bin and .elf are not images to flash
    assert fw.pick(releases, "latest").filename == "ESP32_GENERIC-20241129-v1.24.1.bin"
    assert fw.pick(releases, "1.23.0").url == (
        f"{SITE}/resources/firmware/ESP32_GENERIC-20240602-v1.23.0.bin")
    assert fw.pick(releases, "9.9.9") is None
    spiram = fw.parse_download_page(PAGE, "ESP32_GENERIC-SPIRAM")
    assert [r.version for r in spiram] == ["1.24.1"]


def test_specs():
    assert fw.parse_spec("ESP32_GENERIC_S3@1.24.1") == fw.Spec("ESP32_GENERIC_S3", "1.24.1")
    assert fw.parse_spec("esp32_generic@v1.24.1") == fw.Spec("ESP32_GENERIC", "1.24.1")
    assert fw.parse_spec("latest") == fw.Spec(None, "latest")
    assert fw.parse_spec("ESP32_GENERIC-SPIRAM").page == "ESP32_GENERIC"
    with pytest.raises(fw.FirmwareError, match="not a file, a URL or a board name"):
        fw.parse_spec("what ever")


def test_a_board_release_is_downloaded_once_then_served_from_the_cache(tmp_path):
    online = net()
    first = fw.resolve("ESP32_GENERIC@1.24.1", fetch=online, directory=tmp_path)
    url = f"{SITE}/resources/firmware/ESP32_GENERIC-20241129-v1.24.1.bin"
    assert online.asked == [f"{SITE}/download/ESP32_GENERIC/", url]
    assert first == fw.cache_path(url, tmp_path)
    assert first.name == "ESP32_GENERIC-20241129-v1.24.1.bin"
    assert first.read_bytes() == b"\xe9image:ESP32_GENERIC-20241129-v1.24.1.bin"
    offline = FakeNet(online=False)
    assert fw.resolve("ESP32_GENERIC@1.24.1", fetch=offline, directory=tmp_path) == first
    assert offline.asked == []  # a pinned, cached release needs no network at all
    assert not list(tmp_path.rglob("*.part"))


def test_the_cache_is_keyed_by_url_so_two_files_with_one_name_stay_apart(tmp_path):
    a, b = "https://a.example/fw/firmware.bin", "https://b.example/fw/firmware.bin"
    online = FakeNet({a: b"\xe9 from a", b: b"\xe9 from b"})
    got_a = fw.resolve(a, fetch=online, directory=tmp_path)
    got_b = fw.resolve(b, fetch=online, directory=tmp_path)
    assert got_a != got_b and got_a.name == got_b.name == "firmware.bin"
    assert got_a.read_bytes() == b"\xe9 from a" and got_b.read_bytes() == b"\xe9 from b"
    offline = FakeNet(online=False)
    assert fw.resolve(b, fetch=offline, directory=tmp_path).read_bytes() == b"\xe9 from b"
    assert fw.resolve(a, fetch=offline, directory=tmp_path).read_bytes() == b"\xe9 from a"
    assert offline.asked == []
    # A file of a release's name from another server is not that release.
    mirror = "https://mirror.example/ESP32_GENERIC-20241129-v1.24.1.bin"
    fw.resolve(mirror, fetch=FakeNet({mirror: b"\xe9 mirror"}), directory=tmp_path)
    with pytest.raises(fw.FirmwareError, match="no copy is cached"):
        fw.resolve("ESP32_GENERIC@1.24.1", fetch=offline, directory=tmp_path)


def test_page_links_are_fetched_over_https_even_when_written_as_http(tmp_path):
    page = PAGE.replace('href="/resources', 'href="http://micropython.org/resources')
    online = FakeNet({f"{SITE}/download/ESP32_GENERIC/": page.encode()})
    fw.resolve("ESP32_GENERIC@1.24.1", fetch=online, directory=tmp_path)
    assert online.asked[-1] == f"{SITE}/resources/firmware/ESP32_GENERIC-20241129-v1.24.1.bin"
    assert all(url.startswith("https://") for url in online.asked)


def test_a_plain_http_url_is_fetched_only_when_the_user_gives_one(tmp_path):
    url = "http://192.168.1.5/ESP32_GENERIC-20241129-v1.24.1.bin"
    online = FakeNet({url: b"\xe9 local"})
    notes: list[str] = []
    assert fw.resolve(url, fetch=online, directory=tmp_path, note=notes.append).read_bytes() \
        == b"\xe9 local"
    assert online.asked == [url]
    assert notes == [f"Downloading {url} (plain http, as given: not encrypted)\n"]


def test_a_redirect_from_https_to_http_is_not_followed():
    import urllib.request

    handler = fw._NoDowngrade()
    secure = urllib.request.Request("https://micropython.org/resources/firmware/x.bin")
    with pytest.raises(urllib.error.URLError, match="not https: not followed"):
        handler.redirect_request(secure, None, 302, "Found", {}, "http://evil.example/x.bin")
    moved = handler.redirect_request(secure, None, 302, "Found", {},
                                     "https://cdn.example/x.bin")
    assert moved is not None and moved.full_url == "https://cdn.example/x.bin"
    plain = urllib.request.Request("http://192.168.1.5/x.bin")
    assert handler.redirect_request(plain, None, 302, "Found", {},
                                    "http://192.168.1.5/y.bin") is not None


def test_latest_follows_the_page_and_falls_back_to_the_cache_offline(tmp_path):
    online = net()
    path = fw.resolve("ESP32_GENERIC", fetch=online, directory=tmp_path)
    assert path.name == "ESP32_GENERIC-20241129-v1.24.1.bin"
    notes: list[str] = []
    again = fw.resolve("ESP32_GENERIC", fetch=FakeNet(online=False), directory=tmp_path,
                       note=notes.append)
    assert again == path and "unreachable" in notes[0]


def test_latest_without_a_board_uses_the_detected_chip(tmp_path):
    path = fw.resolve("latest", chip="esp32", fetch=net(), directory=tmp_path)
    assert path.name == "ESP32_GENERIC-20241129-v1.24.1.bin"
    with pytest.raises(fw.FirmwareError, match="Cannot tell which board"):
        fw.resolve("latest", chip=None, fetch=net(), directory=tmp_path)


def test_offline_without_a_cached_image_says_so_and_where_to_put_one(tmp_path):
    with pytest.raises(fw.FirmwareError) as info:
        fw.resolve("ESP32_GENERIC_S3@1.24.1", fetch=FakeNet(online=False), directory=tmp_path)
    text = info.value.user_text()
    assert "Cannot reach micropython.org" in text and f"no copy is cached in {tmp_path}" in text
    assert str(tmp_path) in text and "download/ESP32_GENERIC_S3/" in text


def test_an_unknown_version_lists_the_known_ones(tmp_path):
    with pytest.raises(fw.FirmwareError) as info:
        fw.resolve("ESP32_GENERIC@1.2.3", fetch=net(), directory=tmp_path)
    assert "1.24.1, 1.24.0, 1.23.0" in info.value.user_text()


def test_urls_and_files(tmp_path):
    url = f"{SITE}/resources/firmware/RPI_PICO-20241129-v1.24.1.uf2"
    online = net()
    got = fw.resolve(url, fetch=online, directory=tmp_path)
    assert got.name == "RPI_PICO-20241129-v1.24.1.uf2"
    assert fw.resolve(url, fetch=FakeNet(online=False), directory=tmp_path) == got
    local = tmp_path / "mine.bin"
    local.write_bytes(b"\xe9")
    assert fw.resolve(str(local), directory=tmp_path) == local
    with pytest.raises(fw.FirmwareError, match="No firmware file"):
        fw.resolve(str(tmp_path / "missing.bin"), directory=tmp_path)


def test_the_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MPKERNEL_CACHE", str(tmp_path))
    assert fw.cache_dir() == tmp_path
    monkeypatch.delenv("MPKERNEL_CACHE")
    assert fw.cache_dir() == Path.home() / ".cache" / "mpkernel" / "firmware"


@pytest.mark.parametrize("chip,chip_id", [("esp32", 0), ("esp32s2", 2), ("esp32s3", 9),
                                          ("esp32c3", 5), ("esp32c6", 13)])
def test_image_headers_name_their_chip(chip, chip_id):
    image = make_app_image(chip_id=chip_id, size=4096)
    assert image_chip(image) == chip
    check_image(image, chip)
    other = "esp32" if chip != "esp32" else "esp32s3"
    with pytest.raises(FlashError, match="Nothing was written"):
        check_image(image, other)
    with pytest.raises(FlashError, match="but the board is an ESP8266"):
        check_image(image, "esp8266")


def test_an_esp8266_image_passes_for_esp8266():
    image = bytes([0xE9, 1, 0, 0x20]) + bytes(60)  # v1 header: no extended header
    check_image(image, "esp8266")


def test_drives_are_found_by_label_in_media_dirs_or_lsblk(tmp_path):
    media = tmp_path / "media"
    (media / "teacher" / "RPI-RP2").mkdir(parents=True)
    assert find_drive(["RPI-RP2"], roots=[media], lsblk=lambda: "") == (
        media / "teacher" / "RPI-RP2")
    mount = tmp_path / "mnt" / "mb"
    mount.mkdir(parents=True)
    listing = f'LABEL="" MOUNTPOINT=""\nLABEL="MICROBIT" MOUNTPOINT="{mount}"\n'
    assert find_drive(["MICROBIT"], roots=[media], lsblk=lambda: listing) == mount
    assert find_drive(["MICROBIT"], roots=[media], lsblk=lambda: "") is None


def test_a_uf2_is_copied_to_the_pico_drive_and_a_missing_drive_is_explained(tmp_path):
    drive = tmp_path / "media" / "RPI-RP2"
    drive.mkdir(parents=True)
    image = tmp_path / "RPI_PICO-20241129-v1.24.1.uf2"
    image.write_bytes(b"UF2\n" * 50000)
    out: list[str] = []
    result = copy_to_drive(image, out.append, roots=[tmp_path / "media"], lsblk=lambda: "")
    assert result.drive == drive
    check_against_drive(out[-1].lstrip("\r"), drive, image)
    hexfile = tmp_path / "microbit.hex"
    hexfile.write_text(":00000001FF\n")
    with pytest.raises(FlashError) as info:
        copy_to_drive(hexfile, out.append, roots=[tmp_path / "none"], lsblk=lambda: "")
    assert "No drive labelled MICROBIT" in info.value.user_text()
