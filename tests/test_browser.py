"""The kernel as a person sees it: JupyterLab in Chromium, driven through Selenium.

JupyterLab runs on loopback with the installed kernelspec; Debian's chromium and its matching
chromium-driver are used as installed (nothing is downloaded). The notebook runs on the
emulated micro:bit. Screenshots of each step are written to a folder whose path is printed
(MPK_ARTIFACTS sets it; CI can keep it).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

pytestmark = pytest.mark.device

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    # A missing browser is a broken set-up (bash .ci/bootstrap --test installs it), not a pass.
    pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed: apt-get install chromium "
                "chromium-driver", pytrace=False)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402

CELLS = [
    "import time\nfor i in range(8):\n    print('tick', i)\n    time.sleep(0.5)",
    "1/0",
    "%connect",
    "while True:\n    pass",
    "%put big.txt",
    "import mic",
    "%connect",
]
# MQTT (issue 10), run after the switch to the modern board: a watch that a later cell's
# %mqtt pub, and a client outside the notebook while a board cell runs, update in place.
MQTT_CELLS = [
    "%mqtt connect 127.0.0.1:{port} --user {user} --password-env MPK_TEST_MQTT_PW",
    "%mqtt watch lesson/#",
    "%mqtt pub lesson/hello 'from a later cell'",
    "import time\nfor i in range(10):\n    print('waiting', i)\n    time.sleep(0.5)",
    "%mqtt stop",
]
WATCH = len(CELLS) + 1  # the watch cell's index
ALL = len(CELLS) + len(MQTT_CELLS)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0,
             shown: Callable[[], str] | None = None) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`.

    `shown` says what the page shows instead, for the failure message.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except Exception:  # the page is changing under us (stale element): look again
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            seen = f"; the page shows: {shown()!r}" if shown is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{seen}")
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mqtt_broker() -> Iterator[Any]:
    """mosquitto on loopback, started here: the test publishes to it from outside the
    notebook, with the generated user (the kernel gets the password in its environment)."""
    from mpkernel.host.mqtt import broker as brokers

    b = brokers.start_broker(port=0, bind="127.0.0.1")
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, mqtt_broker: Any
        ) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("lab")
    mqtt = [c.format(port=mqtt_broker.port, user=mqtt_broker.user) for c in MQTT_CELLS]
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(c) for c in CELLS + mqtt],
        metadata={"kernelspec": {"name": "mpkernel", "display_name": "MicroPython",
                                 "language": "python"}})
    nbformat.write(nb, root / "lesson.ipynb")
    # 6 KB: enough for a progress bar, and room on the micro:bit (about 11 KB free).
    (root / "big.txt").write_text("".join(f"line {i:05d} of a file to upload\n"
                                          for i in range(200)))
    port, token = free_port(), secrets.token_hex(16)
    # The modern board gets a flash file of its own: a user's board keeps its files.
    env = dict(os.environ, MPKERNEL_PORT="sim", MPKERNEL_QEMU_FLASH=str(root / "flash.bin"),
               MPK_TEST_MQTT_PW=mqtt_broker.password, MPKERNEL_TRACE=str(root / "board.trace"),
               JUPYTER_CONFIG_DIR=str(root / ".cfg"),
               JUPYTER_RUNTIME_DIR=str(root / ".rt"))
    log = open(root / "lab.log", "w")  # noqa: SIM115 - closed after the server stops
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}", "--allow-root",
         f"--ServerApp.root_dir={root}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    try:
        wait_for("JupyterLab to listen", lambda: _listening(port), 60)
        yield {"root": root, "url": f"http://127.0.0.1:{port}", "token": token}
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        log.close()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots() -> Path:
    where = Path(os.environ.get("MPK_ARTIFACTS") or tempfile.mkdtemp(prefix="mpk-browser-"))
    where.mkdir(parents=True, exist_ok=True)
    print(f"\nBrowser screenshots: {where}")
    return where


class Page:
    """The notebook page, in the words of what a person looks at."""

    def __init__(self, driver: webdriver.Chrome, shots: Path) -> None:
        self.d = driver
        self.shots = shots

    def shot(self, name: str) -> None:
        self.d.save_screenshot(str(self.shots / f"{name}.png"))

    def kernel_status(self) -> str:
        items = self.d.find_elements(By.CSS_SELECTOR, ".jp-StatusBar-Widget")
        return " ".join(i.text for i in items)

    def wait_idle(self, timeout: float = 60.0) -> None:
        wait_for("the status bar to say the kernel is Idle",
                 lambda: "Idle" in self.kernel_status(), timeout)

    def cells(self) -> list[WebElement]:
        return self.d.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell")

    def cell(self, index: int) -> WebElement:
        return self.cells()[index]

    def output_text(self, index: int) -> str:
        return " ".join(o.text for o in self.cell(index).find_elements(
            By.CSS_SELECTOR, ".jp-OutputArea-output"))

    def prompt(self, index: int) -> str:
        return self.cell(index).find_element(By.CSS_SELECTOR, ".jp-InputPrompt").text

    def run(self, index: int) -> None:
        """Select the cell (its prompt area, not its editor) and press Shift+Enter."""
        self.cell(index).find_element(By.CSS_SELECTOR, ".jp-InputPrompt").click()
        self.d.switch_to.active_element.send_keys(Keys.SHIFT, Keys.ENTER)

    def toolbar(self, command: str) -> WebElement:
        return self.d.find_element(By.CSS_SELECTOR, f"[data-command='{command}']")


def test_a_person_using_the_kernel_in_jupyterlab(
    lab: dict[str, Any], browser: webdriver.Chrome, shots: Path, mqtt_broker: Any
) -> None:
    page = Page(browser, shots)
    try:
        steps(page, lab, mqtt_broker)
    except BaseException:
        page.shot("failed")  # what the page showed when the test gave up
        # What the kernel and the board did last: the server's log (the kernel's stderr) and
        # the kernel's trace of the line (MPKERNEL_TRACE).
        for name in ("lab.log", "board.trace"):
            log = lab["root"] / name
            lines = log.read_text(errors="replace").splitlines() if log.exists() else []
            print(f"--- the last {min(len(lines), 80)} lines of {name} ---", *lines[-80:],
                  sep="\n")
        raise


def steps(page: Page, lab: dict[str, Any], mqtt_broker: Any) -> None:
    browser = page.d
    browser.get(f"{lab['url']}/lab/tree/lesson.ipynb?token={lab['token']}")
    wait_for("the notebook's cells", lambda: len(page.cells()) == ALL, 90)
    page.wait_idle(90)
    page.shot("01-opened")

    # Output arrives while the cell runs: "tick 1" is on screen while the prompt is [*].
    page.run(0)
    seen = wait_for("tick 1 while the cell runs",
                    lambda: "tick 1" in page.output_text(0) and page.prompt(0), 60)
    assert "*" in seen and "tick 7" not in page.output_text(0)
    page.shot("02-streaming")
    wait_for("the loop to finish", lambda: "tick 7" in page.output_text(0))
    page.wait_idle()
    assert "Connected to /dev/pts/" in page.output_text(0)
    assert "(the emulated micro:bit)" in page.output_text(0)

    # A board error is rendered as a traceback, in the error style.
    page.run(1)
    error = wait_for("the traceback", lambda: page.cell(1).find_elements(
        By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"))
    assert "ZeroDivisionError" in error[0].text
    page.wait_idle()
    page.shot("03-error")

    # The port picker renders with the board in use preselected, and connects.
    page.run(2)
    select = wait_for("the port picker", lambda: page.cell(2).find_elements(
        By.CSS_SELECTOR, ".widget-dropdown select"))[0]
    assert "Connected now to /dev/pts/" in page.output_text(2)
    chosen = select.find_element(By.CSS_SELECTOR, "option:checked").text
    assert chosen.startswith("sim - the emulated micro:bit")
    page.shot("04-picker")
    page.wait_idle()
    page.cell(2).find_element(By.XPATH, ".//button[contains(., 'Connect')]").click()
    final = wait_for("the picker to become the connection's text",
                     lambda: "Already connected to /dev/pts/" in page.output_text(2)
                     and not page.cell(2).find_elements(By.CSS_SELECTOR, ".widget-dropdown")
                     and page.output_text(2))
    assert "Nothing changed: its variables are kept" in final
    page.shot("05-picker-connected")

    # The stop button stops a loop on the board.
    page.run(3)
    wait_for("the loop to be running", lambda: "*" in page.prompt(3))
    time.sleep(1.0)
    page.toolbar("notebook:interrupt-kernel").click()
    # The kernel's note is an output of its own, after the traceback: wait for both.
    stopped = wait_for("KeyboardInterrupt", lambda: "KeyboardInterrupt" in page.output_text(3)
                       and "the board's variables are kept" in page.output_text(3)
                       and page.output_text(3), 30)
    assert stopped.index("KeyboardInterrupt") < stopped.index("the board's variables are kept")
    page.wait_idle()
    page.shot("06-interrupted")

    # A progress bar during an upload, then its summary as text.
    page.run(4)
    wait_for("the progress bar", lambda: page.cell(4).find_elements(
        By.CSS_SELECTOR, ".widget-hprogress, .widget-progress"), 30)
    page.shot("07-progress")
    # Wait for the cell to finish, so that a failed upload fails here with what it said.
    summary = wait_for("the upload to finish", lambda: "*" not in page.prompt(4)
                       and page.output_text(4), 120, shown=lambda: page.output_text(4))
    assert "Wrote big.txt" in summary, summary
    assert not page.cell(4).find_elements(By.CSS_SELECTOR, ".widget-hprogress")
    assert "verified" in summary
    page.wait_idle()

    # Tab lists the board's own names: the micro:bit's modules, from the board itself.
    editor = page.cell(5).find_element(By.CSS_SELECTOR, ".cm-content")
    editor.click()
    editor.send_keys(Keys.END, Keys.TAB)
    items = wait_for("the completer", lambda: [
        i.text for i in browser.find_elements(By.CSS_SELECTOR, ".jp-Completer-item")], 30)
    assert [t.split()[0] for t in items] == ["microbit", "micropython"], items
    page.shot("08-completer")
    editor.send_keys(Keys.ESCAPE)

    # The picker switches boards: the modern emulated board, chosen from the dropdown.
    page.run(6)
    select = wait_for("the second picker", lambda: page.cell(6).find_elements(
        By.CSS_SELECTOR, ".widget-dropdown select"))[0]
    page.wait_idle()
    select.find_element(By.CSS_SELECTOR, "option[value*='qemu'], option:last-child").click()
    page.cell(6).find_element(By.XPATH, ".//button[contains(., 'Connect')]").click()
    switched = wait_for("the modern board's connection text",
                        lambda: "Connected to /dev/pts/" in page.output_text(6)
                        and page.output_text(6), 60)
    assert "(the emulated MicroPython 1.25 board): " in switched
    assert not page.cell(6).find_elements(By.CSS_SELECTOR, ".widget-dropdown")
    page.shot("09-switched")
    page.wait_idle()
    mqtt_steps(page, mqtt_broker)

    # Saved and reopened: every output is readable, no widget left without its model.
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.CONTROL, "s")
    time.sleep(1.0)
    saved = nbformat.read(lab["root"] / "lesson.ipynb", as_version=4)
    for cell in saved.cells:
        for output in cell.get("outputs", []):
            if output.output_type in ("display_data", "execute_result"):
                assert "text/plain" in output.data
    put = saved.cells[4].outputs
    assert all("application/vnd.jupyter.widget-view+json" not in o.get("data", {})
               for o in put)
    assert any("Wrote big.txt" in o.get("data", {}).get("text/plain", "") for o in put)
    # The watch is saved as it was last updated: both messages, one output.
    watch = saved.cells[WATCH].outputs
    assert len(watch) == 1, watch
    assert watch[0].data["text/plain"].startswith("MQTT lesson/# (watching; 2 messages")
    browser.refresh()
    # (Shift+Enter on the last cell added an empty one below it, as it does for everyone.)
    wait_for("the reopened notebook", lambda: len(page.cells()) == ALL + 1, 60)
    page.wait_idle(60)
    page.shot("10-reopened")
    assert "Error displaying widget" not in browser.find_element(By.TAG_NAME, "body").text
    assert "Wrote big.txt" in page.output_text(4)
    assert "Already connected to /dev/pts/" in page.output_text(2)
    assert "(the emulated MicroPython 1.25 board): " in page.output_text(6)


def mqtt_steps(page: Page, broker: Any) -> None:
    """%mqtt watch shows, in place, a message from a later cell and one that arrives while a
    board cell runs."""
    from mpkernel.host.mqtt.client import Connection

    first = len(CELLS)
    page.run(first)
    wait_for("the MQTT connection", lambda: "Connected to 127.0.0.1:" in page.output_text(first))
    page.wait_idle()
    page.run(WATCH)
    wait_for("the empty watch", lambda: "(watching; 0 messages" in page.output_text(WATCH))
    page.wait_idle()
    page.run(WATCH + 1)
    wait_for("the later cell's message in the watch",
             lambda: "(watching; 1 messages" in page.output_text(WATCH)
             and "lesson/hello: from a later cell" in page.output_text(WATCH))
    assert "Published 17 bytes to lesson/hello" in page.output_text(WATCH + 1)
    page.wait_idle()
    page.shot("09a-watch-after-pub")

    # A client outside the notebook publishes while the board cell runs: the watch, two
    # cells up, changes while that cell's prompt still shows [*].
    board = WATCH + 2
    page.run(board)
    wait_for("the board cell to be running",
             lambda: "waiting 1" in page.output_text(board) and "*" in page.prompt(board), 30)
    outside = Connection("127.0.0.1", broker.port, user=broker.user, password=broker.password)
    outside.start()
    outside.wait_ready()
    try:
        outside.publish("lesson/outside", b"while the board runs").wait_for_publish(5)
        seen = wait_for("the outside message in the watch while the board cell runs",
                        lambda: "lesson/outside: while the board runs" in page.output_text(WATCH)
                        and page.prompt(board), 10)
    finally:
        outside.close()
    assert "*" in seen, seen
    assert "waiting 9" not in page.output_text(board)
    assert "lesson/" not in page.output_text(board)  # the update went to the watch only
    text = page.output_text(WATCH)
    assert "(watching; 2 messages" in text
    # Updated in place: still one output, newest message first.
    assert len(page.cell(WATCH).find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output")) == 1
    assert text.index("lesson/outside") < text.index("lesson/hello")
    page.shot("09b-watch-while-board-runs")
    wait_for("the board loop to finish", lambda: "waiting 9" in page.output_text(board))
    page.wait_idle()
    page.run(board + 1)
    wait_for("%mqtt stop", lambda: "Stopped 1 watch, the connection to 127.0.0.1:"
             in page.output_text(board + 1))
    page.wait_idle()
